//! `cargo xtask`: set-up, build, run, test and benchmarks for the sensor.
//!
//! Every command first makes sure the toolchain pieces exist (rust-src for the nightly, a
//! bpf-linker built against the nightly's own LLVM), so a fresh machine needs nothing else.

mod bench;
mod setup;
mod vmtest;

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build needs (rust-src, bpf-linker); nothing else.
    Setup,
    /// Build `target/release/sensor` and `target/release/sensorctl`.
    Build,
    /// Build, then run the sensor in the foreground printing JSON lines (Ctrl-C stops it).
    Run {
        /// Extra arguments for `sensor` (for example `--config FILE`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every check: formatting, clippy (host and bpf), unit and kernel tests.
    Test {
        /// Only run tests whose name contains this.
        filter: Option<String>,
    },
    /// Run the kernel tests inside qemu guests booted with other kernels (default: Debian 12's
    /// current 6.1), installing qemu, virtme-ng and the kernels on first use.
    Vmtest {
        /// Debian kernel package to boot, e.g. `linux-image-6.1.0-47-amd64-unsigned`
        /// (repeatable).
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Run only this test binary (`fim`, `offsets`, `sensor_user`, ...; repeatable).
        #[arg(long = "only")]
        only: Vec<String>,
        /// Run only the tests whose name contains this.
        filter: Option<String>,
        /// Run the short list CI runs: one test of each area (see `QUICK` in vmtest.rs).
        #[arg(long, conflicts_with_all = ["only", "filter"])]
        quick: bool,
    },
    /// Benchmarks that print ratios measured side by side.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = workspace_root();
    match args.command {
        Cmd::Setup => setup::ensure(&root).map(drop),
        Cmd::Build => build(&root).map(drop),
        Cmd::Run { args } => run(&root, &args),
        Cmd::Test { filter } => test(&root, filter.as_deref()),
        Cmd::Vmtest {
            kernels,
            only,
            filter,
            quick,
        } => vmtest::run(
            &root,
            kernels,
            &vmtest::Selection {
                only: &only,
                filter: filter.as_deref(),
                quick,
            },
        ),
        Cmd::Bench { which } => {
            let bin = build(&root)?;
            bench::run(&root, &bin, which)
        }
    }
}

/// The workspace directory (parent of `xtask/`).
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .into()
}

/// A `cargo` command in the workspace with the bpf-linker on PATH.
fn cargo(root: &std::path::Path, path_env: &std::ffi::OsStr) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).env("PATH", path_env);
    cmd
}

fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Builds the release binaries; returns the directory holding them.
fn build(root: &std::path::Path) -> Result<PathBuf> {
    let path_env = setup::ensure(root)?;
    status(cargo(root, &path_env).args(["build", "--release", "-p", "sensor-user", "--bins"]))?;
    let bin = root.join("target/release");
    eprintln!(
        "built {} and {}",
        bin.join("sensor").display(),
        bin.join("sensorctl").display()
    );
    Ok(bin)
}

fn run(root: &std::path::Path, extra: &[String]) -> Result<()> {
    let bin = build(root)?;
    require_root("run the sensor")?;
    let mut cmd = Command::new(bin.join("sensor"));
    if !extra.iter().any(|a| a == "--json-out") {
        cmd.args(["--json-out", "-"]);
    }
    cmd.args(extra);
    // Replace this process so Ctrl-C reaches the sensor alone and it shuts down cleanly.
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(err).context("failed to start the sensor")
}

fn test(root: &std::path::Path, filter: Option<&str>) -> Result<()> {
    let path_env = setup::ensure(root)?;
    let ci = std::env::var_os("CI").is_some();
    if filter.is_none() {
        status(cargo(root, &path_env).args(["fmt", "--all", "--check"]))?;
        status(
            cargo(root, &path_env)
                .args(["clippy", "--release", "--workspace", "--all-targets", "--"])
                .args(["-D", "warnings"]),
        )?;
        status(
            Command::new("cargo")
                .current_dir(root.join("sensor-ebpf"))
                .env("PATH", &path_env)
                .args(["+nightly", "clippy", "--release", "-Z", "build-std=core"])
                .args(["--target", "bpfel-unknown-none", "--", "-D", "warnings"]),
        )?;
    }
    build(root)?;
    if ci {
        require_root("run the kernel tests in CI")?;
    }
    setup::ensure_auditd()?;
    let mut cmd = cargo(root, &path_env);
    cmd.args(["test", "--release", "--workspace", "--"]);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    // Kernel tests each start a sensor and a burst of processes; two at a time fit 2 cores.
    cmd.arg("--test-threads=2");
    status(&mut cmd)
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("root is needed to {what} (eBPF programs); run as root");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; a failure carries its stderr.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program` on PATH or in the sbin directories root's PATH may lack.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.exists())
}
