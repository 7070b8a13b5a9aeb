//! Wires the stages together and runs them until Ctrl-C or SIGTERM.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{
    bus::Bus,
    config::{Config, ListenAddr},
    fim, loader,
    process::{identity::Host, seed, table::ProcessTable, Tracker},
    reader, server, sinks,
    stats::Stats,
};

/// Runs the sensor with `config` until a stop signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("failed to create state_dir {}", config.state_dir.display()))?;

    let host = Host::detect().context("failed to read host facts from /proc")?;
    let mut table = ProcessTable::new(
        config.process_table.max_entries,
        Duration::from_secs(config.process_table.exited_ttl_secs),
    );
    // Load first, seed second: a process that starts in between is then seen by the hooks
    // rather than missed by both.
    let loaded = loader::load(&config)?;
    let seeded = seed::seed(&mut table, &host, Path::new("/proc"));
    tracing::debug!(processes = seeded, "process table seeded from /proc");

    let stats = Arc::new(Stats::default());
    let _ = stats.hooks.set(crate::stats::Hooks {
        attached: loaded.attached.clone(),
        refused: loaded.refused.clone(),
        chosen: loaded.chosen.clone(),
        program_types: loaded.program_types.clone(),
        program_types_refused: loaded.program_types_refused.clone(),
    });
    let (mut bus, subscribe) = Bus::new(config.subscriber_queue, stats.clone());

    let json_sink = match &config.json_out {
        Some(target) => {
            let out = sinks::json::open(target)
                .with_context(|| format!("failed to open JSON output {target}"))?;
            let rx = bus.add_sink(config.sink_queue);
            let (stats, host_name) = (stats.clone(), host.name.clone());
            Some(tokio::task::spawn_blocking(move || {
                sinks::json::run(rx, out, stats, host_name)
            }))
        }
        None => None,
    };
    let audit_sink = match config
        .audit()
        .and_then(|a| a.log.clone().map(|path| (a, path)))
    {
        Some((audit, path)) => {
            let target = sinks::audit_log::Target {
                path: path.clone(),
                max_bytes: audit.log_max_bytes,
                keep: audit.log_keep,
            };
            let log = sinks::audit_log::Log::open(target)
                .with_context(|| format!("failed to open audit log {}", path.display()))?;
            let rx = bus.add_sink(config.sink_queue);
            let stats = stats.clone();
            Some(tokio::task::spawn_blocking(move || {
                sinks::audit_log::run(rx, log, stats)
            }))
        }
        None => None,
    };

    let loader::Loaded {
        ebpf,
        events,
        lost,
        backlog,
        fim,
        audit,
        ..
    } = loaded;
    let fim = match fim {
        Some(kernel) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let handle = fim::start(
                &config.fim,
                &config.state_dir,
                config.rebuild_baseline,
                kernel,
                host.clone(),
                tx,
            )?;
            let _ = stats.fim.set(handle.stats.clone());
            Some(reader::FimLink { handle, events: rx })
        }
        None => None,
    };

    let listen = ListenAddr::parse(&config.listen).map_err(anyhow::Error::msg)?;
    let service = server::Service {
        bus: subscribe.clone(),
        stats: stats.clone(),
        host_name: host.name.clone(),
        fim: fim.as_ref().map(|f| f.handle.clone()),
    };
    let mut server = tokio::spawn(server::serve(service, listen, shutdown.clone()));

    let findings = crate::memory::Findings::new(&config.memory);
    let mut tracker = Tracker::new(host, table, findings);
    tracker.audit = audit;
    let ring = reader::Ring {
        events,
        lost,
        backlog,
    };
    let reader = reader::run(ring, tracker, bus, stats, fim, shutdown.clone());
    let result = tokio::select! {
        r = reader => r.context("ring buffer reader failed"),
        r = &mut server => {
            // The server only ends early on error; stop the rest too.
            shutdown.cancel();
            r.context("gRPC server task failed")?.context("gRPC server failed")
        }
    };
    tracing::info!("shutting down");
    shutdown.cancel();
    drop(ebpf);
    drop(subscribe);
    if !server.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    for (name, sink) in [("JSON output", json_sink), ("audit log", audit_sink)] {
        let Some(sink) = sink else { continue };
        match sink.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, sink = name, "output failed"),
            Err(e) => tracing::warn!(error = %e, sink = name, "output task failed"),
        }
    }
    result
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        shutdown.cancel();
    });
}
