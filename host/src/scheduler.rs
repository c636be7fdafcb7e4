//! Runs each collector on a thread of its own, on its own interval, bounded by a deadline, with backoff.
//!
//! A supervisor task per collector sends work to the collector's thread and waits at most the
//! deadline. A call that overruns is left to finish on that thread while the supervisor moves
//! on; no second call is sent until it returns, so a stuck plugin holds one thread at most.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use abi_stable::std_types::{RResult, RStr};
use serde_json::value::RawValue;
use tokio::sync::{oneshot, watch};
use vitals_plugin_api::abi::{CollectorBox, HostLog, PluginError};
use vitals_plugin_api::InitParams;

use crate::loader::LoadedPlugin;
use crate::store::{PluginRef, Store};

/// How one collector is run.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorSpec {
    /// The collector's name (section key).
    pub name: String,
    /// Time between collects.
    pub interval: Duration,
    /// How long one call may take.
    pub deadline: Duration,
    /// The plugin's own config table.
    pub config: serde_json::Value,
}

/// The longest wait between attempts after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before the next attempt after `failures` failures in a row.
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

enum Job {
    Create(String),
    Collect,
}

type Reply = (Result<Option<String>, PluginError>, Duration);

/// A running collector; dropping it does not stop it, [`CollectorHandle::stop`] does.
pub struct CollectorHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CollectorHandle {
    /// Stops the supervisor; a call stuck in the plugin is abandoned on its thread.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

extern "C" fn host_log(level: u8, plugin: RStr<'_>, message: RStr<'_>) {
    let (plugin, message) = (plugin.as_str(), message.as_str());
    match level {
        1 => tracing::error!(target: "vitals::plugin", plugin, "{message}"),
        2 => tracing::warn!(target: "vitals::plugin", plugin, "{message}"),
        3 => tracing::info!(target: "vitals::plugin", plugin, "{message}"),
        4 => tracing::debug!(target: "vitals::plugin", plugin, "{message}"),
        _ => tracing::trace!(target: "vitals::plugin", plugin, "{message}"),
    }
}

/// The log level number the host passes to plugins, from the active tracing filter.
fn plugin_log_level() -> u8 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 1,
        LevelFilter::WARN => 2,
        LevelFilter::INFO => 3,
        LevelFilter::DEBUG => 4,
        _ => 5,
    }
}

fn spawn_worker(
    name: &str,
    module: vitals_plugin_api::PluginModuleRef,
) -> std::io::Result<mpsc::Sender<(Job, oneshot::Sender<Reply>)>> {
    let (tx, rx) = mpsc::channel::<(Job, oneshot::Sender<Reply>)>();
    std::thread::Builder::new()
        .name(format!("collector-{name}"))
        .spawn(move || {
            let mut collector: Option<CollectorBox> = None;
            while let Ok((job, reply)) = rx.recv() {
                let started = Instant::now();
                let result = match job {
                    Job::Create(init) => {
                        collector = None;
                        match (module.create())(RStr::from_str(&init), HostLog { log: host_log }) {
                            RResult::ROk(c) => {
                                collector = Some(c);
                                Ok(None)
                            }
                            RResult::RErr(e) => Err(e),
                        }
                    }
                    Job::Collect => match collector.as_mut() {
                        Some(c) => match c.collect() {
                            RResult::ROk(json) => Ok(Some(json.into_string())),
                            RResult::RErr(e) => Err(e),
                        },
                        None => Err(PluginError::CollectFailed(
                            "the collector was not created".into(),
                        )),
                    },
                };
                let _ = reply.send((result, started.elapsed()));
            }
        })?;
    Ok(tx)
}

/// Starts a collector: a thread for the plugin and a supervisor task on the runtime.
pub fn spawn(spec: CollectorSpec, plugin: LoadedPlugin, store: Arc<Store>) -> CollectorHandle {
    let (stop, mut stopped) = watch::channel(false);
    store.set_plugin(
        &spec.name,
        PluginRef {
            name: plugin.info.name.clone(),
            version: plugin.info.version.clone(),
            api_version: plugin.info.api_version.clone(),
            library: plugin.path.display().to_string(),
        },
        plugin.info.series.clone(),
    );
    let task = tokio::spawn(async move {
        let name = spec.name.clone();
        let worker = match spawn_worker(&name, plugin.module) {
            Ok(w) => w,
            Err(e) => {
                store.record_failure(
                    &name,
                    &format!("cannot start the collector thread: {e}"),
                    None,
                    None,
                );
                return;
            }
        };
        let mut sup = Supervisor {
            spec,
            store,
            worker,
            pending: None,
            created: false,
            failures: 0,
            last_state: None,
        };
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stopped.changed() => break,
            }
            let started = tokio::time::Instant::now();
            sup.tick().await;
            let wait = backoff(sup.spec.interval, sup.failures);
            next = started + wait;
        }
    });
    CollectorHandle { stop, task }
}

struct Supervisor {
    spec: CollectorSpec,
    store: Arc<Store>,
    worker: mpsc::Sender<(Job, oneshot::Sender<Reply>)>,
    /// The reply of a call that overran its deadline and has not come back yet.
    pending: Option<oneshot::Receiver<Reply>>,
    created: bool,
    failures: u32,
    last_state: Option<String>,
}

enum Outcome {
    Done(Reply),
    TimedOut,
    Gone,
}

impl Supervisor {
    async fn call(&mut self, job: Job) -> Outcome {
        let (tx, rx) = oneshot::channel();
        if self.worker.send((job, tx)).is_err() {
            return Outcome::Gone;
        }
        self.wait(rx).await
    }

    async fn wait(&mut self, mut rx: oneshot::Receiver<Reply>) -> Outcome {
        match tokio::time::timeout(self.spec.deadline, &mut rx).await {
            Ok(Ok(reply)) => Outcome::Done(reply),
            Ok(Err(_)) => Outcome::Gone,
            Err(_) => {
                self.pending = Some(rx);
                Outcome::TimedOut
            }
        }
    }

    fn next_retry(&self) -> Option<SystemTime> {
        (self.failures > 0).then(|| SystemTime::now() + backoff(self.spec.interval, self.failures))
    }

    fn transition(&mut self, state: &str, message: &str) {
        if self.last_state.as_deref() != Some(state) {
            match state {
                "ok" => tracing::info!(collector = %self.spec.name, "collecting"),
                "unavailable" => {
                    tracing::warn!(collector = %self.spec.name, "unavailable: {message}")
                }
                _ => tracing::error!(collector = %self.spec.name, "{message}"),
            }
            self.last_state = Some(state.to_owned());
        } else if state == "failed" {
            tracing::debug!(collector = %self.spec.name, "{message}");
        }
    }

    fn fail(&mut self, message: String, duration: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        let next = self.next_retry();
        self.store
            .record_failure(&self.spec.name, &message, duration, next);
        self.transition("failed", &message);
    }

    fn error(&mut self, e: PluginError, duration: Option<Duration>) {
        match e {
            PluginError::Unavailable(reason) => {
                self.failures = self.failures.saturating_add(1);
                let next = self.next_retry();
                self.store
                    .record_unavailable(&self.spec.name, reason.as_str(), duration, next);
                self.transition("unavailable", reason.as_str());
            }
            PluginError::InvalidConfig(_) => {
                self.created = false;
                self.fail(e.to_string(), duration);
            }
            other => self.fail(other.to_string(), duration),
        }
    }

    async fn tick(&mut self) {
        if let Some(mut rx) = self.pending.take() {
            // A late reply (if any) is out of date; a fresh collect follows it.
            if let Err(oneshot::error::TryRecvError::Empty) = rx.try_recv() {
                self.pending = Some(rx);
                let message = format!(
                    "timed out: a call has been stuck in the plugin for longer than {}",
                    humantime::format_duration(self.spec.deadline)
                );
                self.fail(message, None);
                return;
            }
        }
        if !self.created {
            let init = InitParams {
                log_level: plugin_log_level(),
                ..InitParams::new(&self.spec.name, self.spec.config.clone())
            };
            let init = serde_json::to_string(&init).unwrap_or_default();
            match self.call(Job::Create(init)).await {
                Outcome::Done((Ok(_), _)) => self.created = true,
                Outcome::Done((Err(e), d)) => return self.error(e, Some(d)),
                Outcome::TimedOut => {
                    let message = format!(
                        "timed out: creating the collector took longer than {}",
                        humantime::format_duration(self.spec.deadline)
                    );
                    return self.fail(message, Some(self.spec.deadline));
                }
                Outcome::Gone => return self.fail("the collector thread ended".to_owned(), None),
            }
        }
        match self.call(Job::Collect).await {
            Outcome::Done((Ok(Some(json)), d)) => match RawValue::from_string(json) {
                Ok(raw) => {
                    self.failures = 0;
                    self.store
                        .record_ok(&self.spec.name, raw, d, SystemTime::now());
                    self.transition("ok", "");
                }
                Err(e) => self.fail(format!("the plugin returned invalid JSON: {e}"), Some(d)),
            },
            Outcome::Done((Ok(None), d)) => {
                self.fail("the plugin returned no section".to_owned(), Some(d))
            }
            Outcome::Done((Err(e), d)) => self.error(e, Some(d)),
            Outcome::TimedOut => {
                let message = format!(
                    "timed out: collect took longer than its deadline of {}",
                    humantime::format_duration(self.spec.deadline)
                );
                self.fail(message, Some(self.spec.deadline));
            }
            Outcome::Gone => self.fail("the collector thread ended".to_owned(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the backoff: doubling from the interval, capped.
    #[test]
    fn backoff_doubles_and_caps() {
        let i = Duration::from_secs(5);
        assert_eq!(backoff(i, 0), i);
        assert_eq!(backoff(i, 1), i);
        assert_eq!(backoff(i, 2), Duration::from_secs(10));
        assert_eq!(backoff(i, 3), Duration::from_secs(20));
        assert_eq!(backoff(i, 10), MAX_BACKOFF);
        assert_eq!(
            backoff(Duration::from_secs(120), 5),
            Duration::from_secs(120)
        );
    }
}
