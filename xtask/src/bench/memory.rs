//! `bench memory`: mmap/mprotect-heavy workloads bare, with the sensor with its memory hooks
//! off, and with them on, in rotating order; prints medians, ratios and the records lost.
//!
//! Three shapes: map and unmap anonymous pages (every `mmap` goes through the hook and the
//! protection map), flip a page between read-write and read-only (`mprotect` without
//! execute: a lookup), and the JIT pattern of writing code into a fresh page and making it
//! executable (a record and an alert candidate per page; alerts are rate-limited).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{median, BenchSensor};

const SETTINGS: [&str; 3] = ["bare", "no-memory", "memory"];

#[derive(Clone, Copy)]
enum Shape {
    MapUnmap,
    Protect,
    WriteThenExec,
}

const WORKLOADS: [(&str, Shape); 3] = [
    ("mmap+munmap anonymous", Shape::MapUnmap),
    ("mprotect rw<->r", Shape::Protect),
    ("write then mprotect r-x", Shape::WriteThenExec),
];

#[expect(
    clippy::needless_range_loop,
    reason = "the round number picks the order of the settings and labels the output"
)]
pub fn run(bin: &std::path::Path, ops: u32, rounds: u32) -> Result<()> {
    if ops < 10 || rounds == 0 {
        bail!("--ops must be at least 10 and --rounds at least 1");
    }
    let mut rates = vec![vec![[0.0f64; 3]; rounds as usize]; WORKLOADS.len()];
    let (mut lost, mut records, mut alerts, mut limited) = (0u64, 0u64, 0u64, 0u64);
    for round in 0..rounds as usize {
        let mut order = [0usize, 1, 2];
        order.rotate_left(round % 3);
        for setting in order {
            let sensor = match setting {
                0 => None,
                1 => Some(BenchSensor::start_with(
                    bin,
                    "[fim]\npaths = []\n[memory]\nenabled = false\n",
                )?),
                _ => Some(BenchSensor::start_with(bin, "[fim]\npaths = []\n")?),
            };
            for (i, (name, shape)) in WORKLOADS.iter().enumerate() {
                let rate = measure(*shape, ops)?;
                rates[i][round][setting] = rate;
                eprintln!(
                    "round {round} {:>10} {name:<26} {rate:>10.0} /s",
                    SETTINGS[setting]
                );
            }
            if let (Some(sensor), 2) = (&sensor, setting) {
                // Let the reader drain the ring before the counters are read.
                std::thread::sleep(Duration::from_secs(1));
                let status = sensor.status()?;
                lost += status["kernel_lost_total"].as_u64().unwrap_or(0);
                records += status["records_per_hook"]["memory"].as_u64().unwrap_or(0);
                alerts += status["alerts_total"].as_u64().unwrap_or(0);
                limited += status["alerts_rate_limited"].as_u64().unwrap_or(0);
            }
        }
    }
    println!(
        "memory bench: {ops} operations x {rounds} rounds; ratios are medians of per-round ratios"
    );
    for (i, (name, _)) in WORKLOADS.iter().enumerate() {
        let med = |s: usize| median(rates[i].iter().map(|r| r[s]).collect());
        let ratio = |a: usize, b: usize| median(rates[i].iter().map(|r| r[a] / r[b]).collect());
        println!(
            "  {name:<26} bare {:>9.0}/s  no-memory {:>9.0}/s  memory {:>9.0}/s  memory/bare {:.3}  \
             memory/no-memory {:.3}",
            med(0),
            med(1),
            med(2),
            ratio(2, 0),
            ratio(2, 1)
        );
    }
    println!(
        "  sensor with memory hooks: records {records}, lost {lost}, alerts {alerts}, \
         alerts left out by the rate limit {limited}"
    );
    Ok(())
}

/// Runs one workload `ops` times; returns operations per second.
fn measure(shape: Shape, ops: u32) -> Result<f64> {
    const PAGE: usize = 4096;
    let map = |prot| {
        // SAFETY: a fresh private anonymous mapping; checked below.
        unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        }
    };
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let started = Instant::now();
    match shape {
        Shape::MapUnmap => {
            for _ in 0..ops {
                let p = map(rw);
                if p == libc::MAP_FAILED {
                    bail!("mmap: {}", std::io::Error::last_os_error());
                }
                // SAFETY: `p` is the page just mapped.
                unsafe { libc::munmap(p, PAGE) };
            }
        }
        Shape::Protect => {
            let p = map(rw);
            if p == libc::MAP_FAILED {
                bail!("mmap: {}", std::io::Error::last_os_error());
            }
            for i in 0..ops {
                let prot = if i % 2 == 0 { libc::PROT_READ } else { rw };
                // SAFETY: `p` is a page of ours.
                unsafe { libc::mprotect(p, PAGE, prot) };
            }
            // SAFETY: as above.
            unsafe { libc::munmap(p, PAGE) };
        }
        Shape::WriteThenExec => {
            for _ in 0..ops {
                let p = map(rw);
                if p == libc::MAP_FAILED {
                    bail!("mmap: {}", std::io::Error::last_os_error());
                }
                // SAFETY: `p` is a writable page just mapped; 0xc3 is `ret`.
                unsafe {
                    *(p as *mut u8) = 0xc3;
                    libc::mprotect(p, PAGE, libc::PROT_READ | libc::PROT_EXEC);
                    libc::munmap(p, PAGE);
                }
            }
        }
    }
    Ok(f64::from(ops) / started.elapsed().as_secs_f64())
}
