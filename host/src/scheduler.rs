//! Supervises each collector: its interval, its deadline, backoff after failures, and the state it reports.
//!
//! A supervisor task per collector sends work to the collector's [`Worker`] and waits at most
//! the deadline. In-process, a call that overruns is left to finish on the worker's thread
//! while the supervisor moves on, and no second call is sent until it returns, so a stuck
//! plugin holds one thread at most. With process isolation a crash or a hang ends only the
//! child, which is killed and started again with backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use vitals_plugin_api::abi::{HostLog, PluginError};
use vitals_plugin_api::InitParams;

use crate::config::Isolation;
use crate::loader::LoadedPlugin;
use crate::store::{PluginRef, State, Store};
use crate::worker::exec::ExecSpec;
use crate::worker::{
    host_log, plugin_log_level, ChildWorker, ExecWorker, Job, Outcome, ThreadWorker, Worker,
};

/// How one collector is run.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorSpec {
    /// The collector's name (section key).
    pub name: String,
    /// Time between collects and the deadline of one call.
    pub timing: Timing,
    /// The plugin's own config table.
    pub config: serde_json::Value,
    /// In the host's process or in a child of its own.
    pub isolation: Isolation,
    /// With process isolation: the child's address-space limit in bytes (none set: a plugin's
    /// child gets [`DEFAULT_MEMORY_LIMIT`](crate::worker::child::DEFAULT_MEMORY_LIMIT)).
    pub memory_limit_bytes: Option<u64>,
}

/// The settings that change without restarting a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between collects.
    pub interval: Duration,
    /// How long one call may take.
    pub deadline: Duration,
}

/// The longest wait between attempts after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait until the next multiple of `interval` on the wall clock, so that collectors with
/// the same interval collect together and their changes reach streams as one update.
pub fn until_aligned(interval: Duration, now: SystemTime) -> Duration {
    let period = interval.as_micros().max(1);
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let wait = period - since_epoch % period;
    Duration::from_micros(u64::try_from(wait).unwrap_or(u64::MAX))
}

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

/// A running collector; [`CollectorHandle::stop`] ends it.
pub struct CollectorHandle {
    stop: watch::Sender<bool>,
    timing: watch::Sender<Timing>,
    task: tokio::task::JoinHandle<()>,
}

impl CollectorHandle {
    /// Changes the interval and deadline from the next collect on.
    pub fn set_timing(&self, timing: Timing) {
        self.timing.send_replace(timing);
    }

    /// Stops the supervisor; a call stuck in an in-process plugin is abandoned on its thread,
    /// a child is killed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts a collector that runs a program: its worker and a supervisor task on the runtime.
pub fn spawn_exec(spec: CollectorSpec, exec: ExecSpec, store: Arc<Store>) -> CollectorHandle {
    let plugin = PluginRef {
        name: exec
            .program
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        version: String::new(),
        api_version: format!("exec/{}", crate::worker::exec::PROTOCOL_VERSION),
        library: exec.command_line(),
    };
    let series = exec.initial_series();
    let worker = ExecWorker::new(&spec.name, exec, &spec.config, spec.timing.interval);
    supervise(spec, plugin, series, store, move |_, _| {
        Some(Worker::Exec(Box::new(worker)))
    })
}

/// Starts a collector: its worker and a supervisor task on the runtime.
pub fn spawn(spec: CollectorSpec, plugin: LoadedPlugin, store: Arc<Store>) -> CollectorHandle {
    let plugin_ref = PluginRef {
        name: plugin.info.name.clone(),
        version: plugin.info.version.clone(),
        api_version: plugin.info.api_version.clone(),
        library: plugin.path.display().to_string(),
    };
    let series = plugin.info.series.clone();
    supervise(
        spec.clone(),
        plugin_ref,
        series,
        store,
        move |name, _| match spec.isolation {
            Isolation::InProcess => Some(Worker::Thread(ThreadWorker::new(
                name,
                plugin.module,
                HostLog { log: host_log },
            ))),
            Isolation::Process => Some(Worker::Child(Box::new(ChildWorker::new(
                name,
                plugin.path.clone(),
                Some(
                    spec.memory_limit_bytes
                        .unwrap_or(crate::worker::child::DEFAULT_MEMORY_LIMIT),
                ),
            )))),
        },
    )
}

/// Runs the supervisor of one collector over the worker `make_worker` gives (none: it
/// recorded why).
fn supervise(
    spec: CollectorSpec,
    plugin: PluginRef,
    series: Vec<vitals_plugin_api::Series>,
    store: Arc<Store>,
    make_worker: impl FnOnce(&str, &Store) -> Option<Worker> + Send + 'static,
) -> CollectorHandle {
    let (stop, mut stopped) = watch::channel(false);
    let (timing_tx, timing) = watch::channel(spec.timing);
    store.set_plugin(&spec.name, plugin.clone(), series);
    let task = tokio::spawn(async move {
        let Some(worker) = make_worker(&spec.name, &store) else {
            return;
        };
        let mut sup = Supervisor {
            spec,
            plugin,
            timing,
            store,
            worker,
            created: false,
            failures: 0,
            last_state: None,
        };
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = sup.timing.changed() => {
                    // A new interval counts from the last collect.
                    next = tokio::time::Instant::now().min(next);
                    continue;
                }
                _ = stopped.changed() => break,
            }
            let started = tokio::time::Instant::now();
            tokio::select! {
                _ = sup.tick() => {}
                _ = stopped.changed() => break,
            }
            let interval = sup.timing.borrow().interval;
            next = if sup.failures == 0 {
                tokio::time::Instant::now() + until_aligned(interval, SystemTime::now())
            } else {
                started + backoff(interval, sup.failures)
            };
            sup.store.set_next_retry(
                &sup.spec.name,
                (sup.failures > 0)
                    .then(|| SystemTime::now() + (next - tokio::time::Instant::now())),
            );
        }
        sup.worker.stop().await;
    });
    CollectorHandle {
        stop,
        timing: timing_tx,
        task,
    }
}

struct Supervisor {
    spec: CollectorSpec,
    plugin: PluginRef,
    timing: watch::Receiver<Timing>,
    store: Arc<Store>,
    worker: Worker,
    created: bool,
    failures: u32,
    last_state: Option<State>,
}

impl Supervisor {
    fn deadline(&self) -> Duration {
        self.timing.borrow().deadline
    }

    async fn call(&mut self, job: Job) -> Outcome {
        let deadline = self.deadline();
        self.worker.call(job, deadline).await
    }

    /// Logs a change of state once; repeated failures only at debug level.
    fn transition(&mut self, state: State, message: &str) {
        if self.last_state != Some(state) {
            match state {
                State::Ok => tracing::info!(collector = %self.spec.name, "collecting"),
                State::Unavailable => {
                    tracing::warn!(collector = %self.spec.name, "unavailable: {message}")
                }
                _ => tracing::error!(collector = %self.spec.name, "{message}"),
            }
            self.last_state = Some(state);
        } else if state == State::Failed {
            tracing::debug!(collector = %self.spec.name, "{message}");
        }
    }

    fn fail(&mut self, message: String, duration: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        self.store
            .record_failure(&self.spec.name, &message, duration, None);
        self.transition(State::Failed, &message);
    }

    fn error(&mut self, e: PluginError, duration: Option<Duration>) {
        match e {
            PluginError::Unavailable(reason) => {
                self.failures = self.failures.saturating_add(1);
                self.store
                    .record_unavailable(&self.spec.name, reason.as_str(), duration, None);
                self.transition(State::Unavailable, reason.as_str());
            }
            PluginError::InvalidConfig(_) => {
                self.created = false;
                self.fail(e.to_string(), duration);
            }
            other => self.fail(other.to_string(), duration),
        }
    }

    /// A worker that died or was killed must be created again.
    fn gone(&mut self, message: String) {
        self.created = false;
        if self.worker.is_child() {
            self.store.record_restart(&self.spec.name);
        }
        self.fail(message, None);
    }

    fn timed_out(&mut self, what: &str) {
        let deadline = self.deadline();
        let mut message = format!(
            "timed out: {what} took longer than its deadline of {}",
            humantime::format_duration(deadline)
        );
        if self.worker.is_child() {
            // The child was killed; a fresh one is started on the next attempt.
            self.created = false;
            self.store.record_restart(&self.spec.name);
            message.push_str("; the child process was killed");
        }
        self.fail(message, Some(deadline));
    }

    async fn tick(&mut self) {
        if self.worker.stuck() {
            let message = format!(
                "timed out: a call has been stuck in the plugin for longer than {}",
                humantime::format_duration(self.deadline())
            );
            return self.fail(message, None);
        }
        if !self.created {
            let init = InitParams {
                log_level: plugin_log_level(),
                host_root: crate::host_root::current().path.clone(),
                ..InitParams::new(&self.spec.name, self.spec.config.clone())
            };
            let init = serde_json::to_string(&init).unwrap_or_default();
            match self.call(Job::Create(init)).await {
                Outcome::Done((Ok(_), _)) => self.created = true,
                Outcome::Done((Err(e), d)) => return self.error(e, Some(d)),
                Outcome::TimedOut => return self.timed_out("creating the collector"),
                Outcome::Gone(why) => return self.gone(why),
            }
        }
        match self.call(Job::Collect).await {
            Outcome::Done((Ok(Some(json)), d)) => match crate::worker::take_section(json) {
                Ok(raw) => {
                    if let Some(series) = self.worker.take_series() {
                        self.store
                            .set_plugin(&self.spec.name, self.plugin.clone(), series);
                    }
                    self.failures = 0;
                    self.store
                        .record_ok(&self.spec.name, raw, d, SystemTime::now());
                    self.transition(State::Ok, "");
                }
                Err(e) => self.fail(e, Some(d)),
            },
            Outcome::Done((Ok(None), d)) => {
                self.fail("the plugin returned no section".to_owned(), Some(d))
            }
            Outcome::Done((Err(e), d)) => self.error(e, Some(d)),
            Outcome::TimedOut => self.timed_out("collect"),
            Outcome::Gone(why) => self.gone(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards tick alignment: the wait ends on a multiple of the interval, never after it.
    #[test]
    fn ticks_align_to_the_interval() {
        let at = |ms: u64| std::time::UNIX_EPOCH + Duration::from_millis(ms);
        let i = Duration::from_secs(5);
        assert_eq!(until_aligned(i, at(10_000)), i);
        assert_eq!(until_aligned(i, at(12_000)), Duration::from_secs(3));
        assert_eq!(
            until_aligned(Duration::from_millis(200), at(1_150)),
            Duration::from_millis(50)
        );
    }

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
