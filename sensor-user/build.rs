//! Builds the eBPF object with the nightly toolchain and bpf-linker, for embedding.
//!
//! `cargo xtask build` installs what this needs (rust-src, a bpf-linker matching the nightly's
//! LLVM) and puts the linker on PATH; run through it on a fresh machine.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let ebpf = root.join("sensor-ebpf");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    for dir in ["sensor-ebpf/src", "sensor-common/src"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        ebpf.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-env-changed=PATH");

    let target_dir = out.join("ebpf-target");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ebpf)
        .args(["+nightly", "build", "--release", "-Z", "build-std=core"])
        .args(["--target", "bpfel-unknown-none", "--target-dir"])
        .arg(&target_dir);
    // The outer build's compiler settings (host rustc, clippy's wrapper, host flags) must not
    // leak into the bpf build.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        "-Cdebuginfo=2\u{1f}-Clink-arg=--btf",
    );
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("failed to run `cargo +nightly`: {e}"));
    assert!(
        status.success(),
        "building sensor-ebpf failed; `cargo xtask build` installs rust-src and bpf-linker"
    );
    let obj = target_dir.join("bpfel-unknown-none/release/sensor");
    std::fs::copy(&obj, out.join("sensor.bpf.o"))
        .unwrap_or_else(|e| panic!("failed to copy {}: {e}", obj.display()));
}
