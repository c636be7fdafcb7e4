//! Runtime control of the collectors: start from the config, apply a changed config to the
//! collectors it touches alone, reload on file change or SIGHUP, and the collectors API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::api::{json, reject, ApiState, MAX_BODY_BYTES};
use crate::config::{self, CollectorConfig, Config, Role, MAX_INTERVAL, MIN_INTERVAL};
use crate::scheduler::{self, CollectorHandle, CollectorSpec, Timing};
use crate::store::{CollectorStatus, Store};

/// What makes a running collector's worker obsolete when it changes.
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint {
    library: Result<PathBuf, String>,
    config: serde_json::Value,
    isolation: config::Isolation,
    memory_limit: Option<u64>,
}

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
        })
    }

    fn fingerprint(&self, config: &Config, name: &str, c: &CollectorConfig) -> Fingerprint {
        Fingerprint {
            library: config.resolve_library(name, c, self.exe_dir.as_deref()),
            config: crate::table_to_json(&c.config),
            isolation: c.isolation,
            memory_limit: c.memory_limit.map(|m| m.0),
        }
    }

    fn launch(&self, name: &str, c: &CollectorConfig, fp: &Fingerprint) -> Option<CollectorHandle> {
        let timing = Timing {
            interval: c.interval,
            deadline: c.effective_deadline(),
        };
        self.store
            .register(name, timing.interval, timing.deadline, true);
        self.store.set_isolation(name, c.isolation.as_str());
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
        let mut report = ChangeReport::default();
        if inner.started && inner.config.server != new.server {
            report.needs_restart.push("server".to_owned());
        }
        if inner.started && inner.config.history != new.history {
            report.needs_restart.push("history".to_owned());
        }
        inner.started = true;
        let names: BTreeSet<String> = inner
            .config
            .collectors
            .keys()
            .chain(new.collectors.keys())
            .cloned()
            .collect();
        for name in names {
            let old = inner.config.collectors.get(&name).cloned();
            match new.collectors.get(&name) {
                None => {
                    if let Some(r) = inner.running.remove(&name) {
                        if let Some(h) = r.handle {
                            h.stop().await;
                        }
                    }
                    self.store.remove(&name);
                    report.stopped.push(name);
                }
                Some(c) if !c.enabled => {
                    if let Some(r) = inner.running.remove(&name) {
                        if let Some(h) = r.handle {
                            h.stop().await;
                        }
                        report.stopped.push(name.clone());
                    }
                    self.store
                        .register(&name, c.interval, c.effective_deadline(), false);
                }
                Some(c) => {
                    let fp = self.fingerprint(&new, &name, c);
                    let same_worker = inner
                        .running
                        .get(&name)
                        .is_some_and(|r| r.handle.is_some() && r.fingerprint == fp);
                    if same_worker {
                        let timing = Timing {
                            interval: c.interval,
                            deadline: c.effective_deadline(),
                        };
                        let changed = old.as_ref().is_none_or(|o| {
                            o.interval != c.interval
                                || o.effective_deadline() != c.effective_deadline()
                        });
                        if changed {
                            if let Some(h) =
                                inner.running.get(&name).and_then(|r| r.handle.as_ref())
                            {
                                h.set_timing(timing);
                            }
                            self.store
                                .register(&name, timing.interval, timing.deadline, true);
                            report.retimed.push(name);
                        }
                    } else {
                        if let Some(r) = inner.running.remove(&name) {
                            if let Some(h) = r.handle {
                                h.stop().await;
                            }
                        }
                        let handle = self.launch(&name, c, &fp);
                        inner.running.insert(
                            name.clone(),
                            Running {
                                handle,
                                fingerprint: fp,
                            },
                        );
                        report.started.push(name);
                    }
                }
            }
        }
        inner.config = new;
        report
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
                    isolation: c.isolation,
                    library: library.map_or_else(|e| e, |p| p.display().to_string()),
                    status: statuses.get(name).cloned(),
                }
            })
            .collect()
    }

    /// Changes one collector at run time (not written back to the file).
    ///
    /// # Errors
    /// `NOT_FOUND` for an unknown collector, `BAD_REQUEST` for a value out of range.
    pub async fn patch(
        &self,
        name: &str,
        patch: CollectorPatch,
    ) -> Result<ChangeReport, (StatusCode, String)> {
        let mut new = self.inner.lock().await.config.clone();
        let Some(c) = new.collectors.get_mut(name) else {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no collector named `{name}` is configured"),
            ));
        };
        let seconds = |v: f64| {
            (v.is_finite() && v > 0.0 && v <= MAX_INTERVAL.as_secs_f64())
                .then(|| Duration::from_secs_f64(v))
        };
        if let Some(v) = patch.interval_seconds {
            let i = seconds(v).unwrap_or_default();
            if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&i) {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!(
                        "interval {} is out of range: it must be between {} and {}",
                        humantime::format_duration(i),
                        humantime::format_duration(MIN_INTERVAL),
                        humantime::format_duration(MAX_INTERVAL)
                    ),
                ));
            }
            c.interval = i;
        }
        if let Some(v) = patch.deadline_seconds {
            let Some(d) = seconds(v).filter(|d| *d >= MIN_INTERVAL) else {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "deadline must be between 100ms and 24h".to_owned(),
                ));
            };
            c.deadline = Some(d);
        }
        if let Some(e) = patch.enabled {
            c.enabled = e;
        }
        Ok(self.apply(new).await)
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

/// How often the config file is checked when inotify cannot watch its folder.
const POLL_WITHOUT_INOTIFY: Duration = Duration::from_secs(1);
/// How often it is checked anyway with inotify (file systems that send no events, such as NFS).
const POLL_WITH_INOTIFY: Duration = Duration::from_secs(30);
/// How long after an event the file is compared, so an editor's write and rename land first.
const SETTLE: Duration = Duration::from_millis(100);

/// An inotify watch on the folder of `path` (editors and config managers replace the file by
/// a rename, which a watch on the file itself would lose).
fn watch_folder(path: &Path) -> std::io::Result<inotify::EventStream<Vec<u8>>> {
    use inotify::{Inotify, WatchMask};
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let inotify = Inotify::init()?;
    inotify.watches().add(
        folder,
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ATTRIB,
    )?;
    inotify.into_event_stream(vec![0u8; 4096])
}

/// Watches the config file and reloads it when its modification time or size changes: on an
/// inotify event in its folder (and every 30 s), or every second where inotify is unavailable.
pub async fn watch_file(
    control: Arc<Control>,
    path: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use futures_util::{FutureExt, StreamExt};
    fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    }
    let mut events = match watch_folder(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::info!(
                "cannot watch the folder of {} ({e}); checking it every second",
                path.display()
            );
            None
        }
    };
    let mut last = stamp(&path);
    loop {
        let every = if events.is_some() {
            POLL_WITH_INOTIFY
        } else {
            POLL_WITHOUT_INOTIFY
        };
        let event = async {
            match events.as_mut() {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            e = event => match e {
                Some(Ok(_)) => {
                    tokio::time::sleep(SETTLE).await;
                    // One comparison for a burst of events.
                    if let Some(s) = events.as_mut() {
                        while let Some(Some(Ok(_))) = s.next().now_or_never() {}
                    }
                }
                other => {
                    tracing::info!(
                        "the watch on the folder of {} ended ({other:?}); checking it every second",
                        path.display()
                    );
                    events = None;
                }
            },
            _ = shutdown.changed() => return,
        }
        let now = stamp(&path);
        if now != last && now.is_some() {
            last = now;
            let _ = control.reload().await;
        }
    }
}

/// `GET /admin/monitor/collectors`, `GET` and `PUT /admin/monitor/collectors/{name}`.
pub fn routes<B, V, A, S>(
    base: B,
    viewer: V,
    admin: A,
    st: S,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
where
    B: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
    V: Filter<Extract = (Role,), Error = Rejection> + Clone + Send + Sync + 'static,
    A: Filter<Extract = (Role,), Error = Rejection> + Clone + Send + Sync + 'static,
    S: Filter<Extract = (ApiState,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let list = base
        .clone()
        .and(warp::path!("collectors"))
        .and(warp::get())
        .and(viewer.clone())
        .and(st.clone())
        .then(|_, s: ApiState| async move {
            json(
                StatusCode::OK,
                &serde_json::json!({ "collectors": s.control.list().await }),
            )
        });
    let one = base
        .clone()
        .and(warp::path!("collectors" / String))
        .and(warp::get())
        .and(viewer)
        .and(st.clone())
        .and_then(|name: String, _, s: ApiState| async move {
            let views = s.control.list().await;
            match views.into_iter().find(|v| v.name == name) {
                Some(v) => Ok(json(StatusCode::OK, &v)),
                None => Err(reject(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no collector named `{name}` is configured"),
                )),
            }
        });
    let put = base
        .and(warp::path!("collectors" / String))
        .and(warp::put())
        .and(admin)
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::body::json::<CollectorPatch>())
        .and(st)
        .and_then(
            |name: String, _, patch: CollectorPatch, s: ApiState| async move {
                match s.control.patch(&name, patch).await {
                    Ok(report) => {
                        let view = s.control.list().await.into_iter().find(|v| v.name == name);
                        Ok(json(
                            StatusCode::OK,
                            &serde_json::json!({ "changes": report, "collector": view }),
                        ))
                    }
                    Err((status, message)) => Err(reject(
                        status,
                        if status == StatusCode::NOT_FOUND {
                            "not_found"
                        } else {
                            "bad_request"
                        },
                        message,
                    )),
                }
            },
        );
    list.or(one).unify().or(put).unify()
}
