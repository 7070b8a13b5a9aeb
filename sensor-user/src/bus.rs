//! Event bus: numbers events and fans them out to every subscriber.
//!
//! Each subscriber reads from its own position in a bounded broadcast ring. A subscriber that
//! falls a full ring behind loses its oldest events and is told how many; the publisher never
//! waits, so neither the kernel path nor other subscribers slow down.

use std::sync::{atomic::Ordering::Relaxed, Arc};

use sensor_proto::v1::{Event, LostDetail};
use tokio::sync::broadcast;

use crate::stats::Stats;

/// The publishing side; owned by the reader.
pub struct Bus {
    tx: broadcast::Sender<Arc<Event>>,
    /// Output sinks (JSON lines), each on a ring of its own so that a small stream queue
    /// cannot make a file output lose events.
    sinks: Vec<broadcast::Sender<Arc<Event>>>,
    next_sequence: u64,
    stats: Arc<Stats>,
}

/// A handle to subscribe with, for sinks and the gRPC server.
///
/// It holds no sender, so once the [`Bus`] is dropped every subscription ends: streams close
/// and sinks flush on shutdown instead of waiting forever.
#[derive(Clone)]
pub struct Subscribe(Arc<std::sync::Mutex<broadcast::Receiver<Arc<Event>>>>);

impl Subscribe {
    /// A new subscription that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resubscribe()
    }
}

impl Bus {
    /// A bus whose subscribers each buffer up to `queue` events.
    pub fn new(queue: usize, stats: Arc<Stats>) -> (Self, Subscribe) {
        let (tx, rx) = broadcast::channel(queue);
        let handle = Subscribe(Arc::new(std::sync::Mutex::new(rx)));
        (
            Self {
                tx,
                sinks: Vec::new(),
                next_sequence: 1,
                stats,
            },
            handle,
        )
    }

    /// A receiver for an output sink, buffering up to `queue` events of its own.
    pub fn add_sink(&mut self, queue: usize) -> broadcast::Receiver<Arc<Event>> {
        let (tx, rx) = broadcast::channel(queue);
        self.sinks.push(tx);
        rx
    }

    /// Gives `event` the next sequence number and sends it to every sink and subscriber.
    pub fn publish(&mut self, mut event: Event) {
        event.sequence = self.next_sequence;
        self.next_sequence += 1;
        self.stats.events_total.fetch_add(1, Relaxed);
        let event = Arc::new(event);
        for sink in &self.sinks {
            // An error only means the sink has ended.
            let _ = sink.send(event.clone());
        }
        // An error only means nobody is subscribed right now.
        let _ = self.tx.send(event);
    }
}

/// The event a subscriber gets in place of `count` events it was too slow to take.
pub fn subscriber_lost(count: u64, host_name: &str) -> Event {
    Event {
        time_unix_nano: crate::process::identity::clock_ns(libc::CLOCK_REALTIME),
        kind: "event".into(),
        action: "lost".into(),
        host_name: host_name.into(),
        lost: Some(LostDetail {
            count,
            source: "subscriber".into(),
            cpu: None,
        }),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_subscriber_is_told_what_it_missed_and_fast_one_is_not() {
        let (mut bus, handle) = Bus::new(4, Arc::new(Stats::default()));
        let mut fast = handle.subscribe();
        let mut slow = handle.subscribe();

        let mut seen = Vec::new();
        for i in 0..10 {
            bus.publish(Event {
                action: format!("e{i}"),
                ..Event::default()
            });
            seen.push(fast.recv().await.unwrap().sequence);
        }

        assert_eq!(
            seen,
            (1..=10).collect::<Vec<_>>(),
            "fast subscriber got everything"
        );
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 6),
            other => panic!("slow subscriber was not told of its loss: {other:?}"),
        }
        assert_eq!(
            slow.recv().await.unwrap().sequence,
            7,
            "then resumes at the oldest kept"
        );
    }
}
