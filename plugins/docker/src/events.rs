//! The daemon's container events, watched on the collector's runtime so the container list is
//! read again only after something changed it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

/// The container events that change what the list says (the rest, `exec_*` from health
/// checks among them, do not).
pub const LIST_EVENTS: [&str; 14] = [
    "create",
    "start",
    "restart",
    "stop",
    "die",
    "kill",
    "oom",
    "destroy",
    "pause",
    "unpause",
    "rename",
    "update",
    "health_status",
    "remove",
];

/// A task on the collector's runtime that reads the daemon's container events and raises a
/// flag on each; it runs while a collect drives the runtime, and the socket keeps what the
/// daemon sends in between.
pub(crate) struct Events {
    changed: Arc<AtomicBool>,
    alive: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Events {
    /// Starts watching `docker`'s container events (the flag starts raised).
    pub(crate) fn watch(docker: &Docker) -> Self {
        let changed = Arc::new(AtomicBool::new(true));
        let alive = Arc::new(AtomicBool::new(true));
        let filters = HashMap::from([("type", vec!["container"]), ("event", LIST_EVENTS.to_vec())]);
        let mut stream = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
        let task = tokio::spawn({
            let (changed, alive) = (changed.clone(), alive.clone());
            async move {
                while let Some(event) = stream.next().await {
                    changed.store(true, Ordering::Relaxed);
                    if let Err(e) = event {
                        log::debug!("the daemon's event stream failed: {e}");
                        break;
                    }
                }
                alive.store(false, Ordering::Relaxed);
            }
        });
        Self {
            changed,
            alive,
            task,
        }
    }

    /// True when the list must be read again: an event came, or the stream is gone.
    pub(crate) fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed) || !self.alive.load(Ordering::Relaxed)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}
