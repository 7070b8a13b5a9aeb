//! Benchmarks: workloads run without and with the sensor (and auditd) in one run, printing
//! ratios, since absolute times on shared machines are noise.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Which {
    /// Spawn rate of short processes: bare, with the sensor, with auditd recording execve.
    Exec {
        /// Processes spawned per measurement.
        #[arg(long, default_value_t = 3000)]
        count: u32,
    },
}

pub fn run(_root: &Path, _bin: &Path, _which: Which) -> Result<()> {
    anyhow::bail!("not yet")
}
