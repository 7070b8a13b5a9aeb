//! Counters the status API reports, shared by every stage.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Mutex, OnceLock,
    },
    time::Instant,
};

/// Counters and facts about this run of the sensor.
pub struct Stats {
    pub started: Instant,
    pub events_total: AtomicU64,
    pub decode_errors: AtomicU64,
    pub subscriber_dropped: AtomicU64,
    /// Audit events the audit log failed to write.
    pub audit_log_write_errors: AtomicU64,
    pub table_entries: AtomicU64,
    pub alerts_total: AtomicU64,
    pub alerts_allowed: AtomicU64,
    pub alerts_rate_limited: AtomicU64,
    pub ready: AtomicBool,
    /// Records refused by the ring buffer, per CPU, as last read from the kernel.
    pub kernel_lost: Mutex<Vec<u64>>,
    /// Records received per hook name.
    pub records: Mutex<BTreeMap<String, u64>>,
    /// Hooks and hook types, set once at start.
    pub hooks: OnceLock<Hooks>,
    /// File-integrity counters, when FIM is on.
    pub fim: OnceLock<std::sync::Arc<crate::fim::FimStats>>,
}

/// What the loader attached and learnt about the kernel, for the status API.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub attached: Vec<String>,
    pub refused: Vec<String>,
    pub chosen: std::collections::BTreeMap<String, String>,
    pub program_types: Vec<String>,
    pub program_types_refused: Vec<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            events_total: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            subscriber_dropped: AtomicU64::new(0),
            audit_log_write_errors: AtomicU64::new(0),
            table_entries: AtomicU64::new(0),
            alerts_total: AtomicU64::new(0),
            alerts_allowed: AtomicU64::new(0),
            alerts_rate_limited: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            kernel_lost: Mutex::new(Vec::new()),
            records: Mutex::new(BTreeMap::new()),
            hooks: OnceLock::new(),
            fim: OnceLock::new(),
        }
    }
}

impl Stats {
    /// Counts one record from `hook`.
    pub fn record(&self, hook: &str) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        *records.entry(hook.to_string()).or_default() += 1;
    }

    /// Adds `n` events dropped for a slow subscriber.
    pub fn dropped(&self, n: u64) {
        self.subscriber_dropped.fetch_add(n, Relaxed);
    }
}
