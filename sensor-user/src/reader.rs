//! Reader stage: drains the kernel ring buffer on tokio and drives decode, process and bus.
//!
//! In: ring-buffer records and the per-CPU loss counters. Out: events on the bus, including
//! `lost` events whenever the kernel counted refused records.

use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use sensor_proto::v1::{Event, LostDetail};
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use crate::{bus::Bus, decode, process::Tracker, stats::Stats};

/// How often loss counters are read and the process table is aged.
const TICK: Duration = Duration::from_millis(250);

/// Pause after each drain, so records arriving one by one are read in batches: one wake-up
/// and one output write per batch instead of per record. It bounds the added latency; the
/// ring buffer holds far more than arrives in this time.
const BATCH_WAIT: Duration = Duration::from_millis(10);

/// The kernel side's outputs, as the loader hands them over.
pub struct Ring {
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
    /// Records already taken off the ring buffer (by the start-up check), handled first.
    pub backlog: Vec<Vec<u8>>,
}

/// The FIM stage as the reader sees it: the thread (stopped at shutdown) and the events it
/// makes, which the reader publishes in its own order.
pub struct FimLink {
    pub handle: crate::fim::Handle,
    pub events: tokio::sync::mpsc::UnboundedReceiver<Event>,
}

/// Runs until `shutdown`; returns an error only if the ring buffer cannot be polled.
pub async fn run(
    ring: Ring,
    mut tracker: Tracker,
    mut bus: Bus,
    stats: Arc<Stats>,
    mut fim: Option<FimLink>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Ring {
        events,
        lost,
        backlog,
    } = ring;
    for item in &backlog {
        handle(item, &mut tracker, &mut bus, &stats);
    }
    // SAFETY: the ring buffer owns its map fd for as long as it lives, and it lives inside the
    // AsyncFd, so the registered fd stays open and unchanged.
    let mut ring = unsafe { AsyncFd::register(events) }?;
    let mut tick = tokio::time::interval(TICK);
    let mut last_lost: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    handle(&item, &mut tracker, &mut bus, &stats);
                }
                guard.clear_ready();
                tokio::time::sleep(BATCH_WAIT).await;
            }
            Some(event) = next_fim_event(&mut fim) => bus.publish(event),
            _ = tick.tick() => {
                report_lost(&lost, &mut last_lost, &tracker, &mut bus, &stats);
                tracker.table.expire(std::time::Instant::now(), false);
                stats.table_entries.store(tracker.table.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            () = shutdown.cancelled() => break,
        }
    }
    // Drain what the kernel queued before the hooks went away.
    let ring = ring.get_mut();
    while let Some(item) = ring.next() {
        handle(&item, &mut tracker, &mut bus, &stats);
    }
    report_lost(&lost, &mut last_lost, &tracker, &mut bus, &stats);
    if let Some(mut link) = fim.take() {
        // The FIM thread reports what it still holds (creates not yet closed, settling
        // changes) before it stops.
        tokio::task::block_in_place(|| link.handle.stop());
        while let Ok(event) = link.events.try_recv() {
            bus.publish(event);
        }
    }
    Ok(())
}

async fn next_fim_event(fim: &mut Option<FimLink>) -> Option<Event> {
    match fim {
        Some(link) => link.events.recv().await,
        None => std::future::pending().await,
    }
}

fn handle(bytes: &[u8], tracker: &mut Tracker, bus: &mut Bus, stats: &Stats) {
    match decode::decode(bytes) {
        Ok(record) => {
            stats.record(hook_name(&record));
            if let Some(event) = tracker.handle(&record) {
                tracing::trace!(action = %event.action, "event");
                bus.publish(event);
            }
            for derived in tracker.take_derived() {
                bus.publish(derived);
            }
            let alerts = tracker.take_alerts();
            if !alerts.is_empty() {
                use std::sync::atomic::Ordering::Relaxed;
                stats.alerts_total.fetch_add(alerts.len() as u64, Relaxed);
                for alert in alerts {
                    bus.publish(alert);
                }
            }
            let f = &tracker.findings;
            stats
                .alerts_allowed
                .store(f.allowed, std::sync::atomic::Ordering::Relaxed);
            let limited = f.rate_limited;
            stats
                .alerts_rate_limited
                .store(limited, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => {
            stats
                .decode_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(error = %e, "undecodable record");
        }
    }
}

fn hook_name(record: &decode::Record) -> &'static str {
    match record {
        decode::Record::Fork(_) => "tp_btf/sched_process_fork",
        decode::Record::Exec(_) => "tp_btf/sched_process_exec",
        decode::Record::ExecFailed(f) if f.flag(sensor_common::exec_failed_flags::EXECVEAT) => {
            "tracepoint/syscalls/sys_exit_execveat"
        }
        decode::Record::ExecFailed(_) => "tracepoint/syscalls/sys_exit_execve",
        decode::Record::Exit(_) => "tp_btf/sched_process_exit",
        decode::Record::Fim(_) => "fim",
        decode::Record::Mem(_) => "memory",
        decode::Record::Audit(_) => "audit",
    }
}

/// Publishes a `lost` event per CPU whose counter grew since the last look.
fn report_lost(
    lost: &PerCpuArray<MapData, u64>,
    last: &mut Vec<u64>,
    tracker: &Tracker,
    bus: &mut Bus,
    stats: &Stats,
) {
    let Ok(values) = lost.get(&0, 0) else {
        return;
    };
    let values: Vec<u64> = values.iter().copied().collect();
    last.resize(values.len(), 0);
    for (cpu, (&now, before)) in values.iter().zip(last.iter_mut()).enumerate() {
        if now > *before {
            let count = now - *before;
            tracing::warn!(cpu, count, "kernel ring buffer full, records lost");
            bus.publish(lost_event(tracker, count, "kernel", Some(cpu as u32)));
            *before = now;
        }
    }
    *stats.kernel_lost.lock().unwrap_or_else(|e| e.into_inner()) = values;
}

/// A `lost` event: `count` records from `source` that became no event.
fn lost_event(tracker: &Tracker, count: u64, source: &str, cpu: Option<u32>) -> Event {
    Event {
        time_unix_nano: crate::process::identity::clock_ns(libc::CLOCK_REALTIME),
        kind: "event".into(),
        action: "lost".into(),
        host_name: tracker.host.name.clone(),
        boot_id: tracker.host.boot_id.clone(),
        lost: Some(LostDetail {
            count,
            source: source.into(),
            cpu,
        }),
        ..Event::default()
    }
}

/// Forwards aya-log records from the programs into tracing (debug level only).
pub fn spawn_ebpf_logger(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    tokio::spawn(async move {
        // SAFETY: the logger owns its ring buffer fd and lives inside the AsyncFd.
        let Ok(mut fd) = (unsafe { AsyncFd::register(logger) }) else {
            return;
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
