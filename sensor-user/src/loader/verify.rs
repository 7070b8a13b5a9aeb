//! Start-up check that the programs read the running kernel correctly.
//!
//! The verifier proves memory safety, not meaning: a wrong struct offset loads fine and reads
//! garbage. So before the sensor reports ready it runs a process whose every fact it knows (its
//! own executable with `--version`) and compares what the hooks report against the truth.
//! Records of other processes read meanwhile are kept and handed to the reader.

use std::{
    ffi::OsStr,
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::MetadataExt,
    },
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use aya::maps::{MapData, PerCpuArray, RingBuf};

use crate::decode::{self, Record};

/// How long the check waits for its process's records once the process has been reaped.
const GRACE: Duration = Duration::from_secs(2);

/// How long the check process may run before it is killed (it exits at once normally).
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Check runs before records lost to a full ring buffer count as failure.
const ATTEMPTS: u32 = 5;

/// The hooks report something other than the truth, or nothing at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("failed to run the check process {exe}")]
    Spawn {
        exe: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no {record} record carries the check process's pid {pid}: the kernel hooks misread \
         this kernel (a struct offset does not match its layout)"
    )]
    Missing { record: &'static str, pid: u32 },
    #[error("the check process's records were lost to a full ring buffer {0} times running")]
    Lost(u32),
    #[error(
        "the kernel hooks misread this kernel: {field} of the check process read as {got}, \
         expected {expected} (a struct offset does not match this kernel's layout)"
    )]
    Mismatch {
        field: &'static str,
        expected: String,
        got: String,
    },
}

/// What the check process is known to be.
struct Truth {
    pid: u32,
    ppid: u32,
    uid: u32,
    gid: u32,
    exe: Vec<u8>,
    exe_ino: u64,
    cwd: Vec<u8>,
    args: Vec<Vec<u8>>,
    /// Start time of the parent (this process), in clock ticks as `/proc` gives it.
    parent_start_ticks: u64,
}

/// The process the check runs: a program that exits 0 at once, and one argument.
#[derive(Debug, Clone)]
pub struct CheckProcess {
    pub program: PathBuf,
    pub arg: String,
}

impl CheckProcess {
    /// The running binary with `--version`: present wherever the sensor is, and quick.
    pub fn own_version() -> Result<Self, VerifyError> {
        let program = std::env::current_exe()
            .map_err(|source| spawn_error(PathBuf::from("/proc/self/exe"), source))?;
        Ok(Self {
            program,
            arg: "--version".into(),
        })
    }
}

/// Runs the check; returns the other processes' records read while it ran, in order.
///
/// A busy host can fill the ring buffer while the check runs and cost it its own records; that
/// shows in the loss counters, and the check is then run again rather than failed.
pub fn verify(
    ring: &mut RingBuf<MapData>,
    lost: &PerCpuArray<MapData, u64>,
    process: &CheckProcess,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    let mut others = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let lost_before = lost_total(lost);
        match run_once(ring, process, &mut others) {
            Err(e @ VerifyError::Missing { .. }) if lost_total(lost) > lost_before => {
                tracing::debug!(attempt, error = %e, "check records lost to a full ring buffer");
            }
            result => return result.map(|()| others),
        }
    }
    Err(VerifyError::Lost(ATTEMPTS))
}

/// Sum of the per-CPU loss counters.
fn lost_total(lost: &PerCpuArray<MapData, u64>) -> u64 {
    lost.get(&0, 0).map_or(0, |values| values.iter().sum())
}

/// One run of the check process; other records read go to `others`.
fn run_once(
    ring: &mut RingBuf<MapData>,
    process: &CheckProcess,
    others: &mut Vec<Vec<u8>>,
) -> Result<(), VerifyError> {
    let exe = std::fs::canonicalize(&process.program)
        .map_err(|source| spawn_error(process.program.clone(), source))?;
    let mut child = Command::new(&exe)
        .arg(&process.arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| spawn_error(exe.clone(), source))?;
    let truth = Truth {
        pid: child.id(),
        ppid: std::process::id(),
        // SAFETY: these getters have no preconditions.
        uid: unsafe { libc::getuid() },
        // SAFETY: as above.
        gid: unsafe { libc::getgid() },
        exe: exe.as_os_str().as_bytes().to_vec(),
        exe_ino: std::fs::metadata(&exe).map(|m| m.ino()).unwrap_or(0),
        cwd: std::env::current_dir()
            .map(|d| d.into_os_string().into_vec())
            .unwrap_or_default(),
        args: vec![
            exe.as_os_str().as_bytes().to_vec(),
            process.arg.as_bytes().to_vec(),
        ],
        parent_start_ticks: own_start_ticks(),
    };
    // Read while the child runs, so a busy host's records do not pile up meanwhile. Its own
    // records were written in its context before it was reaped; the grace after that only
    // covers a reader that sees the producer's commit late.
    let (mut exec, mut exit) = (None, None);
    let started = Instant::now();
    let mut deadline = None;
    while exec.is_none() || exit.is_none() {
        let Some(item) = ring.next() else {
            if deadline.is_none() {
                let status = child.try_wait();
                if !matches!(status, Ok(None)) || started.elapsed() > RUN_LIMIT {
                    tracing::debug!(pid = truth.pid, ?status, "check process ran");
                    let _ = child.kill();
                    let _ = child.wait();
                    deadline = Some(Instant::now() + GRACE);
                }
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                let record = if exec.is_none() { "exec" } else { "exit" };
                return Err(VerifyError::Missing {
                    record,
                    pid: truth.pid,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        match decode::decode(&item) {
            Ok(Record::Exec(e)) if e.raw.ids.tgid == truth.pid => exec = Some(e),
            Ok(Record::Exit(x)) if x.ids.tgid == truth.pid => exit = Some(x),
            Ok(Record::ExecFailed(f)) if f.raw.ids.tgid == truth.pid => {}
            _ => others.push(item.to_vec()),
        }
    }
    let (exec, exit) = (
        exec.expect("loop ends with both"),
        exit.expect("loop ends with both"),
    );

    let r = &exec.raw;
    check("task_struct.tgid", truth.pid, r.ids.tgid)?;
    check("task_struct.real_parent", truth.ppid, r.ids.ppid)?;
    check("cred.uid", truth.uid, r.creds.uid)?;
    check("cred.gid", truth.gid, r.creds.gid)?;
    check("argc", truth.args.len() as u32, r.argc)?;
    check("argv", shown(&truth.args), shown(&exec.args))?;
    check("executable inode", truth.exe_ino, r.exe_ino)?;
    check(
        "executable path",
        text(&truth.exe),
        text(&exec.executable.bytes),
    )?;
    check("working directory", text(&truth.cwd), text(&exec.cwd.bytes))?;
    // SAFETY: sysconf has no preconditions.
    let ns_per_tick = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let parent_start = r.ids.parent_start_boottime / ns_per_tick;
    check(
        "task_struct.start_boottime",
        truth.parent_start_ticks,
        parent_start,
    )?;
    check("exit pid", truth.pid, exit.ids.tgid)?;
    check("exit status", 0, exit.exit_code)?;
    tracing::debug!(
        held = others.len(),
        "kernel reads verified against a known process"
    );
    Ok(())
}

/// This process's start time in clock ticks since boot (`/proc/self/stat`, field 22).
fn own_start_ticks() -> u64 {
    let stat = std::fs::read("/proc/self/stat").unwrap_or_default();
    crate::process::seed::parse_stat(&stat).map_or(0, |s| s.start_ticks)
}

fn spawn_error(exe: PathBuf, source: std::io::Error) -> VerifyError {
    VerifyError::Spawn {
        exe: exe.display().to_string(),
        source,
    }
}

fn check<T: PartialEq + std::fmt::Debug>(
    field: &'static str,
    expected: T,
    got: T,
) -> Result<(), VerifyError> {
    if expected == got {
        return Ok(());
    }
    Err(VerifyError::Mismatch {
        field,
        expected: format!("{expected:?}"),
        got: format!("{got:?}"),
    })
}

fn text(bytes: &[u8]) -> String {
    OsStr::from_bytes(bytes).to_string_lossy().into_owned()
}

fn shown(args: &[Vec<u8>]) -> Vec<String> {
    args.iter().map(|a| text(a)).collect()
}
