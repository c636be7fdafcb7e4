//! The snapshot store: latest section and status per collector, ring-buffer history, cached JSON.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use vitals_plugin_api::{SectionEvent, Series};

use crate::config::Isolation;
use crate::projection::Projection;
use crate::recorder::Recorder;

/// The state of one collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Loaded, no collect finished yet.
    Pending,
    /// The last collect succeeded.
    Ok,
    /// The source is absent on this machine (no GPU, no daemon): shown, not a failure.
    Unavailable,
    /// Loading, creating or collecting failed; the last good data (if any) is stale.
    Failed,
    /// Turned off in the config.
    Disabled,
}

/// One error, with when it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorRecord {
    /// RFC 3339 time.
    pub time: String,
    /// Unix time in milliseconds.
    pub time_unix_ms: u64,
    /// Where it came from, e.g. `collector:cpu`.
    pub source: String,
    /// What went wrong.
    pub message: String,
}

/// The plugin behind a collector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginRef {
    /// The plugin's own name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The plugin API version it was built against.
    pub api_version: String,
    /// The library file.
    pub library: String,
}

/// The status block of one collector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectorStatus {
    /// The current state.
    pub state: State,
    /// True when the section shown is older than the last attempt (it failed since).
    pub stale: bool,
    /// Why the collector is unavailable or failed; while it is ok, what of its section the
    /// history did not keep (a bound was reached), if anything.
    pub reason: Option<String>,
    /// The plugin behind it, once loaded.
    pub plugin: Option<PluginRef>,
    /// Seconds between collects.
    pub interval_seconds: f64,
    /// Seconds one collect may take.
    pub deadline_seconds: f64,
    /// When the last collect succeeded (RFC 3339).
    pub last_success: Option<String>,
    /// The last error.
    pub last_error: Option<ErrorRecord>,
    /// How long the last finished collect took, in milliseconds.
    pub last_duration_ms: Option<f64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Successful collects since start.
    pub collects_total: u64,
    /// Failed collects since start.
    pub errors_total: u64,
    /// When the next attempt is due (RFC 3339), while backing off after failures.
    pub next_retry: Option<String>,
    /// How often the worker (a child process under process isolation) was restarted.
    pub restarts: u64,
    /// `in-process` or `process`, spelled as in the config.
    pub isolation: Isolation,
}

impl CollectorStatus {
    fn new(interval: Duration, deadline: Duration) -> Self {
        Self {
            state: State::Pending,
            stale: false,
            reason: None,
            plugin: None,
            interval_seconds: interval.as_secs_f64(),
            deadline_seconds: deadline.as_secs_f64(),
            last_success: None,
            last_error: None,
            last_duration_ms: None,
            consecutive_failures: 0,
            collects_total: 0,
            errors_total: 0,
            next_retry: None,
            restarts: 0,
            isolation: Isolation::InProcess,
        }
    }
}

/// One point of a series: Unix milliseconds and value.
pub type Point = (u64, f64);

/// The history of one series of one collector.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesHistory {
    /// The series name.
    pub name: String,
    /// For per-item series (per GPU, per core): the item's label.
    pub label: Option<String>,
    /// The unit of the values.
    pub unit: String,
    /// The JSON pointer into the section the values are read from, as the plugin declares it.
    pub pointer: String,
    /// For `*` pointers: the field of each array element that gives its label (else the index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_field: Option<String>,
    /// Points, oldest first.
    pub points: VecDeque<Point>,
    /// Collects in a row that had no value for it (its item is gone, say a removed container).
    #[serde(skip)]
    missed: usize,
}

/// The most series the history keeps for one collector; values of further series are not
/// kept (the collector's status says so) until series of gone items make room. Docker's two
/// series for 2,000 containers fit.
pub const MAX_SERIES_PER_COLLECTOR: usize = 5_000;

/// The most values one collect adds to the history (a `*` pointer over a huge array finds
/// one per element); the walk stops there and the collector's status says so.
pub const MAX_POINTS_PER_COLLECT: usize = 5_000;

struct Entry {
    version: u64,
    section: Option<Box<RawValue>>,
    /// The section parsed, kept for the collectors named by [`Store::keep_parsed`]: parsed
    /// once per collect and shared, instead of once by each reader.
    parsed: Option<Arc<Value>>,
    status: CollectorStatus,
    /// The series and their history, behind a lock of their own: a collect appends to them
    /// without holding the store's lock, so readers of the snapshot never wait on it.
    history: Arc<Mutex<History>>,
    /// The newest section event stored, and the texts of those stored at that millisecond.
    events_seen: (i64, Vec<String>),
}

/// A collector's declared series and the history kept of them.
#[derive(Default)]
struct History {
    /// The series the plugin declares; replaced (never changed in place) when they change.
    series: Arc<[Series]>,
    /// The parts of a section the series read (their pointers and label fields), set with
    /// the series.
    view: Arc<Projection>,
    /// For a collector kept parsed: `view` and what the keeping reader reads, and the
    /// section's events.
    kept: Option<Arc<Projection>>,
    list: Vec<SeriesHistory>,
    /// Where each (name, label) is in `list`.
    index: HashMap<(String, Option<String>), usize>,
}

/// A series' (name, label) in [`History::index`], looked up without a copy: it hashes as
/// the `(String, Option<String>)` key does.
#[derive(Hash)]
struct SeriesRef<'a>(&'a str, Option<&'a str>);

impl hashbrown::Equivalent<(String, Option<String>)> for SeriesRef<'_> {
    fn equivalent(&self, key: &(String, Option<String>)) -> bool {
        self.0 == key.0 && self.1 == key.1.as_deref()
    }
}

/// One collect's values for the history, found outside every lock; the labels are borrowed
/// from the section where they are strings.
struct Found<'a> {
    /// The series they were found for (the values are dropped if the series changed since).
    series: Arc<[Series]>,
    /// `(index of the series in `series`, label, value)`.
    values: Vec<(usize, Option<Cow<'a, str>>, f64)>,
    /// True when the section held more values than [`MAX_POINTS_PER_COLLECT`].
    capped: bool,
}

/// The parts of a section `series` read: each pointer, and the label field of the array
/// element its last `*` walks.
fn series_view(series: &[Series]) -> Projection {
    let mut view = Projection::default();
    for s in series {
        view.add_series(s);
    }
    view
}

/// What a kept collector's section is parsed to: the series' view, what the keeping reader
/// reads, and the events.
fn kept_view(view: &Projection, reads: &Projection) -> Arc<Projection> {
    let mut kept = view.clone();
    kept.merge(reads);
    kept.add("/events");
    Arc::new(kept)
}

struct Inner {
    entries: BTreeMap<String, Entry>,
    errors: VecDeque<ErrorRecord>,
    /// Failed requests, bounded apart from `errors` so their noise never pushes out a
    /// collector's or the config's error.
    request_errors: VecDeque<ErrorRecord>,
    history_points: usize,
    version: u64,
    /// The collectors whose sections are kept parsed, with the parts their reader reads.
    keep_parsed: BTreeMap<String, Projection>,
}

/// Everything the host knows right now, shared by the collectors and the API.
pub struct Store {
    inner: RwLock<Inner>,
    cached_snapshot: Mutex<Option<Bytes>>,
    updates: tokio::sync::watch::Sender<u64>,
    error_capacity: usize,
    /// The durable history, fed with every collect's values and every event.
    recorder: std::sync::OnceLock<Arc<Recorder>>,
}

/// Unix milliseconds of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Signed Unix milliseconds of `t` (before 1970 is negative), as the durable history keys time.
pub fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Serialize)]
struct SnapshotView<'a> {
    timestamp: String,
    timestamp_unix_ms: u64,
    sections: BTreeMap<&'a str, &'a RawValue>,
    collectors: BTreeMap<&'a str, &'a CollectorStatus>,
    /// Whose machine the sections describe (a container watching its host, or its own view).
    host_root: &'static crate::host_root::HostRoot,
}

impl Store {
    /// An empty store keeping `history_points` per series and `error_capacity` recent errors.
    pub fn new(history_points: usize, error_capacity: usize) -> Self {
        let (updates, _) = tokio::sync::watch::channel(0);
        Self {
            inner: RwLock::new(Inner {
                entries: BTreeMap::new(),
                errors: VecDeque::new(),
                request_errors: VecDeque::new(),
                history_points,
                version: 0,
                keep_parsed: BTreeMap::new(),
            }),
            cached_snapshot: Mutex::new(None),
            updates,
            error_capacity,
            recorder: std::sync::OnceLock::new(),
        }
    }

    /// Feeds the durable history from now on (once; later calls are ignored).
    pub fn set_recorder(&self, recorder: Arc<Recorder>) {
        let _ = self.recorder.set(recorder);
    }

    /// The durable history, once set.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.get()
    }

    /// Records an event (a reload, a start, a stop) in the durable history.
    pub fn event(&self, source: &str, kind: &str, text: &str) {
        if let Some(r) = self.recorder.get() {
            r.event(millis(SystemTime::now()), source, kind, text);
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, inner: &mut Inner) {
        inner.version += 1;
        *self
            .cached_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.updates.send_replace(inner.version);
    }

    fn with_entry(
        &self,
        name: &str,
        f: impl FnOnce(&mut Entry, &mut VecDeque<ErrorRecord>, usize),
    ) {
        let mut inner = self.write();
        let points = inner.history_points;
        let next_version = inner.version + 1;
        let Inner {
            entries, errors, ..
        } = &mut *inner;
        if let Some(e) = entries.get_mut(name) {
            f(e, errors, points);
            e.version = next_version;
        }
        while inner.errors.len() > self.error_capacity {
            inner.errors.pop_back();
        }
        self.changed(&mut inner);
    }

    /// Adds (or resets the settings of) a collector, keeping its data and history.
    pub fn register(&self, name: &str, interval: Duration, deadline: Duration, enabled: bool) {
        let mut inner = self.write();
        let next_version = inner.version + 1;
        let kept = inner
            .keep_parsed
            .get(name)
            .map(|r| kept_view(&Projection::default(), r));
        let entry = inner
            .entries
            .entry(name.to_owned())
            .or_insert_with(|| Entry {
                version: next_version,
                section: None,
                parsed: None,
                status: CollectorStatus::new(interval, deadline),
                history: Arc::new(Mutex::new(History {
                    kept,
                    ..History::default()
                })),
                events_seen: (i64::MIN, Vec::new()),
            });
        entry.version = next_version;
        entry.status.interval_seconds = interval.as_secs_f64();
        entry.status.deadline_seconds = deadline.as_secs_f64();
        if !enabled {
            entry.status.state = State::Disabled;
            entry.status.reason = None;
            entry.status.next_retry = None;
        } else if entry.status.state == State::Disabled {
            entry.status.state = State::Pending;
        }
        self.changed(&mut inner);
    }

    /// Records the plugin behind a collector and the series it reports.
    pub fn set_plugin(&self, name: &str, plugin: PluginRef, series: Vec<Series>) {
        let reads = self.read().keep_parsed.get(name).cloned();
        self.with_entry(name, |e, _, _| {
            e.status.plugin = Some(plugin);
            let mut h = lock(&e.history);
            if *h.series != *series {
                h.list.clear();
                h.index.clear();
                h.view = Arc::new(series_view(&series));
                h.kept = reads.map(|r| kept_view(&h.view, &r));
                h.series = series.into();
            }
        });
    }

    /// Records when the next attempt is due (`None` when on schedule).
    pub fn set_next_retry(&self, name: &str, at: Option<SystemTime>) {
        let mut inner = self.write();
        if let Some(e) = inner.entries.get_mut(name) {
            let next = at.map(rfc3339);
            if e.status.next_retry != next {
                e.status.next_retry = next;
                self.changed(&mut inner);
            }
        }
    }

    /// Counts one restart of a collector's worker.
    pub fn record_restart(&self, name: &str) {
        self.with_entry(name, |e, _, _| e.status.restarts += 1);
    }

    /// Records how a collector is isolated.
    pub fn set_isolation(&self, name: &str, isolation: Isolation) {
        self.with_entry(name, |e, _, _| e.status.isolation = isolation);
    }

    /// Forgets a collector that left the config.
    pub fn remove(&self, name: &str) {
        let mut inner = self.write();
        if inner.entries.remove(name).is_some() {
            self.changed(&mut inner);
        }
    }

    /// Records a successful collect. The section's values are found and appended to the
    /// history before the store's lock is taken; under it only the section and status change.
    pub fn record_ok(
        &self,
        name: &str,
        section: Box<RawValue>,
        duration: Duration,
        at: SystemTime,
    ) {
        let Some((history, capacity)) = ({
            let inner = self.read();
            let found = inner.entries.get(name).map(|e| e.history.clone());
            found.map(|h| (h, inner.history_points))
        }) else {
            return;
        };
        let recorder = self.recorder.get();
        let (series, view, kept) = {
            let h = lock(&history);
            (h.series.clone(), h.view.clone(), h.kept.clone())
        };
        let parsed = kept.and_then(|k| k.parse(section.get()).ok()).map(Arc::new);
        let viewed = match &parsed {
            None if !view.is_empty() => view.parse(section.get()).ok(),
            _ => None,
        };
        let found = parsed
            .as_deref()
            .or(viewed.as_ref())
            .filter(|_| !series.is_empty())
            .map(|v| find_values(series, v));
        let mut warning = None;
        if let Some(found) = found {
            if let Some(r) = recorder {
                r.record(
                    millis(at),
                    found
                        .values
                        .iter()
                        .map(|(s, l, v)| {
                            let key = vitals_history::SeriesKey {
                                collector: name.to_owned(),
                                name: found.series[*s].name.clone(),
                                label: l.as_deref().map(str::to_owned),
                            };
                            (key, *v)
                        })
                        .collect(),
                );
            }
            warning = append_history(&mut lock(&history), found, unix_ms(at), capacity);
        }
        drop(viewed);
        let events = recorder.and_then(|_| match &parsed {
            Some(whole) => events_of(whole),
            None => section_events(section.get()),
        });
        // The previous parse is freed after the lock is let go: for a large section that is
        // thousands of frees.
        let mut previous = None;
        self.with_entry(name, |e, _, _| {
            transition_event(recorder, name, e.status.state, State::Ok, "");
            if let (Some(r), Some(events)) = (recorder, events) {
                store_new_events(r, name, &mut e.events_seen, events);
            }
            e.section = Some(section);
            previous = std::mem::replace(&mut e.parsed, parsed);
            let s = &mut e.status;
            s.state = State::Ok;
            s.stale = false;
            s.reason = warning;
            s.last_success = Some(rfc3339(at));
            s.last_duration_ms = Some(duration.as_secs_f64() * 1000.0);
            s.consecutive_failures = 0;
            s.collects_total += 1;
            s.next_retry = None;
        });
        drop(previous);
    }

    /// Records that the collector's source is absent (not a failure).
    pub fn record_unavailable(
        &self,
        name: &str,
        reason: &str,
        duration: Option<Duration>,
        next_retry: Option<SystemTime>,
    ) {
        let recorder = self.recorder.get();
        self.with_entry(name, |e, _, _| {
            transition_event(recorder, name, e.status.state, State::Unavailable, reason);
            let s = &mut e.status;
            s.state = State::Unavailable;
            s.stale = e.section.is_some();
            s.reason = Some(reason.to_owned());
            s.last_duration_ms = duration
                .map(|d| d.as_secs_f64() * 1000.0)
                .or(s.last_duration_ms);
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.next_retry = next_retry.map(rfc3339);
        });
    }

    /// Records a failure: the last good data stays, flagged stale, and the error is listed.
    pub fn record_failure(
        &self,
        name: &str,
        message: &str,
        duration: Option<Duration>,
        next_retry: Option<SystemTime>,
    ) {
        let now = SystemTime::now();
        let record = ErrorRecord {
            time: rfc3339(now),
            time_unix_ms: unix_ms(now),
            source: format!("collector:{name}"),
            message: message.to_owned(),
        };
        let recorder = self.recorder.get();
        self.with_entry(name, |e, errors, _| {
            transition_event(recorder, name, e.status.state, State::Failed, message);
            let s = &mut e.status;
            s.state = State::Failed;
            s.stale = e.section.is_some();
            s.reason = Some(message.to_owned());
            s.last_error = Some(record.clone());
            s.last_duration_ms = duration
                .map(|d| d.as_secs_f64() * 1000.0)
                .or(s.last_duration_ms);
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.errors_total += 1;
            s.next_retry = next_retry.map(rfc3339);
            errors.push_front(record);
        });
    }

    /// The full snapshot as JSON, serialised once per change and shared by every reader.
    pub fn snapshot_json(&self) -> Bytes {
        // Lock order: the store, then the cache, as `changed()` does under the write lock.
        let inner = self.read();
        let mut cache = self
            .cached_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(b) = cache.as_ref() {
            return b.clone();
        }
        let now = SystemTime::now();
        let view = SnapshotView {
            timestamp: rfc3339(now),
            timestamp_unix_ms: unix_ms(now),
            sections: inner
                .entries
                .iter()
                .filter_map(|(k, e)| Some((k.as_str(), e.section.as_deref()?)))
                .collect(),
            collectors: inner
                .entries
                .iter()
                .map(|(k, e)| (k.as_str(), &e.status))
                .collect(),
            host_root: crate::host_root::current(),
        };
        // Always text: a `String` turned into `Bytes` (see `snapshot_text`).
        let text = serde_json::to_string(&view).unwrap_or_else(|_| "{}".to_owned());
        let bytes = Bytes::from(text);
        *cache = Some(bytes.clone());
        bytes
    }

    /// The full snapshot as an owned JSON string, copied from the shared serialisation
    /// without checking its UTF-8 again (event streams need one string per event).
    pub fn snapshot_text(&self) -> String {
        let bytes = self.snapshot_json();
        // SAFETY: `snapshot_json` only ever caches and returns `Bytes` made from a `String`
        // (serde_json output), so the bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&bytes) }.to_owned()
    }

    /// The status of every collector.
    pub fn statuses(&self) -> BTreeMap<String, CollectorStatus> {
        self.read()
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.status.clone()))
            .collect()
    }

    /// The state of every collector: what alert rules read of the statuses, without copying
    /// each status whole on every evaluation.
    pub fn states(&self) -> BTreeMap<String, State> {
        self.read()
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.status.state))
            .collect()
    }

    /// The latest section of one collector, if any.
    pub fn section(&self, name: &str) -> Option<Box<RawValue>> {
        self.read()
            .entries
            .get(name)
            .and_then(|e| e.section.clone())
    }

    /// The history of one collector, or of all.
    pub fn history(&self, collector: Option<&str>) -> BTreeMap<String, Vec<SeriesHistory>> {
        self.read()
            .entries
            .iter()
            .filter(|(k, _)| collector.is_none_or(|c| c == k.as_str()))
            .map(|(k, e)| (k.clone(), lock(&e.history).list.clone()))
            .collect()
    }

    /// The labels the live history holds now for one series of a collector (the items of the
    /// latest collects: the containers, disks, GPUs present), in the order they came.
    pub fn live_labels(&self, collector: &str, name: &str) -> Vec<String> {
        self.read()
            .entries
            .get(collector)
            .map(|e| {
                lock(&e.history)
                    .list
                    .iter()
                    .filter(|h| h.name == name)
                    .filter_map(|h| h.label.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The series a collector declares, as `(name, unit)`; empty for an unknown collector.
    pub fn declared_series(&self, collector: &str) -> Vec<(String, String)> {
        self.read()
            .entries
            .get(collector)
            .map(|e| {
                let mut names: Vec<(String, String)> = lock(&e.history)
                    .series
                    .iter()
                    .map(|s| (s.name.clone(), s.unit.clone()))
                    .collect();
                names.dedup_by(|a, b| a.0 == b.0);
                names
            })
            .unwrap_or_default()
    }

    /// The series a collector declares, with their pointers; empty for an unknown collector.
    pub fn declared(&self, collector: &str) -> Vec<Series> {
        self.read()
            .entries
            .get(collector)
            .map(|e| lock(&e.history).series.to_vec())
            .unwrap_or_default()
    }

    /// Counts of series and points held in history.
    pub fn history_size(&self) -> (usize, usize) {
        let inner = self.read();
        let (mut series, mut points) = (0, 0);
        for e in inner.entries.values() {
            let h = lock(&e.history);
            series += h.list.len();
            points += h.list.iter().map(|s| s.points.len()).sum::<usize>();
        }
        (series, points)
    }

    /// Recent errors, newest first: the components' errors first claim the `limit`, failed
    /// requests fill the rest.
    pub fn errors(&self, limit: usize) -> Vec<ErrorRecord> {
        let inner = self.read();
        let mut out: Vec<ErrorRecord> = inner.errors.iter().take(limit).cloned().collect();
        let room = limit - out.len();
        out.extend(inner.request_errors.iter().take(room).cloned());
        out.sort_by_key(|e| std::cmp::Reverse(e.time_unix_ms));
        out
    }

    /// Adds an error that is not a collector's (e.g. a plugin load at start-up); source
    /// `request` (a failed request) goes to its own bounded list.
    pub fn push_error(&self, source: &str, message: &str) {
        let now = SystemTime::now();
        let mut inner = self.write();
        let list = if source == "request" {
            &mut inner.request_errors
        } else {
            &mut inner.errors
        };
        list.push_front(ErrorRecord {
            time: rfc3339(now),
            time_unix_ms: unix_ms(now),
            source: source.to_owned(),
            message: message.to_owned(),
        });
        while list.len() > self.error_capacity {
            list.pop_back();
        }
    }

    /// The change number of the whole store.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Keeps the sections of the collectors named parsed from their next collect on (and
    /// stops keeping those of the others), for a reader that reads them after every collect.
    /// Each is parsed to what its reader reads (its projection), what its series read, and
    /// its `events`.
    pub fn keep_parsed(&self, reads: &BTreeMap<String, Projection>) {
        let mut inner = self.write();
        if inner.keep_parsed != *reads {
            inner.keep_parsed = reads.clone();
            for (name, e) in inner.entries.iter_mut() {
                let mut h = lock(&e.history);
                h.kept = reads.get(name).map(|r| kept_view(&h.view, r));
                if h.kept.is_none() {
                    e.parsed = None;
                }
            }
        }
    }

    /// A collector's version and its section parsed, when it is kept parsed and its latest
    /// section was read; `None` otherwise (the reader then parses [`Self::section`]).
    pub fn parsed_section(&self, name: &str) -> Option<(u64, Arc<Value>)> {
        let inner = self.read();
        let e = inner.entries.get(name)?;
        Some((e.version, e.parsed.clone()?))
    }

    /// The change number of one collector's entry, `None` when there is no such collector.
    pub fn collector_version(&self, name: &str) -> Option<u64> {
        self.read().entries.get(name).map(|e| e.version)
    }

    /// One collector's section, status and history, `None` when there is no such collector.
    pub fn collector_view(&self, name: &str) -> Option<Value> {
        // Copied under the lock, parsed after it: a large section never holds the lock.
        let (section, status, history) = {
            let inner = self.read();
            let e = inner.entries.get(name)?;
            let history = lock(&e.history).list.clone();
            (e.section.clone(), e.status.clone(), history)
        };
        let now = SystemTime::now();
        let section = section
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
            .unwrap_or(Value::Null);
        Some(serde_json::json!({
            "timestamp": rfc3339(now),
            "timestamp_unix_ms": unix_ms(now),
            "collector": name,
            "section": section,
            "status": status,
            "history": history,
        }))
    }

    /// Every collector's latest section, parsed (after the lock is released).
    pub fn sections(&self) -> BTreeMap<String, Value> {
        let raw: Vec<(String, Box<RawValue>)> = self
            .read()
            .entries
            .iter()
            .filter_map(|(k, e)| Some((k.clone(), e.section.clone()?)))
            .collect();
        raw.into_iter()
            .filter_map(|(k, r)| Some((k, serde_json::from_str(r.get()).ok()?)))
            .collect()
    }

    /// A receiver that sees the version number bump on every change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.updates.subscribe()
    }
}

/// Looks up `pointer`, where a `*` segment walks every element of an array, yielding
/// `(element, value)` pairs (the element is the one the `*` matched, for labelling).
///
/// Stops once `out` holds `limit` values; returns false when it stopped with values left.
fn walk<'v>(
    value: &'v Value,
    segments: &[&str],
    element: Option<(usize, &'v Value)>,
    out: &mut Vec<(Option<(usize, &'v Value)>, &'v Value)>,
    limit: usize,
) -> bool {
    match segments.split_first() {
        None if out.len() >= limit => return false,
        None => out.push((element, value)),
        Some((&"*", rest)) => {
            if let Value::Array(items) = value {
                for (i, item) in items.iter().enumerate() {
                    if !walk(item, rest, Some((i, item)), out, limit) {
                        return false;
                    }
                }
            }
        }
        Some((seg, rest)) => {
            let next = match value {
                Value::Object(m) => m.get(*seg),
                Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            };
            if let Some(n) = next {
                return walk(n, rest, element, out, limit);
            }
        }
    }
    true
}

/// Values with their item labels, borrowed from the section where the label is a string.
pub type Labelled<'a> = Vec<(Option<Cow<'a, str>>, f64)>;

/// The numeric values a series pointer selects in a section, with their labels (borrowed
/// where the label field is a string).
pub fn series_values<'a>(series: &Series, section: &'a Value) -> Labelled<'a> {
    series_values_capped(series, section, usize::MAX).0
}

/// [`series_values`], stopping at `limit` places looked at; true when it stopped early.
fn series_values_capped<'a>(
    series: &Series,
    section: &'a Value,
    limit: usize,
) -> (Labelled<'a>, bool) {
    let segments: Vec<&str> = series.pointer.split('/').skip(1).collect();
    let mut found = Vec::new();
    let complete = walk(section, &segments, None, &mut found, limit);
    let values = found
        .into_iter()
        .filter_map(|(element, v)| {
            let value = v.as_f64()?;
            let label = element.map(|(i, item)| {
                series
                    .label
                    .as_deref()
                    .and_then(|field| item.get(field))
                    .map_or_else(
                        || Cow::Owned(i.to_string()),
                        |l| match l {
                            Value::String(s) => Cow::Borrowed(s.as_str()),
                            other => Cow::Owned(other.to_string()),
                        },
                    )
            });
            Some((label, value))
        })
        .collect();
    (values, !complete)
}

/// This collect's values of every series, at most [`MAX_POINTS_PER_COLLECT`] in all.
fn find_values(series: Arc<[Series]>, section: &Value) -> Found<'_> {
    let mut values = Vec::new();
    let mut capped = false;
    for (i, s) in series.iter().enumerate() {
        let room = MAX_POINTS_PER_COLLECT - values.len();
        let (found, stopped) = series_values_capped(s, section, room);
        capped |= stopped;
        values.extend(found.into_iter().map(|(label, v)| (i, label, v)));
        if capped || values.len() >= MAX_POINTS_PER_COLLECT {
            break;
        }
    }
    Found {
        series,
        values,
        capped,
    }
}

/// Locks a collector's history (a panic while it was held leaves it usable).
fn lock(history: &Mutex<History>) -> std::sync::MutexGuard<'_, History> {
    history.lock().unwrap_or_else(|p| p.into_inner())
}

/// Appends this collect's values to the collector's series. A series that gets no value for
/// as many collects as a series holds points (its item is gone: a removed container, an
/// unmounted disk) is dropped, so churn cannot grow the history without bound; no more than
/// [`MAX_SERIES_PER_COLLECTOR`] are kept.
///
/// Returns what was not kept, when a bound was reached, for the collector's status.
fn append_history(
    history: &mut History,
    found: Found<'_>,
    at_ms: u64,
    capacity: usize,
) -> Option<String> {
    if !Arc::ptr_eq(&history.series, &found.series) {
        // The series changed since the values were found: they belong to the old ones.
        return None;
    }
    let History {
        series,
        list,
        index,
        ..
    } = history;
    let mut touched = vec![false; list.len()];
    let mut refused = 0usize;
    for (s, label, value) in found.values {
        let i = match index.get(&SeriesRef(&series[s].name, label.as_deref())) {
            Some(&i) => i,
            None if list.len() >= MAX_SERIES_PER_COLLECTOR => {
                refused += 1;
                continue;
            }
            None => {
                let s = &series[s];
                let label = label.map(Cow::into_owned);
                index.insert((s.name.clone(), label.clone()), list.len());
                list.push(SeriesHistory {
                    name: s.name.clone(),
                    label,
                    unit: s.unit.clone(),
                    pointer: s.pointer.clone(),
                    label_field: s.label.clone(),
                    // Grown as points arrive: a container that lives a few seconds costs its
                    // few points, not the room for a full window.
                    points: VecDeque::new(),
                    missed: 0,
                });
                touched.push(false);
                list.len() - 1
            }
        };
        touched[i] = true;
        let h = &mut list[i];
        if h.points.len() >= capacity {
            h.points.pop_front();
        } else if h.points.len() == h.points.capacity() {
            // Double up to the window, never past it (a plain push would round up to the next
            // power of two: 1,024 slots for a 600-point window).
            let len = h.points.len();
            h.points.reserve_exact(len.max(4).min(capacity - len));
        }
        h.points.push_back((at_ms, value));
    }
    let mut gone = false;
    for (h, touched) in list.iter_mut().zip(touched) {
        h.missed = if touched { 0 } else { h.missed + 1 };
        gone |= h.missed >= capacity.max(1);
    }
    if gone {
        list.retain(|h| h.missed < capacity.max(1));
        *index = list
            .iter()
            .enumerate()
            .map(|(i, h)| ((h.name.clone(), h.label.clone()), i))
            .collect();
    }
    let mut bounds = Vec::new();
    if found.capped {
        bounds.push(format!(
            "the section has more than {MAX_POINTS_PER_COLLECT} values for its series; each collect keeps the first {MAX_POINTS_PER_COLLECT} (MAX_POINTS_PER_COLLECT)"
        ));
    }
    if refused > 0 {
        bounds.push(format!(
            "{refused} values of new series were not kept: at most {MAX_SERIES_PER_COLLECTOR} series are kept per collector (MAX_SERIES_PER_COLLECTOR)"
        ));
    }
    (!bounds.is_empty()).then(|| format!("history capped: {}", bounds.join("; ")))
}

/// The events a section reports in its top-level `events` array, if it has one.
/// [`section_events`] of a section already parsed.
fn events_of(section: &Value) -> Option<Vec<SectionEvent>> {
    let events = section.get("events")?;
    Vec::<SectionEvent>::deserialize(events)
        .ok()
        .filter(|e| !e.is_empty())
}

fn section_events(section: &str) -> Option<Vec<SectionEvent>> {
    // Most sections have none: look before parsing.
    if !section.contains("\"events\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct WithEvents {
        #[serde(default)]
        events: Vec<SectionEvent>,
    }
    serde_json::from_str::<WithEvents>(section)
        .ok()
        .map(|w| w.events)
        .filter(|e| !e.is_empty())
}

/// Stores the events newer than the ones already stored for this collector (a plugin repeats
/// its recent events in every section).
fn store_new_events(
    recorder: &Recorder,
    name: &str,
    seen: &mut (i64, Vec<String>),
    events: Vec<SectionEvent>,
) {
    let source = format!("collector:{name}");
    for e in new_events(seen, events) {
        recorder.event(e.time_unix_ms, &source, &e.kind, &e.text);
    }
}

/// The events not seen yet, oldest first; `seen` (the newest time stored and the texts
/// stored at that time) moves on past them.
fn new_events(seen: &mut (i64, Vec<String>), mut events: Vec<SectionEvent>) -> Vec<SectionEvent> {
    events.sort_by_key(|e| e.time_unix_ms);
    let mut out = Vec::new();
    for e in events {
        if e.time_unix_ms < seen.0 || (e.time_unix_ms == seen.0 && seen.1.contains(&e.text)) {
            continue;
        }
        if e.time_unix_ms > seen.0 {
            *seen = (e.time_unix_ms, Vec::new());
        }
        seen.1.push(e.text.clone());
        out.push(e);
    }
    out
}

/// Records a collector's change of state (failed, recovered, unavailable) as an event.
fn transition_event(
    recorder: Option<&Arc<Recorder>>,
    name: &str,
    from: State,
    to: State,
    reason: &str,
) {
    let Some(r) = recorder else { return };
    if from == to {
        return;
    }
    let text = match (from, to) {
        (State::Failed | State::Unavailable, State::Ok) => format!("{name} recovered"),
        (_, State::Ok) => format!("{name} collecting"),
        (_, State::Failed) => format!("{name} failed: {reason}"),
        (_, State::Unavailable) => format!("{name} unavailable: {reason}"),
        (_, other) => format!("{name} {other:?}").to_lowercase(),
    };
    let kind = match to {
        State::Ok if matches!(from, State::Failed | State::Unavailable) => "recovered",
        State::Ok => "started",
        State::Failed => "failed",
        State::Unavailable => "unavailable",
        State::Pending => "pending",
        State::Disabled => "disabled",
    };
    r.event(
        millis(SystemTime::now()),
        &format!("collector:{name}"),
        kind,
        &text,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).expect("raw")
    }

    fn plugin_ref(name: &str) -> PluginRef {
        PluginRef {
            name: name.into(),
            version: "1".into(),
            api_version: "1.0.0".into(),
            library: "x".into(),
        }
    }

    /// Guards the ring buffer: it never holds more than the configured points.
    #[test]
    fn history_is_bounded() {
        let store = Store::new(3, 10);
        store.register("cpu", Duration::from_secs(1), Duration::from_secs(1), true);
        store.set_plugin(
            "cpu",
            plugin_ref("cpu"),
            vec![Series::new("usage_percent", "/usage_percent", "percent")],
        );
        for i in 0..5 {
            store.record_ok(
                "cpu",
                raw(json!({ "usage_percent": i })),
                Duration::ZERO,
                SystemTime::now(),
            );
        }
        let h = store.history(Some("cpu"));
        let points: Vec<f64> = h["cpu"][0].points.iter().map(|p| p.1).collect();
        assert_eq!(points, vec![2.0, 3.0, 4.0]);
    }

    /// Guards the memory of short-lived series: a series holds room for the points it has
    /// (doubling as they come), not for a whole window from its first point, and never more
    /// than the window once full.
    #[test]
    fn series_room_grows_with_their_points() {
        let series: Arc<[Series]> = vec![Series::new("n", "/n", "")].into();
        let mut h = History {
            series: series.clone(),
            view: Arc::new(series_view(&series)),
            kept: None,
            list: Vec::new(),
            index: HashMap::new(),
        };
        let room = |h: &History| h.list[0].points.capacity();
        for i in 0..600u32 {
            let section = json!({ "n": i });
            let found = find_values(series.clone(), &section);
            append_history(&mut h, found, u64::from(i), 600);
            if i == 2 {
                assert!(room(&h) <= 8, "3 points hold room for {}", room(&h));
            }
        }
        assert_eq!(h.list[0].points.len(), 600);
        assert!(room(&h) < 700, "600 points hold room for {}", room(&h));
    }

    /// Guards section events: each is stored once although a plugin repeats its recent ones,
    /// events at the same millisecond are told apart by text, and older ones are not stored again.
    #[test]
    fn section_events_are_stored_once() {
        let ev = |t: i64, text: &str| SectionEvent {
            time_unix_ms: t,
            kind: "died".into(),
            text: text.into(),
        };
        let mut seen = (i64::MIN, Vec::new());
        let first = new_events(&mut seen, vec![ev(2, "b"), ev(1, "a")]);
        assert_eq!(first, vec![ev(1, "a"), ev(2, "b")]);
        let again = new_events(
            &mut seen,
            vec![ev(1, "a"), ev(2, "b"), ev(2, "c"), ev(3, "d")],
        );
        assert_eq!(again, vec![ev(2, "c"), ev(3, "d")]);
        assert!(new_events(&mut seen, vec![ev(3, "d"), ev(2, "e")]).is_empty());
        let text =
            r#"{"containers":[],"events":[{"time_unix_ms":5,"kind":"oom_killed","text":"x"}]}"#;
        assert_eq!(section_events(text).map(|e| e.len()), Some(1));
        assert_eq!(section_events(r#"{"containers":[]}"#), None);
    }

    /// Guards the shared parse: a collector named by `keep_parsed` has its section kept
    /// parsed to what its series and its reader read and its events, with the same history
    /// as a collector that is not; one no longer named loses it.
    #[test]
    fn kept_sections_are_parsed_once_and_shared() {
        let store = Store::new(3, 10);
        for name in ["kept", "raw"] {
            store.register(name, Duration::from_secs(1), Duration::from_secs(1), true);
            store.set_plugin(
                name,
                plugin_ref(name),
                vec![Series::new("cpu", "/containers/*/cpu", "percent").labelled_by("name")],
            );
        }
        store.keep_parsed(&BTreeMap::from([(
            "kept".to_owned(),
            Projection::of(["/other"]),
        )]));
        let section = json!({
            "containers": [{ "name": "a", "cpu": 2.5, "id": "x" }],
            "other": [1, 2],
            "unread": { "a": 1 },
            "events": [],
        });
        for name in ["kept", "raw"] {
            store.record_ok(
                name,
                raw(section.clone()),
                Duration::ZERO,
                SystemTime::now(),
            );
        }
        let (version, parsed) = store.parsed_section("kept").expect("kept parsed");
        assert_eq!(
            *parsed,
            json!({
                "containers": [{ "name": "a", "cpu": 2.5 }],
                "other": [1, 2],
                "events": [],
            })
        );
        assert_eq!(Some(version), store.collector_version("kept"));
        assert!(store.parsed_section("raw").is_none());
        let h = store.history(None);
        let points = |n: &str| h[n][0].points.iter().map(|p| p.1).collect::<Vec<_>>();
        assert_eq!(points("kept"), vec![2.5]);
        assert_eq!(points("kept"), points("raw"));
        store.keep_parsed(&BTreeMap::new());
        assert!(store.parsed_section("kept").is_none());
        // A collector registered after the keeping reader asked for it is kept too.
        store.keep_parsed(&BTreeMap::from([(
            "late".to_owned(),
            Projection::of(["/a"]),
        )]));
        store.register("late", Duration::from_secs(1), Duration::from_secs(1), true);
        store.record_ok(
            "late",
            raw(json!({ "a": 1, "b": 2 })),
            Duration::ZERO,
            SystemTime::now(),
        );
        assert_eq!(
            store.parsed_section("late").map(|(_, p)| (*p).clone()),
            Some(json!({ "a": 1 }))
        );
    }

    /// Guards churn: the series of an item that left the section are dropped once a whole
    /// window of collects passed without them, so container churn cannot grow the history;
    /// the items still present keep every point.
    #[test]
    fn series_of_gone_items_are_dropped_after_a_window() {
        let store = Store::new(3, 10);
        store.register(
            "docker",
            Duration::from_secs(1),
            Duration::from_secs(1),
            true,
        );
        store.set_plugin(
            "docker",
            plugin_ref("docker"),
            vec![Series::new("cpu", "/containers/*/cpu", "percent").labelled_by("name")],
        );
        let collect = |names: &[String]| {
            let containers: Vec<Value> = names
                .iter()
                .map(|n| json!({ "name": n, "cpu": 1.0 }))
                .collect();
            store.record_ok(
                "docker",
                raw(json!({ "containers": containers })),
                Duration::ZERO,
                SystemTime::now(),
            );
        };
        // 200 short-lived containers next to one that stays.
        for i in 0..200 {
            collect(&["stays".to_owned(), format!("brief-{i}")]);
        }
        let h = store.history(Some("docker"));
        let labels: Vec<_> = h["docker"].iter().filter_map(|s| s.label.clone()).collect();
        assert!(
            labels.len() <= 4,
            "{} series kept: {labels:?}",
            labels.len()
        );
        let stays = h["docker"]
            .iter()
            .find(|s| s.label.as_deref() == Some("stays"))
            .expect("the container that stays");
        assert_eq!(stays.points.len(), 3);
        assert!(labels.contains(&"brief-199".to_owned()));
    }

    /// Guards the history's bounds: a `*` pointer over an array longer than
    /// `MAX_POINTS_PER_COLLECT` keeps that many values and says so in the status (the collect
    /// stays ok); new series past `MAX_SERIES_PER_COLLECTOR` are not kept, and that is said too.
    #[test]
    fn history_bounds_per_collect_and_per_collector() {
        let store = Store::new(3, 10);
        store.register("wide", Duration::from_secs(1), Duration::from_secs(1), true);
        store.set_plugin(
            "wide",
            plugin_ref("wide"),
            vec![Series::new("item", "/items/*/v", "count").labelled_by("id")],
        );
        let collect = |ids: std::ops::Range<usize>| {
            let items: Vec<Value> = ids.map(|i| json!({ "id": i, "v": i })).collect();
            store.record_ok(
                "wide",
                raw(json!({ "items": items })),
                Duration::ZERO,
                SystemTime::now(),
            );
            store.statuses()["wide"].clone()
        };
        let status = collect(0..MAX_POINTS_PER_COLLECT + 10);
        assert_eq!(status.state, State::Ok);
        let reason = status.reason.unwrap_or_default();
        assert!(reason.contains("MAX_POINTS_PER_COLLECT"), "{reason}");
        assert_eq!(store.history_size().0, MAX_POINTS_PER_COLLECT);
        // Within the bound again: no reason.
        assert_eq!(collect(0..10).reason, None);
        // Past the series bound: 1,000 new series refused while the old ones wait out their window.
        let status = collect(MAX_POINTS_PER_COLLECT..MAX_POINTS_PER_COLLECT + 1_000);
        let reason = status.reason.unwrap_or_default();
        assert!(
            reason.contains("1000 values of new series were not kept")
                && reason.contains("MAX_SERIES_PER_COLLECTOR"),
            "{reason}"
        );
        assert!(store.history_size().0 <= MAX_SERIES_PER_COLLECTOR);
    }

    /// Guards `*` pointers: one labelled series per array element.
    #[test]
    fn wildcard_series_are_labelled_per_element() {
        let s = Series::new("util", "/gpus/*/utilization_percent", "percent").labelled_by("index");
        let v = json!({ "gpus": [
            { "index": 0, "utilization_percent": 10 },
            { "index": 1, "utilization_percent": null },
            { "index": 7, "utilization_percent": 30.5 }
        ]});
        assert_eq!(
            series_values(&s, &v),
            vec![(Some("0".into()), 10.0), (Some("7".into()), 30.5)]
        );
    }

    /// Guards stale marking: a failure keeps the last good section and flags it.
    #[test]
    fn failure_keeps_last_good_data_flagged_stale() {
        let store = Store::new(10, 10);
        store.register("m", Duration::from_secs(1), Duration::from_secs(1), true);
        store.record_ok(
            "m",
            raw(json!({ "a": 1 })),
            Duration::ZERO,
            SystemTime::now(),
        );
        store.record_failure("m", "boom", None, None);
        let snap: Value = serde_json::from_slice(&store.snapshot_json()).expect("json");
        assert_eq!(snap["sections"]["m"]["a"], 1);
        assert_eq!(snap["collectors"]["m"]["state"], "failed");
        assert_eq!(snap["collectors"]["m"]["stale"], true);
        assert_eq!(store.errors(10)[0].message, "boom");
    }

    /// Guards the lock order between the store and the snapshot cache: readers and writers
    /// racing never deadlock.
    #[test]
    fn concurrent_readers_and_writers_do_not_deadlock() {
        let store = std::sync::Arc::new(Store::new(10, 10));
        store.register("m", Duration::from_secs(1), Duration::from_secs(1), true);
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..6 {
            let (store, tx) = (store.clone(), tx.clone());
            std::thread::spawn(move || {
                for n in 0..2_000 {
                    if i % 2 == 0 {
                        store.record_ok(
                            "m",
                            raw(json!({ "n": n })),
                            Duration::ZERO,
                            SystemTime::now(),
                        );
                    } else {
                        std::hint::black_box(store.snapshot_json());
                    }
                }
                let _ = tx.send(());
            });
        }
        for _ in 0..6 {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("a thread is stuck: lock-order deadlock");
        }
    }

    /// Guards the split lists: failed requests never push out a component's error.
    #[test]
    fn request_errors_keep_apart() {
        let store = Store::new(10, 3);
        store.push_error("config", "cannot load plugin");
        for i in 0..10 {
            store.push_error("request", &format!("GET /x{i}: 404"));
        }
        let errors = store.errors(3);
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().any(|e| e.message == "cannot load plugin"));
        assert_eq!(store.errors(100).len(), 4);
    }

    /// Guards the error list bound.
    #[test]
    fn errors_are_bounded() {
        let store = Store::new(10, 2);
        store.register("m", Duration::from_secs(1), Duration::from_secs(1), true);
        for i in 0..5 {
            store.record_failure("m", &format!("e{i}"), None, None);
        }
        let errors = store.errors(100);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].message, "e4");
    }
}
