//! JSON lines sink: one ECS-shaped object per line, to stdout or appended to a file.
//!
//! It runs on a thread of its own with plain buffered writes: lines are collected in a buffer
//! and written out when the sink has caught up, so a burst costs a few large writes rather
//! than one system call (and, under tokio's file API, one thread hand-off) per event.

use std::{
    io::{BufWriter, Write},
    sync::Arc,
};

use sensor_proto::v1::Event;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{bus, render, stats::Stats};

/// Opens `target` (`-` for stdout) for appending JSON lines.
pub fn open(target: &str) -> std::io::Result<Box<dyn Write + Send>> {
    if target == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)?;
    Ok(Box::new(file))
}

/// Writes every event from `rx` until the bus closes; a write error ends the sink. Blocks:
/// run it on a thread of its own.
pub fn run(
    mut rx: broadcast::Receiver<Arc<Event>>,
    out: Box<dyn Write + Send>,
    stats: Arc<Stats>,
    host_name: String,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(256 * 1024, out);
    loop {
        let event = match rx.blocking_recv() {
            Ok(event) => event,
            Err(RecvError::Lagged(n)) => {
                stats.dropped(n);
                tracing::warn!(missed = n, "JSON sink fell behind");
                Arc::new(bus::subscriber_lost(n, &host_name))
            }
            Err(RecvError::Closed) => break,
        };
        serde_json::to_writer(&mut out, &render::to_json(&event))?;
        out.write_all(b"\n")?;
        if rx.is_empty() {
            out.flush()?;
        }
    }
    out.flush()
}
