//! Toolchain set-up: rust-src for the nightly, and a bpf-linker built against the nightly's
//! own LLVM (the linker must match the LLVM that produced the bitcode).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// Makes sure the eBPF build can run; returns a PATH with the bpf-linker in front.
pub fn ensure(root: &Path) -> Result<OsString> {
    let sysroot = nightly_sysroot()?;
    ensure_rust_src(&sysroot)?;
    let linker_dir = ensure_bpf_linker(root, &sysroot)?;
    let mut paths = vec![linker_dir];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    Ok(std::env::join_paths(paths)?)
}

/// Debian's auditd tools: `ausearch` and `aureport` read the sensor's audit log back in the
/// tests, and `auditd` itself is the baseline of `cargo xtask bench audit`.
pub fn ensure_auditd() -> Result<()> {
    let tools = ["ausearch", "aureport", "auditd", "auditctl"];
    if tools.iter().all(|t| crate::which(t).is_some()) {
        return Ok(());
    }
    apt_install(&["auditd"])
}

/// Installs Debian packages, refreshing the package lists once if the first try fails (a
/// fresh image may have stale ones).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!("installing {}", packages.join(", "));
    let install = || {
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .status()
    };
    if install()?.success() {
        return Ok(());
    }
    crate::status(Command::new("apt-get").args(["update", "-q"]))?;
    if !install()?.success() {
        bail!("apt-get could not install {}", packages.join(", "));
    }
    Ok(())
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("failed to run `rustc +nightly`; is rustup installed?")?;
    if !out.status.success() {
        bail!(
            "the nightly toolchain is missing: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        return Ok(());
    }
    eprintln!("installing rust-src for the nightly toolchain");
    crate::status(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// The nightly's libLLVM, e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`, and its major version.
fn nightly_llvm(sysroot: &Path) -> Result<(PathBuf, String)> {
    let lib = sysroot.join("lib");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&lib)
        .with_context(|| format!("failed to list {}", lib.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    // Sorted, so the same library (and so the same cached linker) is picked every time.
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // `libLLVM.so.<major>.<minor>-rust-...` is the real library; `libLLVM-<major>-...so`
        // beside it does not link.
        let Some(rest) = name.strip_prefix("libLLVM.so.") else {
            continue;
        };
        let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !major.is_empty() {
            return Ok((path, major));
        }
    }
    bail!(
        "no libLLVM in {}; the nightly toolchain looks incomplete",
        lib.display()
    )
}

/// Builds bpf-linker once per nightly LLVM into `target/tools/`; returns its `bin` directory.
fn ensure_bpf_linker(root: &Path, sysroot: &Path) -> Result<PathBuf> {
    let (libllvm, major) = nightly_llvm(sysroot)?;
    let stamp = libllvm
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let tools = root
        .join("target/tools")
        .join(format!("bpf-linker-{stamp}"));
    let bin = tools.join("bin");
    if bin.join("bpf-linker").exists() {
        return Ok(bin);
    }
    eprintln!("building bpf-linker against the nightly's LLVM {major} (about a minute)");
    let prefix = tools.join("llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("failed to link {}", link.display()))?;
    crate::status(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .args(["install", "bpf-linker", "--locked", "--no-default-features"])
            .arg("--features")
            .arg(format!("llvm-{major}"))
            .arg("--root")
            .arg(&tools),
    )
    .context("failed to build bpf-linker")?;
    Ok(bin)
}
