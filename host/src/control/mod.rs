//! Runtime control of the collectors: start from the config, apply a changed config to the
//! collectors it touches alone ([`plan::plan`] then apply), reload, and change one collector.

pub mod plan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::{self, CollectorConfig, Config, MAX_INTERVAL, MIN_INTERVAL};
use crate::scheduler::{self, CollectorHandle, CollectorSpec, Timing};
use crate::store::{CollectorStatus, Store};
use plan::{Change, Fingerprint};

struct Running {
    handle: Option<CollectorHandle>,
    fingerprint: Fingerprint,
}

struct Inner {
    config: Config,
    running: BTreeMap<String, Running>,
    /// False until the first config is applied.
    started: bool,
}

/// What a config change did, collector by collector.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ChangeReport {
    /// Collectors started (new, enabled, or with a changed plugin, library or table).
    pub started: Vec<String>,
    /// Collectors stopped (disabled or removed).
    pub stopped: Vec<String>,
    /// Collectors whose interval or deadline changed in place.
    pub retimed: Vec<String>,
    /// Settings that take effect only after a restart.
    pub needs_restart: Vec<String>,
}

impl ChangeReport {
    /// One line: what started, stopped, was retimed or needs a restart; "no change" when nothing.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            ("started", &self.started),
            ("stopped", &self.stopped),
            ("retimed", &self.retimed),
            ("needs a restart", &self.needs_restart),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(what, v)| format!("{what} {}", v.join(", ")))
        .collect();
        if parts.is_empty() {
            "no change".to_owned()
        } else {
            parts.join("; ")
        }
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
            && self.stopped.is_empty()
            && self.retimed.is_empty()
            && self.needs_restart.is_empty()
    }
}

/// Owns the running collectors and the config in force.
pub struct Control {
    store: Arc<Store>,
    exe_dir: Option<PathBuf>,
    config_path: Option<PathBuf>,
    inner: Mutex<Inner>,
    /// The alerting part of the config in force, which the alert evaluator follows.
    alerts: tokio::sync::watch::Sender<crate::alerts::AlertsConfig>,
}

/// A collector as the collectors API shows it.
#[derive(Debug, Serialize)]
pub struct CollectorView {
    /// The collector's name.
    pub name: String,
    /// Whether it runs.
    pub enabled: bool,
    /// Time between collects, e.g. `5s`.
    pub interval: String,
    /// Seconds between collects.
    pub interval_seconds: f64,
    /// The deadline of one call, e.g. `2s`.
    pub deadline: String,
    /// `in-process` or `process`.
    pub isolation: config::Isolation,
    /// The library in use, or why none could be found.
    pub library: String,
    /// The live status.
    pub status: Option<CollectorStatus>,
}

/// Why a change to one collector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// No collector of that name is configured.
    #[error("no collector named `{0}` is configured")]
    UnknownCollector(String),
    /// A value is outside its range (the message says which and the range).
    #[error("{0}")]
    OutOfRange(String),
}

/// A change to one collector through the API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorPatch {
    /// Turn the collector on or off.
    pub enabled: Option<bool>,
    /// A new interval in seconds (0.1 to 86400).
    pub interval_seconds: Option<f64>,
    /// A new deadline in seconds (0.1 to 86400).
    pub deadline_seconds: Option<f64>,
}

impl Control {
    /// Control with no collectors yet; [`Control::apply`] the config to start them.
    pub fn new(
        store: Arc<Store>,
        config: &Config,
        config_path: Option<PathBuf>,
        exe_dir: Option<PathBuf>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            exe_dir,
            config_path,
            inner: Mutex::new(Inner {
                config: Config {
                    collectors: BTreeMap::new(),
                    ..config.clone()
                },
                running: BTreeMap::new(),
                started: false,
            }),
            alerts: tokio::sync::watch::channel(config.alerts.clone()).0,
        })
    }

    /// The alerting part of the config in force; it changes when a reload changes it.
    pub fn alerts_config(&self) -> tokio::sync::watch::Receiver<crate::alerts::AlertsConfig> {
        self.alerts.subscribe()
    }

    fn fingerprint(&self, config: &Config, name: &str, c: &CollectorConfig) -> Fingerprint {
        if c.command.is_some() {
            let exec = crate::worker::exec::ExecSpec::from_config(config, c);
            return Fingerprint {
                library: exec
                    .as_ref()
                    .map(|e| e.program.clone())
                    .map_err(Clone::clone),
                config: crate::table_to_json(&c.config),
                isolation: config::Isolation::Process,
                memory_limit: c.memory_limit.map(|m| m.0),
                exec: exec.ok().map(Box::new),
            };
        }
        Fingerprint {
            library: config.resolve_library(name, c, self.exe_dir.as_deref()),
            config: crate::table_to_json(&c.config),
            isolation: c.isolation,
            memory_limit: c.memory_limit.map(|m| m.0),
            exec: None,
        }
    }

    /// Starts a collector that runs a program, or records why its program cannot run.
    fn launch_exec(
        &self,
        name: &str,
        c: &CollectorConfig,
        fp: &Fingerprint,
    ) -> Option<CollectorHandle> {
        let timing = plan::timing(c);
        self.store
            .register(name, timing.interval, timing.deadline, true);
        self.store.set_isolation(name, config::Isolation::Process);
        let Some(exec) = fp.exec.as_deref().cloned() else {
            let message = format!(
                "cannot run the program: {}",
                fp.library.clone().err().unwrap_or_default()
            );
            tracing::error!(collector = %name, "{message}");
            self.store.record_failure(name, &message, None, None);
            return None;
        };
        tracing::info!(
            collector = %name,
            command = %exec.command_line(),
            mode = ?exec.mode,
            "program collector started"
        );
        let spec = CollectorSpec {
            name: name.to_owned(),
            timing,
            config: fp.config.clone(),
            isolation: config::Isolation::Process,
            memory_limit_bytes: fp.memory_limit,
        };
        Some(scheduler::spawn_exec(spec, exec, self.store.clone()))
    }

    fn launch(&self, name: &str, c: &CollectorConfig, fp: &Fingerprint) -> Option<CollectorHandle> {
        if c.command.is_some() {
            return self.launch_exec(name, c, fp);
        }
        let timing = Timing {
            interval: c.interval,
            deadline: c.effective_deadline(),
        };
        self.store
            .register(name, timing.interval, timing.deadline, true);
        self.store.set_isolation(name, c.isolation);
        let plugin = fp
            .library
            .clone()
            .and_then(|path| crate::loader::load(&path).map_err(|e| e.to_string()));
        match plugin {
            Ok(plugin) => {
                tracing::info!(
                    collector = %name,
                    plugin = %plugin.info.name,
                    version = %plugin.info.version,
                    api = %plugin.info.api_version,
                    library = %plugin.path.display(),
                    isolation = c.isolation.as_str(),
                    "plugin loaded"
                );
                let spec = CollectorSpec {
                    name: name.to_owned(),
                    timing,
                    config: fp.config.clone(),
                    isolation: c.isolation,
                    memory_limit_bytes: fp.memory_limit,
                };
                Some(scheduler::spawn(spec, plugin, self.store.clone()))
            }
            Err(message) => {
                tracing::error!(collector = %name, "cannot load plugin: {message}");
                self.store.record_failure(
                    name,
                    &format!("cannot load plugin: {message}"),
                    None,
                    None,
                );
                None
            }
        }
    }

    /// Applies `new`: each collector whose settings changed is started, stopped or retimed on its
    /// own; the others keep running and keep their history.
    pub async fn apply(&self, new: Config) -> ChangeReport {
        let mut inner = self.inner.lock().await;
        self.apply_locked(&mut inner, new).await
    }

    /// [`Control::apply`] with the lock already held, so a read-modify-apply is one step.
    async fn apply_locked(&self, inner: &mut Inner, new: Config) -> ChangeReport {
        let running: BTreeMap<String, Fingerprint> = inner
            .running
            .iter()
            .filter(|(_, r)| r.handle.is_some())
            .map(|(n, r)| (n.clone(), r.fingerprint.clone()))
            .collect();
        let changes = plan::plan(&inner.config, &new, !inner.started, &running, |n, c| {
            self.fingerprint(&new, n, c)
        });
        inner.started = true;
        let mut report = ChangeReport::default();
        for change in changes {
            match change {
                Change::NeedsRestart(table) => report.needs_restart.push(table.as_str().to_owned()),
                Change::Remove(name) => {
                    Self::stop(inner, &name).await;
                    self.store.remove(&name);
                    report.stopped.push(name);
                }
                Change::Disable { name, timing } => {
                    if Self::stop(inner, &name).await {
                        report.stopped.push(name.clone());
                    }
                    self.store
                        .register(&name, timing.interval, timing.deadline, false);
                }
                Change::Retime { name, timing } => {
                    if let Some(h) = inner.running.get(&name).and_then(|r| r.handle.as_ref()) {
                        h.set_timing(timing);
                    }
                    self.store
                        .register(&name, timing.interval, timing.deadline, true);
                    report.retimed.push(name);
                }
                Change::Start { name, fingerprint } => {
                    Self::stop(inner, &name).await;
                    if let Some(c) = new.collectors.get(&name) {
                        let handle = self.launch(&name, c, &fingerprint);
                        inner.running.insert(
                            name.clone(),
                            Running {
                                handle,
                                fingerprint,
                            },
                        );
                        report.started.push(name);
                    }
                }
            }
        }
        // Alert rules are replaced in place, without a restart.
        self.alerts.send_if_modified(|a| {
            let changed = *a != new.alerts;
            if changed {
                a.clone_from(&new.alerts);
            }
            changed
        });
        inner.config = new;
        report
    }

    /// Stops a collector's worker; true when it had one (running, or failed to load).
    async fn stop(inner: &mut Inner, name: &str) -> bool {
        let Some(r) = inner.running.remove(name) else {
            return false;
        };
        if let Some(h) = r.handle {
            h.stop().await;
        }
        true
    }

    /// Reads the config file again and applies it; an invalid file changes nothing.
    ///
    /// # Errors
    /// The full list of problems of the new file.
    pub async fn reload(&self) -> Result<ChangeReport, String> {
        let Some(path) = self.config_path.clone() else {
            return Err(
                "the host runs with the built-in config: there is no file to reload".to_owned(),
            );
        };
        match config::load(&path) {
            Ok(new) => {
                let report = self.apply(new).await;
                self.store.event(
                    "config",
                    "reloaded",
                    &format!("config reloaded: {}", report.summary()),
                );
                if report.is_empty() {
                    tracing::info!("config reloaded: no change");
                } else {
                    tracing::info!(
                        started = ?report.started,
                        stopped = ?report.stopped,
                        retimed = ?report.retimed,
                        "config reloaded"
                    );
                }
                if !report.needs_restart.is_empty() {
                    tracing::warn!(
                        "config reloaded, but changes to {} take effect only after a restart",
                        report.needs_restart.join(", ")
                    );
                }
                Ok(report)
            }
            Err(e) => {
                let message = format!("the new config was rejected, the running one stays: {e}");
                tracing::error!("{message}");
                self.store.push_error("config", &message);
                self.store.event("config", "rejected", &message);
                Err(message)
            }
        }
    }

    /// The collectors as the API shows them.
    pub async fn list(&self) -> Vec<CollectorView> {
        let inner = self.inner.lock().await;
        let statuses = self.store.statuses();
        inner
            .config
            .collectors
            .iter()
            .map(|(name, c)| {
                let library = inner
                    .running
                    .get(name)
                    .map(|r| r.fingerprint.library.clone())
                    .unwrap_or_else(|| {
                        inner
                            .config
                            .resolve_library(name, c, self.exe_dir.as_deref())
                    });
                CollectorView {
                    name: name.clone(),
                    enabled: c.enabled,
                    interval: humantime::format_duration(c.interval).to_string(),
                    interval_seconds: c.interval.as_secs_f64(),
                    deadline: humantime::format_duration(c.effective_deadline()).to_string(),
                    // A program always runs in processes of its own.
                    isolation: if c.command.is_some() {
                        config::Isolation::Process
                    } else {
                        c.isolation
                    },
                    library: library.map_or_else(|e| e, |p| p.display().to_string()),
                    status: statuses.get(name).cloned(),
                }
            })
            .collect()
    }

    /// Changes one collector at run time (not written back to the file).
    ///
    /// # Errors
    /// [`PatchError`]: an unknown collector, or a value out of range.
    pub async fn patch(
        &self,
        name: &str,
        patch: CollectorPatch,
    ) -> Result<ChangeReport, PatchError> {
        // One lock from reading the config to applying the change: concurrent patches queue
        // and each sees the ones before it.
        let mut inner = self.inner.lock().await;
        let mut new = inner.config.clone();
        let Some(c) = new.collectors.get_mut(name) else {
            return Err(PatchError::UnknownCollector(name.to_owned()));
        };
        let seconds = |v: f64| {
            (v.is_finite() && v > 0.0 && v <= MAX_INTERVAL.as_secs_f64())
                .then(|| Duration::from_secs_f64(v))
        };
        if let Some(v) = patch.interval_seconds {
            let i = seconds(v).unwrap_or_default();
            if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&i) {
                return Err(PatchError::OutOfRange(format!(
                    "interval {} is out of range: it must be between {} and {}",
                    humantime::format_duration(i),
                    humantime::format_duration(MIN_INTERVAL),
                    humantime::format_duration(MAX_INTERVAL)
                )));
            }
            c.interval = i;
        }
        if let Some(v) = patch.deadline_seconds {
            let Some(d) = seconds(v).filter(|d| *d >= MIN_INTERVAL) else {
                return Err(PatchError::OutOfRange(
                    "deadline must be between 100ms and 24h".to_owned(),
                ));
            };
            c.deadline = Some(d);
        }
        if let Some(e) = patch.enabled {
            c.enabled = e;
        }
        Ok(self.apply_locked(&mut inner, new).await)
    }

    /// Stops every collector.
    pub async fn stop_all(&self) {
        let mut inner = self.inner.lock().await;
        let running = std::mem::take(&mut inner.running);
        for (_, r) in running {
            if let Some(h) = r.handle {
                h.stop().await;
            }
        }
    }
}
