//! Server-Sent Events: the full snapshot, one collector's view or the alerts, latest state only, bounded.
//!
//! Each stream waits on a change counter (the store's, or the alerts' for the alerts stream) (a `watch` channel, which holds only the
//! latest value), so a slow client skips to the newest state instead of queueing; a client
//! that stops reading holds one pending event at most.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::watch;
use tokio::time::Instant;
use warp::sse::Event;

use crate::alerts::Alerts;
use crate::store::Store;

/// The reconnect delay suggested to clients (`retry:`).
pub const RETRY: Duration = Duration::from_secs(5);
/// The shortest gap between two events of one stream (changes in between are merged).
pub const MIN_GAP: Duration = Duration::from_millis(200);
/// How long a stream waits after a change for the rest of its burst (collectors on the same
/// interval collect together), so one tick becomes one event.
pub const SETTLE: Duration = Duration::from_millis(25);

/// Holds one of the limited stream slots; frees it when dropped.
pub struct StreamSlot {
    open: Arc<AtomicUsize>,
}

impl StreamSlot {
    /// Takes a slot when fewer than `max` streams are open.
    pub fn acquire(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Self { open: open.clone() })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a stream carries.
#[derive(Clone)]
pub enum Topic {
    /// The full snapshot, as `event: snapshot`.
    Snapshot,
    /// One collector's view (section, status, history), as `event: <name>`.
    Collector(String),
    /// The alerts document, as `event: alerts`, on every change of the alerts or rules.
    Alerts(Arc<Alerts>),
}

impl Topic {
    /// The change number and JSON of the current state, `None` when the collector is unknown.
    fn current(&self, store: &Store) -> Option<(u64, String)> {
        match self {
            Topic::Snapshot => Some((store.version(), store.snapshot_text())),
            Topic::Collector(name) => {
                let version = store.collector_version(name)?;
                let view = store.collector_view(name)?;
                Some((version, view.to_string()))
            }
            Topic::Alerts(alerts) => {
                let version = alerts.version();
                Some((version, serde_json::to_string(&alerts.view()).ok()?))
            }
        }
    }

    fn event_name(&self) -> &str {
        match self {
            Topic::Snapshot => "snapshot",
            Topic::Collector(name) => name,
            Topic::Alerts(_) => "alerts",
        }
    }

    /// The change counter this topic follows.
    fn subscribe(&self, store: &Store) -> watch::Receiver<u64> {
        match self {
            Topic::Alerts(alerts) => alerts.subscribe(),
            Topic::Snapshot | Topic::Collector(_) => store.subscribe(),
        }
    }
}

struct State {
    store: Arc<Store>,
    topic: Topic,
    updates: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    last_sent: Option<u64>,
    last_at: Option<Instant>,
    greeted: bool,
    _slot: StreamSlot,
}

/// The event stream for `topic`, resuming after `last_event_id` when the client sends one.
pub fn stream(
    store: Arc<Store>,
    topic: Topic,
    shutdown: watch::Receiver<bool>,
    last_event_id: Option<u64>,
    slot: StreamSlot,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let state = State {
        updates: topic.subscribe(&store),
        store,
        topic,
        shutdown,
        last_sent: last_event_id,
        last_at: None,
        greeted: false,
        _slot: slot,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if *st.shutdown.borrow() {
                return None;
            }
            if st.greeted {
                tokio::select! {
                    changed = st.updates.changed() => if changed.is_err() { return None },
                    _ = st.shutdown.changed() => return None,
                }
                let settled = Instant::now() + SETTLE;
                let due = st.last_at.map_or(settled, |at| (at + MIN_GAP).max(settled));
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = st.shutdown.changed() => return None,
                }
            }
            st.updates.borrow_and_update();
            let first = !st.greeted;
            st.greeted = true;
            let mut event = Event::default();
            if first {
                event = event.retry(RETRY);
            }
            match st.topic.current(&st.store) {
                Some((id, data)) if st.last_sent != Some(id) => {
                    st.last_sent = Some(id);
                    st.last_at = Some(Instant::now());
                    let event = event
                        .event(st.topic.event_name())
                        .id(id.to_string())
                        .data(data);
                    return Some((Ok(event), st));
                }
                // Nothing new: the first event still carries the retry hint.
                _ if first => return Some((Ok(event.comment("up to date")), st)),
                _ => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the stream cap: slots are refused past the limit and freed on drop.
    #[test]
    fn slots_are_capped_and_freed() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = StreamSlot::acquire(&open, 2).expect("first");
        let _b = StreamSlot::acquire(&open, 2).expect("second");
        assert!(StreamSlot::acquire(&open, 2).is_none());
        drop(a);
        assert!(StreamSlot::acquire(&open, 2).is_some());
    }
}
