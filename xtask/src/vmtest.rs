//! `cargo xtask vmtest`: the kernel tests, built once here, run inside qemu guests booted with
//! other kernels (Debian's 6.1 by default), with this host's filesystem shared copy-on-write.
//!
//! Everything it needs is installed on first use and cached under `target/vmtest/`: qemu and
//! friends from Debian packages, virtme-ng from PyPI in a virtualenv, each kernel package
//! fetched with `apt-get download` and unpacked with `dpkg -x`.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// virtme-ng release the runs were verified with.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// Marks the guest script's report lines in the console output.
const TAG: &str = "VMTEST";

/// The tests `--quick` runs in each guest, by test binary: the start-up check against wrong
/// offsets (the layout as this kernel's BTF gives it), an exec with its arguments, exit code
/// and executables, execs and connects read back by `ausearch` by key, write-then-execute
/// memory, and every FIM change kind (through the hook set the kernel chose).
/// Each is `binary::test`, in two lanes that run side by side, one per guest CPU, balanced by
/// the times measured on 6.1 (the offsets test loads the programs nine times).
const QUICK: [&[&str]; 2] = [
    &[
        "offsets::a_wrong_offset_is_caught_at_start_and_the_right_ones_pass",
        "fim::every_change_kind_and_each_evasion_is_reported_on_the_watched_name",
    ],
    &[
        "lifecycle::exec_reports_exact_argv_resolved_executables_and_exit_code",
        "audit::ausearch_reads_execs_and_connects_by_key",
        "memory::case_14_write_then_execute_anonymous_memory",
    ],
];

/// Which tests run in each guest.
pub struct Selection<'a> {
    /// Test binaries to run (all when empty).
    pub only: &'a [String],
    /// Passed to each binary, as `cargo xtask test <filter>` does.
    pub filter: Option<&'a str>,
    /// [`QUICK`] instead.
    pub quick: bool,
}

/// A test binary, the arguments that select its tests, and the lane it runs in.
struct TestRun {
    exe: PathBuf,
    args: Vec<String>,
    lane: usize,
}

/// Runs the kernel tests on each kernel package (default: Debian 12's current 6.1 kernel).
pub fn run(root: &Path, kernels: Vec<String>, selection: &Selection) -> Result<()> {
    crate::require_root("boot guests and load eBPF programs in them")?;
    let cache = root.join("target/vmtest");
    std::fs::create_dir_all(&cache)?;
    ensure_host_packages()?;
    let vng = ensure_virtme_ng(&cache)?;
    let kernels = if kernels.is_empty() {
        vec![default_kernel()?]
    } else {
        kernels
    };

    crate::build(root)?;
    let tests = select(test_binaries(root)?, selection)?;
    // About three times the time measured on 6.1 (quick 220 s, everything 1,708 s): a guest
    // that hangs fails the run rather than holding it until CI's own limit.
    let deadline = Duration::from_secs(if selection.quick { 12 * 60 } else { 100 * 60 });
    let mut failed = Vec::new();
    for package in &kernels {
        let vmlinuz = ensure_kernel(&cache, package)?;
        let started = Instant::now();
        let report = boot(root, &cache, &vng, &vmlinuz, &tests, deadline)
            .with_context(|| format!("failed to run the tests on {package}"))?;
        println!(
            "{package}: release {}, {:.0} s in the guest",
            report.release,
            started.elapsed().as_secs_f64()
        );
        println!("  program types that load: {}", report.program_types);
        println!("  hooks chosen: {}", report.chosen);
        for (name, summary, ok) in &report.results {
            println!("  {} {name}: {summary}", if *ok { "ok  " } else { "FAIL" });
        }
        if report.results.len() != tests.len() || report.results.iter().any(|r| !r.2) {
            failed.push(package.clone());
        } else if let Some(why) = ran_too_little(&report, selection) {
            println!("  FAIL {why}");
            failed.push(package.clone());
        }
    }
    if !failed.is_empty() {
        bail!("kernel tests failed on {}", failed.join(", "));
    }
    Ok(())
}

/// qemu, a static busybox for the guest's init, kmod and udev, as virtme-ng needs them.
fn ensure_host_packages() -> Result<()> {
    let tools = ["qemu-system-x86_64", "busybox", "kmod", "udevadm"];
    if tools.iter().all(|t| crate::which(t).is_some()) {
        return Ok(());
    }
    crate::setup::apt_install(&["qemu-system-x86", "busybox-static", "kmod", "udev"])
}

/// virtme-ng in a project-local virtualenv; returns the path of `vng`.
fn ensure_virtme_ng(cache: &Path) -> Result<PathBuf> {
    let venv = cache.join("venv");
    let vng = venv.join("bin/vng");
    if vng.exists() {
        return Ok(vng);
    }
    eprintln!("installing {VIRTME_NG} into {}", venv.display());
    crate::status(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    crate::status(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", VIRTME_NG])
            .env_remove("PIP_REQUIRE_VIRTUALENV"),
    )?;
    Ok(vng)
}

/// Debian 12's current 6.1 kernel package, as the `linux-image-amd64` metapackage names it.
fn default_kernel() -> Result<String> {
    let out = crate::output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let image = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with("linux-image-6.1") && d.ends_with("-amd64"))
        .context("`apt-cache depends linux-image-amd64` names no 6.1 kernel")?;
    // The unsigned build carries the same kernel without the Secure Boot signature.
    Ok(format!("{image}-unsigned"))
}

/// Downloads and unpacks `package` once; returns its vmlinuz.
fn ensure_kernel(cache: &Path, package: &str) -> Result<PathBuf> {
    let dir = cache.join("kernels").join(package);
    if let Some(vmlinuz) = find_vmlinuz(&dir) {
        return Ok(vmlinuz);
    }
    eprintln!("fetching {package}");
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    let download = || {
        Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", "-q", package])
            .status()
    };
    if !download()?.success() {
        // Stale package lists name a version the mirror no longer has.
        crate::status(Command::new("apt-get").args(["update", "-q"]))?;
        if !download()?.success() {
            bail!("apt-get could not download {package}");
        }
    }
    let deb = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
    std::fs::create_dir_all(&dir)?;
    crate::status(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir))?;
    find_vmlinuz(&dir).with_context(|| format!("{package} holds no boot/vmlinuz-*"))
}

fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

/// Every test executable of the workspace, built in release mode.
fn test_binaries(root: &Path) -> Result<Vec<PathBuf>> {
    // With the toolchain's PATH, as the build has it: the eBPF object is rebuilt when a source
    // changed since.
    let path_env = crate::setup::ensure(root)?;
    let out = crate::output(crate::cargo(root, &path_env).args([
        "test",
        "--release",
        "--workspace",
        "--no-run",
        "--message-format=json",
    ]))?;
    let mut tests = Vec::new();
    for line in out.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test =
            message["reason"] == "compiler-artifact" && message["profile"]["test"] == true;
        // xtask's own tests need no kernel; everything else runs in the guest too.
        let name = message["target"]["name"].as_str().unwrap_or("");
        if let (true, Some(exe)) = (is_test && name != "xtask", message["executable"].as_str()) {
            tests.push(PathBuf::from(exe));
        }
    }
    if tests.is_empty() {
        bail!("cargo built no test executables");
    }
    Ok(tests)
}

/// The test runs `selection` asks for, out of every test binary.
fn select(binaries: Vec<PathBuf>, selection: &Selection) -> Result<Vec<TestRun>> {
    let by_name = |name: &str| {
        binaries
            .iter()
            .find(|b| test_name(b) == name)
            .cloned()
            .with_context(|| format!("no test binary named `{name}`"))
    };
    if selection.quick {
        let mut runs: Vec<TestRun> = Vec::new();
        for (lane, tests) in QUICK.iter().enumerate() {
            for quick in *tests {
                let (binary, test) = quick.split_once("::").context("QUICK entry")?;
                runs.push(TestRun {
                    exe: by_name(binary)?,
                    args: vec!["--exact".into(), test.to_string()],
                    lane,
                });
            }
        }
        return Ok(runs);
    }
    let exes = if selection.only.is_empty() {
        binaries.clone()
    } else {
        selection
            .only
            .iter()
            .map(|n| by_name(n))
            .collect::<Result<_>>()?
    };
    Ok(exes
        .into_iter()
        .map(|exe| TestRun {
            exe,
            args: selection.filter.map(str::to_string).into_iter().collect(),
            lane: 0,
        })
        .collect())
}

/// Why a selection that passed still fails: a test of [`QUICK`] that did not run (renamed),
/// or a filter that matched nothing. A whole binary may have no tests.
fn ran_too_little(report: &Report, selection: &Selection) -> Option<String> {
    let passed = |summary: &str| -> u64 {
        let Some((_, rest)) = summary.split_once("ok. ") else {
            return 0;
        };
        rest.split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    if selection.quick {
        let (name, _, _) = report.results.iter().find(|r| passed(&r.1) == 0)?;
        return Some(format!("{name}: the quick test ran no test"));
    }
    let filter = selection.filter?;
    let total: u64 = report.results.iter().map(|r| passed(&r.1)).sum();
    (total == 0).then(|| format!("no test matched `{filter}`"))
}

/// What one guest reported.
struct Report {
    release: String,
    program_types: String,
    /// `sensor --probe-program-types`'s choices among hook sets.
    chosen: String,
    /// Test binary, its summary line, and whether it passed.
    results: Vec<(String, String, bool)>,
}

/// Boots `vmlinuz` with the host's filesystem and runs every test binary in it.
fn boot(
    root: &Path,
    cache: &Path,
    vng: &Path,
    vmlinuz: &Path,
    tests: &[TestRun],
    deadline: Duration,
) -> Result<Report> {
    let bin = root.join("target/release");
    // virtme-ng gives the guest an overlay over the host's /tmp; the tests' files go on a
    // tmpfs of its own instead, as on a host (FIM does not follow overlayfs, see README). A
    // checkout under /tmp is carried over onto the new /tmp.
    let tmpfs = if root.starts_with("/tmp") {
        format!(
            "mkdir -p /run/vmtest-root && mount --bind {root} /run/vmtest-root\n\
             mount -t tmpfs -o mode=1777 tmpfs /tmp\n\
             mkdir -p {root} && mount --bind /run/vmtest-root {root} && cd {root}\n",
            root = root.display()
        )
    } else {
        "mount -t tmpfs -o mode=1777 tmpfs /tmp\n".to_string()
    };
    let mut script = format!(
        "#!/bin/sh\ncd {root}\nexport CI=true SENSOR_BIN_DIR={bin}\n{tmpfs}\
         echo \"{TAG} release $(uname -r)\"\n\
         {sensor} --probe-program-types 2>/dev/null >/tmp/probe.txt\n\
         echo \"{TAG} types $(sed -n 's/: loads$//p' /tmp/probe.txt | tr '\\n' ' ')\"\n\
         echo \"{TAG} chosen $(grep '^fim\\.' /tmp/probe.txt | tr '\\n' ' ')\"\n",
        root = root.display(),
        bin = bin.display(),
        sensor = bin.join("sensor").display(),
    );
    // One lane runs in the foreground with its output on the console; with more, each runs in
    // the background and the logs are printed when all are done.
    let lanes = tests.iter().map(|t| t.lane + 1).max().unwrap_or(1);
    for lane in 0..lanes {
        if lanes > 1 {
            script.push_str("(\n");
        }
        for test in tests.iter().filter(|t| t.lane == lane) {
            let name = test_name(&test.exe);
            let args: Vec<String> = test.args.iter().map(|a| shell_quote(a)).collect();
            let out = if lanes > 1 {
                format!("> /tmp/{name}.log 2>&1")
            } else {
                format!("2>&1 | tee /tmp/{name}.log")
            };
            script.push_str(&format!(
                "{exe} --test-threads=2 {args} {out}\n\
                 rc=0; grep -q '^test result: ok' /tmp/{name}.log || rc=1\n\
                 echo \"{TAG} result {name} $rc $(grep '^test result' /tmp/{name}.log | tail -n 1)\"\n",
                exe = test.exe.display(),
                args = args.join(" "),
            ));
        }
        if lanes > 1 {
            script.push_str(") &\n");
        }
    }
    if lanes > 1 {
        script.push_str("wait\n");
        for test in tests {
            script.push_str(&format!(
                "echo '--- {name}'; cat /tmp/{name}.log\n",
                name = test_name(&test.exe)
            ));
        }
    }
    let script_path = cache.join("guest.sh");
    std::fs::write(&script_path, script)?;
    crate::status(Command::new("chmod").arg("+x").arg(&script_path))?;

    let venv_bin = vng.parent().context("vng has a directory")?;
    let path = std::env::join_paths(std::iter::once(venv_bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    // /dev/kvm here cannot run an ordinary guest kernel, so the guest runs under emulation.
    // The console goes to a file as it comes, so a long run can be followed with `tail -f`.
    let console_path = cache.join("last-console.log");
    eprintln!("guest console: {}", console_path.display());
    let console_file = std::fs::File::create(&console_path)?;
    let mut guest = Command::new(vng)
        .env("PATH", path)
        .args(["--disable-kvm", "--cpus", "2", "--memory", "2G", "--run"])
        .arg(vmlinuz)
        .arg("--exec")
        .arg(&script_path)
        .stdout(console_file.try_clone()?)
        .stderr(console_file)
        // A group of its own, so qemu goes with vng when the deadline passes.
        .process_group(0)
        .spawn()
        .context("failed to start vng")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = guest.try_wait()? {
            break status;
        }
        if started.elapsed() > deadline {
            // SAFETY: kill only sends a signal, to the group vng leads.
            unsafe { libc::kill(-(guest.id() as i32), libc::SIGKILL) };
            let _ = guest.wait();
            bail!(
                "the guest did not finish within {} s; console in {}",
                deadline.as_secs(),
                console_path.display()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let console = std::fs::read_to_string(&console_path)?.replace('\r', "");

    let mut report = Report {
        release: String::new(),
        program_types: String::new(),
        chosen: String::new(),
        results: Vec::new(),
    };
    for line in console.lines() {
        let Some(rest) = line.strip_prefix(TAG).map(str::trim) else {
            continue;
        };
        if let Some(release) = rest.strip_prefix("release ") {
            report.release = release.to_string();
        } else if let Some(types) = rest.strip_prefix("types ") {
            report.program_types = types.to_string();
        } else if let Some(chosen) = rest.strip_prefix("chosen ") {
            report.chosen = chosen.trim().to_string();
        } else if let Some(result) = rest.strip_prefix("result ") {
            let mut parts = result.splitn(3, ' ');
            let name = parts.next().unwrap_or("").to_string();
            let ok = parts.next() == Some("0");
            let summary = parts.next().unwrap_or("no summary").to_string();
            report.results.push((name, summary, ok));
        }
    }
    if report.release.is_empty() {
        bail!(
            "the guest never ran the tests (vng exited with {status}); console in {}",
            console_path.display()
        );
    }
    Ok(report)
}

/// `cases-0123abcd` -> `cases`.
fn test_name(test: &Path) -> String {
    let file = test.file_name().unwrap_or_default().to_string_lossy();
    file.rsplit_once('-')
        .map_or(file.to_string(), |(name, _)| name.to_string())
}

/// `s` as one word for the guest's shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
