//! `cargo xtask bench audit`: the sensor against the real auditd on one workload (execs,
//! permission changes, renames, loopback connects, failed opens) with equivalent rules.
//!
//! Parity: both run at once; their logs (auditd's own, and the sensor's auditd-format log)
//! are parsed alike and the workload's records matched one to one by the unique name each
//! operation used. Cost: the workload alone, under the sensor alone and under auditd alone,
//! in rotated order each round; the medians of per-round ratios to the bare rate.

use std::{
    collections::BTreeMap,
    io::Read,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{audit_rule, median, spawn_loop, Auditd, BenchSensor, Setting};

/// The sensor's rules, keyed as the auditd rules of [`auditd_rules`].
const SENSOR_RULES: &str = r#"
[[audit.rules]]
key = "bench_exec"
syscalls = ["execve", "execveat"]
[[audit.rules]]
key = "bench_perm"
syscalls = ["chmod", "fchmod", "fchmodat"]
[[audit.rules]]
key = "bench_rename"
syscalls = ["rename", "renameat", "renameat2"]
[[audit.rules]]
key = "bench_net"
syscalls = ["connect"]
[[audit.rules]]
key = "bench_fail"
syscalls = ["open", "openat"]
outcome = "failure"
"#;

fn auditd_rules() -> Vec<Vec<String>> {
    vec![
        audit_rule("execve,execveat", &[], "bench_exec"),
        audit_rule("chmod,fchmod,fchmodat", &[], "bench_perm"),
        audit_rule("rename,renameat,renameat2", &[], "bench_rename"),
        audit_rule("connect", &[], "bench_net"),
        audit_rule("open,openat", &["success=0"], "bench_fail"),
    ]
}

pub fn run(bin: &Path, count: u32, rounds: u32) -> Result<()> {
    if count == 0 || rounds == 0 {
        bail!("--count and --rounds must be at least 1");
    }
    let audit = Auditd::with_rules(auditd_rules())?;
    if audit.started && std::env::var_os(RERUN).is_none() {
        return rerun(audit);
    }
    let scratch = Scratch::new()?;
    let listener = Listener::start()?;

    let parity = parity(bin, &audit, &scratch, &listener, count)?;
    let costs = costs(bin, &audit, &scratch, &listener, count, rounds)?;
    drop(audit);

    println!("audit bench: {count} iterations of the workload (exec, chmod, rename, connect, failed open)");
    println!("parity, both running at once (records of the workload):");
    println!(
        "  {:<10} {:>7} {:>7} {:>8} {:>12} {:>12}",
        "syscall", "auditd", "sensor", "matched", "only auditd", "only sensor"
    );
    for row in &parity {
        println!(
            "  {:<10} {:>7} {:>7} {:>8} {:>12} {:>12}",
            row.syscall, row.auditd, row.sensor, row.matched, row.only_auditd, row.only_sensor
        );
        for u in &row.unmatched {
            println!("      unmatched: {u}");
        }
    }
    println!("cost, rate as a ratio of the bare rate (median of {rounds} per-round ratios):");
    for (workload, sensor, auditd) in costs {
        println!("  {workload:<6} sensor alone {sensor:.3}, auditd alone {auditd:.3}");
    }
    Ok(())
}

/// Set in the copy of this process that [`rerun`] starts.
const RERUN: &str = "SENSOR_AUDIT_BENCH_RERUN";

/// Runs the bench again in a new process and stops the auditd started here when it is done.
///
/// The kernel gives a task an audit context at fork only once audit has been enabled, so a
/// process started before auditd (this one, on a machine where auditd was not running) is
/// never audited: auditd would see the execs of its children but none of its own chmods,
/// renames, connects and opens. A process forked now has a context.
fn rerun(audit: Auditd) -> Result<()> {
    eprintln!("auditd started by this run: running the bench in a process forked after it");
    let status = Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(RERUN, "1")
        .status()?;
    drop(audit);
    if !status.success() {
        bail!("the bench run under auditd failed: {status}");
    }
    Ok(())
}

/// One line of the parity table.
struct Row {
    syscall: String,
    auditd: usize,
    sensor: usize,
    matched: usize,
    only_auditd: usize,
    only_sensor: usize,
    /// A few of the names recorded a different number of times, for a look in the logs.
    unmatched: Vec<String>,
}

fn parity(
    bin: &Path,
    audit: &Auditd,
    scratch: &Scratch,
    listener: &Listener,
    count: u32,
) -> Result<Vec<Row>> {
    // Unique across runs, so records of an earlier run in auditd's log never count.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tag = format!("auditbench{}x{nanos}", std::process::id());
    // Named without the tag: auditd sees the sensor rotate it, which is not the workload.
    let log = std::env::temp_dir().join(format!("sensor-bench-audit-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let toml = format!(
        "[fim]\npaths = []\n[audit]\nlog = {:?}\n{SENSOR_RULES}",
        log.display().to_string()
    );
    let sensor = BenchSensor::start_with(bin, &toml)?;
    audit.add_rule()?;
    let result = workload(&tag, scratch, listener, count);
    audit.remove_rule()?;
    sensor.finish(&tag)?;
    result?;
    // auditd writes asynchronously; give it a moment to catch up.
    std::thread::sleep(Duration::from_secs(1));

    let ours = records_in(&logs_of(&log)?, &tag);
    if std::env::var_os("AUDIT_BENCH_KEEP").is_none() {
        for path in logs_of(&log)? {
            let _ = std::fs::remove_file(path);
        }
    }
    let theirs = records_in(&logs_of(Path::new("/var/log/audit/audit.log"))?, &tag);

    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let keys: std::collections::BTreeSet<&(String, String)> =
        ours.keys().chain(theirs.keys()).collect();
    for key in keys {
        let a = theirs.get(key).copied().unwrap_or(0);
        let s = ours.get(key).copied().unwrap_or(0);
        let row = rows.entry(key.0.clone()).or_insert_with(|| Row {
            syscall: key.0.clone(),
            auditd: 0,
            sensor: 0,
            matched: 0,
            only_auditd: 0,
            only_sensor: 0,
            unmatched: Vec::new(),
        });
        row.auditd += a;
        row.sensor += s;
        row.matched += a.min(s);
        row.only_auditd += a.saturating_sub(s);
        row.only_sensor += s.saturating_sub(a);
        if a != s && row.unmatched.len() < 3 {
            row.unmatched
                .push(format!("{} (auditd {a}, sensor {s})", key.1));
        }
    }
    Ok(rows.into_values().collect())
}

/// (workload, sensor ratio, auditd ratio) for the exec-only and the mixed workload.
fn costs(
    bin: &Path,
    audit: &Auditd,
    scratch: &Scratch,
    listener: &Listener,
    count: u32,
    rounds: u32,
) -> Result<Vec<(&'static str, f64, f64)>> {
    let log = std::env::temp_dir().join(format!("auditbench{}-cost.log", std::process::id()));
    let toml = format!(
        "[fim]\npaths = []\n[audit]\nlog = {:?}\n{SENSOR_RULES}",
        log.display().to_string()
    );
    let mut out = Vec::new();
    for workload_name in ["exec", "mixed"] {
        let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for round in 0..rounds {
            let mut order = [Setting::Bare, Setting::Sensor, Setting::Auditd];
            order.rotate_left(round as usize % 3);
            let mut rates = BTreeMap::new();
            for setting in order {
                let tag = format!(
                    "auditcost{}-{workload_name}-{}-{round}",
                    std::process::id(),
                    setting.name()
                );
                let go = || -> Result<f64> {
                    if workload_name == "exec" {
                        spawn_loop(&tag, count)
                    } else {
                        workload(&tag, scratch, listener, count)
                    }
                };
                let rate = match setting {
                    Setting::Bare => go()?,
                    Setting::Sensor => {
                        let sensor = BenchSensor::start_with(bin, &toml)?;
                        let rate = go();
                        sensor.finish(&tag)?;
                        rate?
                    }
                    Setting::Auditd => {
                        audit.add_rule()?;
                        let rate = go();
                        audit.remove_rule()?;
                        rate?
                    }
                };
                eprintln!(
                    "{workload_name} round {round} {:>6}: {rate:>8.0} iterations/s",
                    setting.name()
                );
                rates.insert(setting.name(), rate);
            }
            for s in ["sensor", "auditd"] {
                ratios.entry(s).or_default().push(rates[s] / rates["bare"]);
            }
        }
        let _ = std::fs::remove_file(&log);
        out.push((
            workload_name,
            median(ratios.remove("sensor").unwrap_or_default()),
            median(ratios.remove("auditd").unwrap_or_default()),
        ));
    }
    Ok(out)
}

/// Runs `count` iterations of: exec `/usr/bin/true <tag>-exec-<i>`, chmod, rename, a
/// loopback connect, and a failed open, each on a name unique to the iteration; returns
/// iterations per second.
fn workload(tag: &str, scratch: &Scratch, listener: &Listener, count: u32) -> Result<f64> {
    use std::os::unix::fs::PermissionsExt;
    let name = |what: &str, i: u32| scratch.0.join(format!("{tag}-{what}-{i}"));
    for i in 0..count {
        std::fs::write(name("chmod", i), b"")?;
        std::fs::write(name("rename", i), b"")?;
    }
    let start = Instant::now();
    for i in 0..count {
        let status = Command::new("/usr/bin/true")
            .arg(format!("{tag}-exec-{i}"))
            .env_remove("LD_LIBRARY_PATH")
            .status()
            .context("spawn /usr/bin/true")?;
        if !status.success() {
            bail!("/usr/bin/true failed: {status}");
        }
        std::fs::set_permissions(name("chmod", i), std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(name("rename", i), name("renamed", i))?;
        drop(TcpStream::connect(listener.addr)?);
        if std::fs::File::open(name("missing", i)).is_ok() {
            bail!("{} exists", name("missing", i).display());
        }
    }
    let rate = f64::from(count) / start.elapsed().as_secs_f64();
    for i in 0..count {
        std::fs::remove_file(name("chmod", i))?;
        std::fs::remove_file(name("renamed", i))?;
    }
    Ok(rate)
}

/// Counts of the workload's records in an auditd-format log, by (syscall, what it named):
/// the unique name of the operation (`<tag>-chmod-3`), or for a connect the peer address.
/// Records of other processes are left out by the tag; connects by the workload's pid.
fn records(text: &str, tag: &str) -> BTreeMap<(String, String), usize> {
    let me = std::process::id().to_string();
    let mut events: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in text.lines() {
        // auditd's enriched format appends interpreted fields after a 0x1d separator.
        let line = line.split('\x1d').next().unwrap_or("");
        let Some(id) = line
            .split_once("msg=audit(")
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(id, _)| id)
        else {
            continue;
        };
        events.entry(id).or_default().push(line);
    }
    let mut out = BTreeMap::new();
    for lines in events.values() {
        let field = |ty: &str, name: &str| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("type={ty} ")))
                .flat_map(|l| l.split(' '))
                .filter_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(String::from)
                .collect()
        };
        let Some(syscall) = field("SYSCALL", "syscall").into_iter().next() else {
            continue;
        };
        let key = field("SYSCALL", "key")
            .first()
            .map(|k| decode(k))
            .unwrap_or_default();
        if !key.starts_with("bench_") {
            continue;
        }
        let values: Vec<String> = field("EXECVE", "a1")
            .into_iter()
            .chain(field("PATH", "name"))
            .map(|v| decode(&v))
            .collect();
        let named = values.iter().find_map(|v| {
            let at = v.find(&format!("{tag}-"))?;
            Some(v[at..].to_string())
        });
        let what = match named {
            // The marker exec that ends a sensor run, made after auditd's rules are gone.
            Some(n) if n == format!("{tag}-done") => continue,
            Some(n) => n,
            None if field("SYSCALL", "pid").first() == Some(&me) && key == "bench_net" => {
                field("SOCKADDR", "saddr")
                    .into_iter()
                    .next()
                    .unwrap_or_default()
            }
            None => continue,
        };
        *out.entry((syscall_name(&syscall), what)).or_insert(0) += 1;
    }
    out
}

/// A field value: quoted text, or auditd's hex encoding of it.
fn decode(v: &str) -> String {
    if let Some(q) = v.strip_prefix('"') {
        return q.trim_end_matches('"').to_string();
    }
    let bytes: Option<Vec<u8>> = (0..v.len() / 2)
        .map(|i| u8::from_str_radix(v.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    match bytes {
        Some(b) if v.len().is_multiple_of(2) && !v.is_empty() => {
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => v.to_string(),
    }
}

/// x86-64 syscall names of the workload's numbers.
fn syscall_name(nr: &str) -> String {
    let name = match nr {
        "2" => "open",
        "42" => "connect",
        "59" => "execve",
        "82" => "rename",
        "90" => "chmod",
        "91" => "fchmod",
        "257" => "openat",
        "264" => "renameat",
        "268" => "fchmodat",
        "316" => "renameat2",
        "322" => "execveat",
        other => other,
    };
    name.to_string()
}

/// [`records`] of several logs read as one, oldest first: a rotation can fall between two
/// records of one event.
fn records_in(paths: &[PathBuf], tag: &str) -> BTreeMap<(String, String), usize> {
    let text: String = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    records(&text, tag)
}

/// A log and its rotations (`audit.log`, `audit.log.1`, ...): both tools rotate by size.
fn logs_of(log: &Path) -> Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        bail!("{} is not a file path", log.display());
    };
    let name = name.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let rotation = match file.strip_prefix(&format!("{name}.")) {
            Some(n) => n.parse::<u32>().ok(),
            None => (file == name).then_some(0),
        };
        if let Some(n) = rotation {
            out.push((n, path));
        }
    }
    // The highest number is the oldest; the log itself is the newest.
    out.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// A scratch directory for the workload's files, removed when dropped. Its name carries no
/// tag, so only the files' names identify the operations.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("sensor-audit-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback listener that accepts and closes connections on a thread of its own.
struct Listener {
    addr: std::net::SocketAddr,
}

impl Listener {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.read(&mut [0u8; 1]);
            }
        });
        Ok(Self { addr })
    }
}
