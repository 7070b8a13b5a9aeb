//! Benchmarks: workloads run without and with the sensor (and auditd) in one run, printing
//! ratios, since absolute times on shared machines are noise.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

mod audit;
mod fim;
mod memory;

#[derive(Subcommand)]
pub enum Which {
    /// Spawn rate of short processes: bare, with the sensor, with auditd recording execve.
    Exec {
        /// Processes spawned per measurement.
        #[arg(long, default_value_t = 2000)]
        count: u32,
        /// Measurements per setting; the median rate is reported.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
    /// File writes, unwatched and watched, without and with the sensor; then the baseline scan
    /// rate over a tree (default /usr).
    Fim {
        /// Writes per measurement (64 bytes each, one open); the open-append-close loop does a
        /// tenth of this.
        #[arg(long, default_value_t = 2_000_000)]
        writes: u32,
        /// Measurements per setting; medians are reported.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Tree whose first baseline scan is timed.
        #[arg(long, default_value = "/usr")]
        scan: PathBuf,
    },
    /// The sensor against the real auditd with equivalent rules: records matched one to one
    /// on a workload of execs, chmods, renames, loopback connects and failed opens, and each
    /// tool's cost as a ratio of the bare rate (exec-only and mixed workloads).
    Audit {
        /// Workload iterations per measurement.
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Measurements per setting; medians are reported.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
    /// mmap/mprotect-heavy workloads bare, with the sensor's memory hooks off, and on.
    Memory {
        /// Operations per measurement.
        #[arg(long, default_value_t = 200_000)]
        ops: u32,
        /// Measurements per setting; medians are reported.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
}

pub fn run(_root: &Path, bin: &Path, which: Which) -> Result<()> {
    crate::require_root("load the sensor and configure auditd")?;
    match which {
        Which::Exec { count, rounds } => exec(bin, count, rounds),
        Which::Fim {
            writes,
            rounds,
            scan,
        } => fim::run(bin, writes, rounds, &scan),
        Which::Memory { ops, rounds } => memory::run(bin, ops, rounds),
        Which::Audit { count, rounds } => audit::run(bin, count, rounds),
    }
}

/// What the workload runs under.
#[derive(Clone, Copy, PartialEq)]
enum Setting {
    Bare,
    Sensor,
    Auditd,
}

impl Setting {
    fn name(self) -> &'static str {
        match self {
            Setting::Bare => "bare",
            Setting::Sensor => "sensor",
            Setting::Auditd => "auditd",
        }
    }
}

fn exec(bin: &Path, count: u32, rounds: u32) -> Result<()> {
    if count == 0 || rounds == 0 {
        bail!("--count and --rounds must be at least 1");
    }
    let audit = Auditd::prepare()?;
    let mut rates: Vec<(u32, Setting, f64)> = Vec::new();
    let mut sensor_seen = Tally::default();
    let mut audit_seen = 0u64;
    for round in 0..rounds {
        // Rotate the order so drift over the run (caches, other load) spreads over all three.
        let mut order = [Setting::Bare, Setting::Sensor, Setting::Auditd];
        order.rotate_left(round as usize % 3);
        for setting in order {
            let tag = format!("bench{}-{}-{round}", std::process::id(), setting.name());
            let rate = match setting {
                Setting::Bare => spawn_loop(&tag, count)?,
                Setting::Sensor => {
                    let sensor = BenchSensor::start(bin)?;
                    let rate = spawn_loop(&tag, count)?;
                    sensor_seen.add(sensor.finish(&tag)?);
                    rate
                }
                Setting::Auditd => {
                    audit.add_rule()?;
                    let rate = spawn_loop(&tag, count);
                    audit.remove_rule()?;
                    audit_seen += audit.records_of(&tag)?;
                    rate?
                }
            };
            eprintln!("round {round} {:>6}: {rate:>8.0} spawns/s", setting.name());
            rates.push((round, setting, rate));
        }
    }
    drop(audit);

    let rate = |round: u32, s: Setting| {
        let found = rates.iter().find(|r| r.0 == round && r.1 == s);
        found.map_or(f64::NAN, |r| r.2)
    };
    let bare = median((0..rounds).map(|r| rate(r, Setting::Bare)).collect());
    let expected = u64::from(count) * u64::from(rounds);
    println!("exec bench: {count} spawns x {rounds} rounds per setting");
    println!("  bare    {bare:>8.0} spawns/s (median)");
    for s in [Setting::Sensor, Setting::Auditd] {
        let r = median((0..rounds).map(|r| rate(r, s)).collect());
        // Each round's ratio pairs measurements taken seconds apart, so slow drift of the
        // machine cancels out; the median of those is the figure to quote.
        let paired = median(
            (0..rounds)
                .map(|r| rate(r, s) / rate(r, Setting::Bare))
                .collect(),
        );
        println!(
            "  {:<7} {r:>8.0} spawns/s (median)  ratio {:.3} (median of per-round ratios {paired:.3})",
            s.name(),
            r / bare
        );
    }
    println!(
        "  sensor events: exec {}/{expected}, exit {}/{expected}, lost records {}",
        sensor_seen.execs, sensor_seen.exits, sensor_seen.lost
    );
    println!(
        "  sensor CPU after start-up: {:.2} s user+system, {:.0} us per process spawned",
        sensor_seen.cpu_secs,
        sensor_seen.cpu_secs * 1e6 / expected as f64
    );
    println!("  auditd EXECVE records: {audit_seen}/{expected}");
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Spawns `count` processes one after another (`/usr/bin/true <tag>-<i>`); returns spawns/s.
fn spawn_loop(tag: &str, count: u32) -> Result<f64> {
    let start = Instant::now();
    for i in 0..count {
        let status = Command::new("/usr/bin/true")
            .arg(format!("{tag}-{i}"))
            // cargo points the loader at the build's directories, which would add failed
            // opens to every spawn.
            .env_remove("LD_LIBRARY_PATH")
            .status()
            .context("spawn /usr/bin/true")?;
        if !status.success() {
            bail!("/usr/bin/true failed: {status}");
        }
    }
    Ok(f64::from(count) / start.elapsed().as_secs_f64())
}

/// Events of the workload the sensor delivered.
#[derive(Default)]
struct Tally {
    execs: u64,
    exits: u64,
    lost: u64,
    /// CPU time the sensor used, user and system.
    cpu_secs: f64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.execs += other.execs;
        self.exits += other.exits;
        self.lost += other.lost;
        self.cpu_secs += other.cpu_secs;
    }
}

/// User plus system CPU seconds of process `pid`, from `/proc/<pid>/stat`.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11) + ticks(12)) / hz)
}

/// The release sensor, run with its own socket and JSON file in a scratch directory.
struct BenchSensor {
    child: Child,
    dir: PathBuf,
    ctl: PathBuf,
    socket: String,
    /// CPU time spent starting (BTF, verifier, /proc seeding), left out of the figures.
    cpu_at_ready: f64,
}

impl BenchSensor {
    fn start(bin: &Path) -> Result<Self> {
        // The exec bench measures process hooks alone; FIM has a bench of its own.
        Self::start_with(bin, "[fim]\npaths = []\n")
    }

    /// Starts the sensor with `toml` appended to its configuration.
    fn start_with(bin: &Path, toml: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("sensor-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("sensor.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = {:?}\n{toml}",
                dir.join("state").display().to_string()
            ),
        )?;
        let socket = format!("unix:{}", dir.join("sensor.sock").display());
        let child = Command::new(bin.join("sensor"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &socket, "--json-out"])
            .arg(dir.join("events.json"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sensor.log"))?)
            .spawn()
            .context("start the sensor")?;
        let mut sensor = Self {
            child,
            dir,
            ctl: bin.join("sensorctl"),
            socket,
            cpu_at_ready: 0.0,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = sensor.child.try_wait()? {
                bail!("sensor exited with {status}: {}", sensor.log());
            }
            let ready = Command::new(&sensor.ctl)
                .args(["--server", &sensor.socket, "status"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if ready.success() {
                sensor.cpu_at_ready = cpu_secs(sensor.child.id())?;
                return Ok(sensor);
            }
            if Instant::now() > deadline {
                bail!("sensor not ready after 60 s: {}", sensor.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sensor.log")).unwrap_or_default()
    }

    /// `sensorctl status` as JSON.
    fn status(&self) -> Result<serde_json::Value> {
        let out = Command::new(&self.ctl)
            .args(["--server", &self.socket, "status"])
            .output()?;
        serde_json::from_slice(&out.stdout).context("sensorctl status output")
    }

    /// Every event written so far.
    fn events(&self) -> Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(self.dir.join("events.json"))?;
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        text[..complete]
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .context("sensor JSON output")
    }

    /// Waits for a marker exec to be written, stops the sensor, counts the workload's events.
    fn finish(mut self, tag: &str) -> Result<Tally> {
        let marker = format!("{tag}-done");
        Command::new("/usr/bin/true").arg(&marker).status()?;
        let json = self.dir.join("events.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&json)
            .unwrap_or_default()
            .contains(&marker)
        {
            if Instant::now() > deadline {
                bail!("the sensor did not report the marker within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let cpu = cpu_secs(self.child.id())? - self.cpu_at_ready;
        // SAFETY: kill has no memory preconditions; the pid is our live child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;

        let prefix = format!("{tag}-");
        let mut tally = Tally {
            cpu_secs: cpu,
            ..Tally::default()
        };
        let mut ours = HashSet::new();
        let text = std::fs::read_to_string(&json)?;
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .context("sensor JSON output")?;
        for e in &events {
            let action = e["event"]["action"].as_str().unwrap_or("");
            let arg = e["process"]["args"][1].as_str().unwrap_or("");
            if action == "exec" && arg.starts_with(&prefix) && arg != marker {
                tally.execs += 1;
                ours.insert(e["process"]["entity_id"].clone());
            }
            if action == "lost" {
                tally.lost += e["sensor"]["lost"]["count"].as_u64().unwrap_or(0);
            }
        }
        tally.exits = events
            .iter()
            .filter(|e| e["event"]["action"] == "exit" && ours.contains(&e["process"]["entity_id"]))
            .count() as u64;
        Ok(tally)
    }
}

impl Drop for BenchSensor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// auditd, installed from Debian packages and started when missing, with bench rules (by
/// default one that records execve and execveat as a CIS baseline does). What was started
/// here is stopped again.
struct Auditd {
    started: bool,
    backlog: Option<String>,
    /// Each rule's arguments after `-a` (add) or `-d` (delete).
    rules: Vec<Vec<String>>,
}

const AUDIT_KEY: &str = "sensor_bench_exec";

/// An `always,exit` rule for 64-bit `syscalls` with extra `filters`, keyed `key`.
fn audit_rule(syscalls: &str, filters: &[&str], key: &str) -> Vec<String> {
    let mut rule: Vec<String> = ["always,exit", "-F", "arch=b64", "-S", syscalls]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for f in filters {
        rule.extend(["-F".to_string(), f.to_string()]);
    }
    rule.extend(["-k".to_string(), key.to_string()]);
    rule
}

impl Auditd {
    fn prepare() -> Result<Self> {
        Self::with_rules(vec![audit_rule("execve,execveat", &[], AUDIT_KEY)])
    }

    fn with_rules(rules: Vec<Vec<String>>) -> Result<Self> {
        crate::setup::ensure_auditd()?;
        let status = crate::output(Command::new("auditctl").arg("-s"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        let started = field("pid ").unwrap_or(0) == 0;
        if started {
            crate::status(&mut Command::new("auditd"))?;
            std::thread::sleep(Duration::from_millis(500));
        }
        let backlog = field("backlog_limit ").map(|b| b.to_string());
        // Debian's default rules raise the backlog to 8192; the kernel default of 64 would make
        // auditd look worse than it is configured in practice.
        crate::status(Command::new("auditctl").args(["-b", "8192"]))?;
        let audit = Self {
            started,
            backlog,
            rules,
        };
        // Rules left by an interrupted run would double the records.
        audit.remove_rule()?;
        Ok(audit)
    }

    fn add_rule(&self) -> Result<()> {
        for rule in &self.rules {
            crate::status(Command::new("auditctl").arg("-a").args(rule))?;
        }
        Ok(())
    }

    fn remove_rule(&self) -> Result<()> {
        for rule in &self.rules {
            // Fails when the rule is not loaded, which is fine.
            let _ = Command::new("auditctl").arg("-d").args(rule).output()?;
        }
        Ok(())
    }

    /// EXECVE records in the audit log whose first argument carries `tag`.
    fn records_of(&self, tag: &str) -> Result<u64> {
        // auditd writes asynchronously; give it a moment to catch up.
        std::thread::sleep(Duration::from_secs(1));
        // auditd rotates its log by size, so the records may span several files.
        let needle = format!("a1=\"{tag}-");
        let mut n = 0;
        for entry in std::fs::read_dir("/var/log/audit")? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("audit.log"))
            {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                n += log
                    .lines()
                    .filter(|l| l.starts_with("type=EXECVE") && l.contains(&needle))
                    .count() as u64;
            }
        }
        Ok(n)
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = self.remove_rule();
        if let Some(b) = &self.backlog {
            let _ = Command::new("auditctl").args(["-b", b]).output();
        }
        if self.started {
            // Stop the daemon this run started, as its service unit would.
            let pid = std::fs::read_to_string("/var/run/auditd.pid").unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}
