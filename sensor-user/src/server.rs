//! gRPC server: the `sensor.v1.Sensor` service over a unix socket (default) or TCP.
//!
//! Each `GetEvents` call is one bus subscriber with its own bounded queue and filter.

use std::{
    pin::Pin,
    sync::{atomic::Ordering::Relaxed, Arc},
};

use sensor_proto::v1::{
    sensor_server::{Sensor, SensorServer},
    Event, FimScanReply, FimScanRequest, GetEventsRequest, GetStatusRequest, Status,
};
use tokio_stream::{
    wrappers::{errors::BroadcastStreamRecvError, BroadcastStream},
    Stream, StreamExt,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response};

use crate::{
    bus::{self, Subscribe},
    config::ListenAddr,
    stats::Stats,
};

/// The service state.
pub struct Service {
    pub bus: Subscribe,
    pub stats: Arc<Stats>,
    pub host_name: String,
    /// The FIM thread, when FIM is on.
    pub fim: Option<crate::fim::Handle>,
}

/// What a `GetEvents` caller asked for.
struct Filter {
    actions: Vec<String>,
    pids: Vec<u32>,
    executable_prefix: Vec<u8>,
}

impl Filter {
    fn matches(&self, event: &Event) -> bool {
        if !self.actions.is_empty() && !self.actions.contains(&event.action) {
            return false;
        }
        if self.pids.is_empty() && self.executable_prefix.is_empty() {
            return true;
        }
        // Loss notices concern every subscriber whatever it filters on.
        let Some(p) = &event.process else {
            return event.action == "lost";
        };
        (self.pids.is_empty() || self.pids.contains(&p.pid))
            && p.executable.starts_with(&self.executable_prefix)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Sensor for Service {
    type GetEventsStream = EventStream;

    #[expect(
        clippy::result_large_err,
        reason = "the item type is fixed by tonic's stream API"
    )]
    async fn get_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<EventStream>, tonic::Status> {
        let r = request.into_inner();
        let filter = Filter {
            actions: r.actions,
            pids: r.pids,
            executable_prefix: r.executable_prefix,
        };
        let stats = self.stats.clone();
        let host = self.host_name.clone();
        let stream =
            BroadcastStream::new(self.bus.subscribe()).filter_map(move |item| match item {
                Ok(event) => filter.matches(&event).then(|| Ok(Event::clone(&event))),
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    stats.dropped(n);
                    tracing::debug!(missed = n, "gRPC subscriber fell behind");
                    Some(Ok(bus::subscriber_lost(n, &host)))
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<Status>, tonic::Status> {
        Ok(Response::new(status(&self.stats)))
    }

    async fn fim_scan(
        &self,
        _request: Request<FimScanRequest>,
    ) -> Result<Response<FimScanReply>, tonic::Status> {
        let Some(fim) = &self.fim else {
            return Err(tonic::Status::failed_precondition(
                "file-integrity monitoring is off (no `fim.paths`)",
            ));
        };
        match fim.scan().await {
            Some(reply) => Ok(Response::new(reply)),
            None => Err(tonic::Status::unavailable("the FIM thread has stopped")),
        }
    }
}

/// A snapshot of the counters.
pub fn status(stats: &Stats) -> Status {
    let kernel_lost = stats
        .kernel_lost
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let records = stats
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let hooks = stats.hooks.get().cloned().unwrap_or_default();
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: kernel_release(),
        hooks_attached: hooks.attached,
        hooks_refused: hooks.refused,
        hooks_chosen: hooks.chosen.into_iter().collect(),
        program_types: hooks.program_types,
        program_types_refused: hooks.program_types_refused,
        events_total: stats.events_total.load(Relaxed),
        kernel_lost_total: kernel_lost.iter().sum(),
        kernel_lost_per_cpu: kernel_lost,
        records_per_hook: records.into_iter().collect(),
        decode_errors: stats.decode_errors.load(Relaxed),
        subscriber_dropped_total: stats.subscriber_dropped.load(Relaxed),
        audit_log_write_errors: stats.audit_log_write_errors.load(Relaxed),
        process_table_entries: stats.table_entries.load(Relaxed),
        uptime_seconds: stats.started.elapsed().as_secs(),
        ready: stats.ready.load(Relaxed),
        fim: stats.fim.get().map(|f| f.status()),
        alerts_total: stats.alerts_total.load(Relaxed),
        alerts_allowed: stats.alerts_allowed.load(Relaxed),
        alerts_rate_limited: stats.alerts_rate_limited.load(Relaxed),
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().into())
        .unwrap_or_default()
}

/// Failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("failed to prepare socket directory {0}")]
    SocketDir(String, #[source] std::io::Error),
    #[error("failed to listen on {0}")]
    Bind(String, #[source] std::io::Error),
    #[error("gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `service` on `addr` until `shutdown`.
pub async fn serve(
    service: Service,
    addr: ListenAddr,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let stats = service.stats.clone();
    let router = tonic::transport::Server::builder().add_service(SensorServer::new(service));
    match addr {
        ListenAddr::Unix(path) => {
            let shown = path.display().to_string();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ServeError::SocketDir(shown.clone(), e))?;
            }
            // A socket left by an earlier run would make bind fail.
            let _ = std::fs::remove_file(&path);
            let listener = bind_private(&path).map_err(|e| ServeError::Bind(shown.clone(), e))?;
            tracing::info!(socket = %shown, "listening");
            stats.ready.store(true, Relaxed);
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                .await?;
            let _ = std::fs::remove_file(&path);
        }
        ListenAddr::Tcp(sock) => {
            let listener = tokio::net::TcpListener::bind(sock)
                .await
                .map_err(|e| ServeError::Bind(sock.to_string(), e))?;
            tracing::info!(address = %sock, "listening");
            stats.ready.store(true, Relaxed);
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                .await?;
        }
    }
    Ok(())
}

/// Binds a unix socket that only its owner can use: created under a 0177 umask so it is
/// never reachable by others, not even between bind and chmod.
fn bind_private(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    bound
}
