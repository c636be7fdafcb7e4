//! The daemon's container events, watched on the collector's runtime so the container list is
//! read again only after something changed it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use vitals_plugin_api::sections::MAX_CONTAINER_EVENTS;
use vitals_plugin_api::SectionEvent;

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
    recent: Arc<Mutex<VecDeque<SectionEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A lifecycle event as the section reports it, or `None` for events that are not (create,
/// destroy, pause, rename, healthy, …).
pub(crate) fn lifecycle(e: &EventMessage) -> Option<SectionEvent> {
    let action = e.action.as_deref()?;
    let attrs = e.actor.as_ref().and_then(|a| a.attributes.as_ref());
    let attr = |k: &str| attrs.and_then(|a| a.get(k)).map(String::as_str);
    let id = e.actor.as_ref().and_then(|a| a.id.as_deref()).unwrap_or("");
    let name = attr("name").unwrap_or_else(|| id.get(..12).unwrap_or(id));
    let (kind, text) = match action {
        "start" => ("started", format!("container {name} started")),
        "stop" => ("stopped", format!("container {name} stopped")),
        "die" => match attr("exitCode") {
            Some(code) => (
                "died",
                format!("container {name} died with exit code {code}"),
            ),
            None => ("died", format!("container {name} died")),
        },
        "oom" => (
            "oom_killed",
            format!("container {name} was killed: out of memory"),
        ),
        "restart" => ("restarted", format!("container {name} restarted")),
        "health_status: unhealthy" => ("unhealthy", format!("container {name} is unhealthy")),
        _ => return None,
    };
    let time_unix_ms = e
        .time_nano
        .map(|n| n / 1_000_000)
        .or(e.time.map(|s| s.saturating_mul(1000)))
        .unwrap_or(0);
    Some(SectionEvent {
        time_unix_ms,
        kind: kind.to_owned(),
        text,
    })
}

impl Events {
    /// Starts watching `docker`'s container events (the flag starts raised).
    pub(crate) fn watch(docker: &Docker) -> Self {
        let changed = Arc::new(AtomicBool::new(true));
        let alive = Arc::new(AtomicBool::new(true));
        let filters = HashMap::from([("type", vec!["container"]), ("event", LIST_EVENTS.to_vec())]);
        let mut stream = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
        let recent = Arc::new(Mutex::new(VecDeque::new()));
        let task = tokio::spawn({
            let (changed, alive, recent) = (changed.clone(), alive.clone(), recent.clone());
            async move {
                while let Some(event) = stream.next().await {
                    changed.store(true, Ordering::Relaxed);
                    match event {
                        Ok(e) => {
                            if let Some(ev) = lifecycle(&e) {
                                let mut r = recent.lock().unwrap_or_else(|p| p.into_inner());
                                if r.len() >= MAX_CONTAINER_EVENTS {
                                    r.pop_front();
                                }
                                r.push_back(ev);
                            }
                        }
                        Err(e) => {
                            log::debug!("the daemon's event stream failed: {e}");
                            break;
                        }
                    }
                }
                alive.store(false, Ordering::Relaxed);
            }
        });
        Self {
            changed,
            alive,
            recent,
            task,
        }
    }

    /// The recent lifecycle events, oldest first (at most [`MAX_CONTAINER_EVENTS`]).
    pub(crate) fn recent(&self) -> Vec<SectionEvent> {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().cloned().collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.to_owned()),
            actor: Some(EventActor {
                id: Some("0123456789abcdef".to_owned()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            }),
            time: Some(1_700_000_000),
            time_nano: Some(1_700_000_000_123_456_789),
            ..Default::default()
        }
    }

    /// Guards the lifecycle events the section reports: died with its exit code, OOM, restarts,
    /// unhealthy; the rest (create, healthy) are not events.
    #[test]
    fn lifecycle_events_name_the_container_and_exit_code() {
        let died = lifecycle(&event("die", &[("name", "web"), ("exitCode", "137")])).expect("die");
        assert_eq!(died.kind, "died");
        assert_eq!(died.text, "container web died with exit code 137");
        assert_eq!(died.time_unix_ms, 1_700_000_000_123);
        assert_eq!(
            lifecycle(&event("oom", &[("name", "web")]))
                .expect("oom")
                .kind,
            "oom_killed"
        );
        assert_eq!(
            lifecycle(&event("restart", &[])).expect("restart").text,
            "container 0123456789ab restarted"
        );
        assert_eq!(
            lifecycle(&event("health_status: unhealthy", &[("name", "db")]))
                .expect("unhealthy")
                .kind,
            "unhealthy"
        );
        assert!(lifecycle(&event("create", &[("name", "web")])).is_none());
        assert!(lifecycle(&event("health_status: healthy", &[("name", "db")])).is_none());
    }
}
