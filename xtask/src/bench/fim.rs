//! `bench fim`: small writes to an unwatched and to a watched file, without and with the
//! sensor, in alternating rounds; then the first baseline scan of a tree.
//!
//! Two write shapes: one open and many 64-byte writes (the write family's cost), and an
//! open-append-close loop (the cost of the open and close hooks, and of a hash per close).

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{median, BenchSensor};

const DIR: &str = "/tmp/sensor-bench-fim";

/// What the workloads run under: nothing, the sensor with FIM off, the sensor with FIM.
const SETTINGS: [&str; 3] = ["bare", "no-FIM", "FIM"];

/// One workload: which file, which shape.
#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    watched: bool,
    reopen: bool,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "unwatched writes",
        watched: false,
        reopen: false,
    },
    Workload {
        name: "watched writes",
        watched: true,
        reopen: false,
    },
    Workload {
        name: "unwatched open-append-close",
        watched: false,
        reopen: true,
    },
    Workload {
        name: "watched open-append-close",
        watched: true,
        reopen: true,
    },
];

#[expect(
    clippy::needless_range_loop,
    reason = "the round number picks the order of the settings and labels the output"
)]
pub fn run(bin: &Path, writes: u32, rounds: u32, scan: &Path) -> Result<()> {
    if writes < 10 || rounds == 0 {
        bail!("--writes must be at least 10 and --rounds at least 1");
    }
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(format!("{DIR}/watched"))?;
    std::fs::create_dir_all(format!("{DIR}/plain"))?;
    let toml = format!("[fim]\npaths = [\"{DIR}/watched\"]\n");

    // rates[workload][round][setting]: bare, sensor without FIM, sensor with FIM.
    let mut rates = vec![vec![[0.0f64; 3]; rounds as usize]; WORKLOADS.len()];
    let (mut lost, mut modified) = (0u64, 0u64);
    for round in 0..rounds as usize {
        let mut order = [0usize, 1, 2];
        order.rotate_left(round % 3);
        for setting in order {
            let sensor = match setting {
                0 => None,
                1 => Some(BenchSensor::start_with(bin, "[fim]\npaths = []\n")?),
                _ => Some(BenchSensor::start_with(bin, &toml)?),
            };
            for (i, w) in WORKLOADS.iter().enumerate() {
                let rate = measure(w, writes)?;
                rates[i][round][setting] = rate;
                eprintln!(
                    "round {round} {:>10} {:<28} {rate:>10.0} /s",
                    SETTINGS[setting], w.name
                );
            }
            if let (Some(sensor), 2) = (&sensor, setting) {
                let (l, m) = settle(sensor)?;
                lost += l;
                modified += m;
            }
        }
    }

    println!(
        "fim bench: {writes} writes (open-append-close: {}) x {rounds} rounds; ratios are medians \
         of per-round ratios",
        writes / 10
    );
    for (i, w) in WORKLOADS.iter().enumerate() {
        let med = |s: usize| median(rates[i].iter().map(|r| r[s]).collect());
        let ratio = |a: usize, b: usize| median(rates[i].iter().map(|r| r[a] / r[b]).collect());
        println!(
            "  {:<28} bare {:>9.0}/s  no-FIM {:>9.0}/s  FIM {:>9.0}/s  FIM/bare {:.3}  \
             FIM/no-FIM {:.3}",
            w.name,
            med(0),
            med(1),
            med(2),
            ratio(2, 0),
            ratio(2, 1)
        );
    }
    println!("  sensor: lost records {lost}, file-modified events for the watched file {modified}");
    scan_rate(bin, scan)
}

/// Runs one workload on a fresh file; returns operations per second.
fn measure(w: &Workload, writes: u32) -> Result<f64> {
    let path = if w.watched {
        format!("{DIR}/watched/file")
    } else {
        format!("{DIR}/plain/file")
    };
    std::fs::write(&path, b"")?;
    let buf = [b'x'; 64];
    let open = || std::fs::OpenOptions::new().append(true).open(&path);
    let started = Instant::now();
    let n = if w.reopen {
        let n = writes / 10;
        for _ in 0..n {
            open()?.write_all(&buf)?;
        }
        n
    } else {
        let mut f = open()?;
        for _ in 0..writes {
            f.write_all(&buf)?;
        }
        writes
    };
    Ok(f64::from(n) / started.elapsed().as_secs_f64())
}

/// Waits for the sensor's FIM events to catch up; returns records lost and the modified
/// events seen for the watched file.
fn settle(sensor: &BenchSensor) -> Result<(u64, u64)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mark = format!("{DIR}/watched/mark-{nanos}");
    std::fs::write(&mark, b"mark")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = sensor.events()?;
        let done = events.iter().any(|e| {
            e["event"]["action"] == "file-created" && e["file"]["path"].as_str() == Some(&mark)
        });
        if done {
            let count =
                |f: &dyn Fn(&serde_json::Value) -> bool| events.iter().filter(|e| f(e)).count();
            let modified = count(&|e| {
                e["event"]["action"] == "file-modified"
                    && e["file"]["path"].as_str() == Some(&format!("{DIR}/watched/file"))
            });
            let lost: u64 = events
                .iter()
                .filter(|e| e["event"]["action"] == "lost")
                .map(|e| e["sensor"]["lost"]["count"].as_u64().unwrap_or(0))
                .sum();
            let kernel = sensor.status()?["kernel_lost_total"].as_u64().unwrap_or(0);
            return Ok((lost.max(kernel), modified as u64));
        }
        if Instant::now() > deadline {
            bail!("the sensor did not report the marker file within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Times the first baseline scan of `tree` (hashing every file) and a second, on-demand one.
fn scan_rate(bin: &Path, tree: &Path) -> Result<()> {
    let toml = format!("[fim]\npaths = [{:?}]\n", tree.display().to_string());
    let sensor = BenchSensor::start_with(bin, &toml)?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let fim = loop {
        let status = sensor.status()?;
        if status["fim"]["baseline"] == "ready" {
            break status["fim"].clone();
        }
        if Instant::now() > deadline {
            bail!(
                "the baseline scan of {} did not end within 30 min",
                tree.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let files = fim["last_scan_files"].as_u64().unwrap_or(0);
    let millis = fim["last_scan_millis"].as_u64().unwrap_or(0).max(1);
    let bytes = fim["last_scan_bytes"].as_u64().unwrap_or(0);
    let rescan = std::process::Command::new(bin.join("sensorctl"))
        .args(["--server", &sensor.socket, "fim", "scan"])
        .output()
        .context("sensorctl fim scan")?;
    let rescan_line = String::from_utf8_lossy(&rescan.stderr).trim().to_string();
    println!(
        "  baseline scan of {}: {files} files, {:.0} MB hashed in {:.1} s: {:.0} files/s, \
         {:.0} MB/s",
        tree.display(),
        bytes as f64 / 1e6,
        millis as f64 / 1e3,
        files as f64 * 1e3 / millis as f64,
        bytes as f64 / 1e3 / millis as f64
    );
    println!("  rescan against the stored baseline: {rescan_line}");
    Ok(())
}
