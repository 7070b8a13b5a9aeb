//! JSON lines sink: one ECS-shaped object per line, to stdout or appended to a file.

use std::sync::Arc;

use sensor_proto::v1::Event;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::broadcast::{self, error::RecvError},
};

use crate::{bus, render, stats::Stats};

/// Opens `target` (`-` for stdout) for appending JSON lines.
pub async fn open(target: &str) -> std::io::Result<Box<dyn AsyncWrite + Unpin + Send>> {
    if target == "-" {
        return Ok(Box::new(tokio::io::stdout()));
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .await?;
    Ok(Box::new(file))
}

/// Writes every event from `rx` until the bus closes; a write error ends the sink.
pub async fn run(
    mut rx: broadcast::Receiver<Arc<Event>>,
    mut out: Box<dyn AsyncWrite + Unpin + Send>,
    stats: Arc<Stats>,
    host_name: String,
) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(4096);
    loop {
        let event = match rx.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(n)) => {
                stats.dropped(n);
                tracing::warn!(missed = n, "JSON sink fell behind");
                Arc::new(bus::subscriber_lost(n, &host_name))
            }
            Err(RecvError::Closed) => break,
        };
        line.clear();
        serde_json::to_writer(&mut line, &render::to_json(&event))?;
        line.push(b'\n');
        out.write_all(&line).await?;
        if rx.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await
}
