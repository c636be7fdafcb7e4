//! The durable history's writer: a thread of its own that records every collect's series values and the host's events on disk, flushes them, and answers range queries.
//!
//! The store hands each collect's values over a bounded channel and never waits: a full
//! channel drops the batch and counts it. Opening, writing and querying happen on the
//! recorder's thread alone, so a slow disk never holds a collector or a request.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use vitals_history::{
    Event, History, Millis, Options, QueryError, Retention, Selector, SeriesKey, SeriesPoints,
};

/// Commands waiting for the recorder's thread, at most; past it, batches are dropped and counted.
pub const QUEUE: usize = 1024;

/// How long a request waits for the recorder's answer before it gives up.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The state of the durable history, as health shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecorderState {
    /// Opening the store.
    Starting,
    /// Writing.
    Ok,
    /// The disk refuses writes (full, read-only): values wait in memory, writing resumes by itself.
    Paused,
    /// The store could not be opened (held by another process, bad setting): no durable history.
    Unavailable,
    /// Turned off in the config.
    Disabled,
}

/// What health and the API show of the durable history.
#[derive(Debug, Clone, Serialize)]
pub struct RecorderStatus {
    /// The state.
    pub state: RecorderState,
    /// Why it is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A corrupt store found at start, and where it was moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
    /// The store file.
    pub path: String,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// Values waiting in memory for the next flush.
    pub pending_samples: usize,
    /// Collects whose values were dropped because the recorder fell behind.
    pub dropped_batches: u64,
    /// Values dropped while the disk refused writes for longer than memory holds.
    pub dropped_samples: u64,
}

/// Why a query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The request itself is out of bounds (too many points, a bad range): a 400.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The durable history is off, or could not be opened.
    #[error("the durable history is not available: {0}")]
    Unavailable(String),
    /// The recorder did not answer in time.
    #[error(
        "the durable history did not answer within {}",
        humantime::format_duration(ANSWER_TIMEOUT)
    )]
    Timeout,
}

enum Command {
    Samples(Millis, Vec<(SeriesKey, f64)>),
    Event(Millis, String, String, String),
    Query(
        Selector,
        Millis,
        Millis,
        Millis,
        oneshot::Sender<Result<Vec<SeriesPoints>, QueryError>>,
    ),
    Events(
        Millis,
        Millis,
        Option<String>,
        usize,
        oneshot::Sender<Result<Vec<Event>, QueryError>>,
    ),
    Stop(oneshot::Sender<()>),
}

/// The host's handle on the durable history.
pub struct Recorder {
    tx: Option<SyncSender<Command>>,
    status: Arc<Mutex<RecorderStatus>>,
}

/// Where and how the durable history is kept.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// The store file.
    pub path: PathBuf,
    /// How long each tier is kept, and the disk budget.
    pub retention: Retention,
    /// How often buffered values are written.
    pub flush_interval: Duration,
}

impl Recorder {
    /// A recorder that keeps nothing (`[history] persist = false`).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            status: Arc::new(Mutex::new(RecorderStatus {
                state: RecorderState::Disabled,
                reason: None,
                recovered: None,
                path: String::new(),
                file_bytes: 0,
                pending_samples: 0,
                dropped_batches: 0,
                dropped_samples: 0,
            })),
        }
    }

    /// Starts the recorder's thread, which opens the store at `config.path`.
    pub fn start(config: RecorderConfig) -> Self {
        let status = Arc::new(Mutex::new(RecorderStatus {
            state: RecorderState::Starting,
            reason: None,
            recovered: None,
            path: config.path.display().to_string(),
            file_bytes: 0,
            pending_samples: 0,
            dropped_batches: 0,
            dropped_samples: 0,
        }));
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let shared = status.clone();
        let spawned = std::thread::Builder::new()
            .name("history".to_owned())
            .spawn(move || run(config, rx, shared));
        if let Err(e) = spawned {
            let mut s = lock(&status);
            s.state = RecorderState::Unavailable;
            s.reason = Some(format!("cannot start the history thread: {e}"));
        }
        Self {
            tx: Some(tx),
            status,
        }
    }

    fn send(&self, command: Command) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_)) = tx.try_send(command) {
            lock(&self.status).dropped_batches += 1;
        }
    }

    /// Hands one collect's values (taken at `ts`, Unix milliseconds) to the recorder; never waits.
    pub fn record(&self, ts: Millis, samples: Vec<(SeriesKey, f64)>) {
        if !samples.is_empty() {
            self.send(Command::Samples(ts, samples));
        }
    }

    /// Hands an event to the recorder; never waits.
    pub fn event(&self, ts: Millis, source: &str, kind: &str, text: &str) {
        self.send(Command::Event(
            ts,
            source.to_owned(),
            kind.to_owned(),
            text.to_owned(),
        ));
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, QueryError>>) -> Command,
    ) -> Result<T, RecorderError> {
        let unavailable = || {
            let s = self.status();
            RecorderError::Unavailable(s.reason.unwrap_or_else(|| "it is turned off".to_owned()))
        };
        let tx = self.tx.as_ref().ok_or_else(unavailable)?;
        let (reply, answer) = oneshot::channel();
        tx.try_send(make(reply))
            .map_err(|_| RecorderError::Timeout)?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(r)) => r.map_err(RecorderError::from),
            Ok(Err(_)) => Err(unavailable()),
            Err(_) => Err(RecorderError::Timeout),
        }
    }

    /// Points of the series `selector` matches over `[from, to)`, one per `step`.
    ///
    /// # Errors
    /// A request out of bounds, or no durable history.
    pub async fn query(
        &self,
        selector: Selector,
        from: Millis,
        to: Millis,
        step: Millis,
    ) -> Result<Vec<SeriesPoints>, RecorderError> {
        self.ask(|reply| Command::Query(selector, from, to, step, reply))
            .await
    }

    /// Events over `[from, to)`, newest first, of one source or all, at most `limit`.
    ///
    /// # Errors
    /// A bad range, or no durable history.
    pub async fn events(
        &self,
        from: Millis,
        to: Millis,
        source: Option<String>,
        limit: usize,
    ) -> Result<Vec<Event>, RecorderError> {
        self.ask(|reply| Command::Events(from, to, source, limit, reply))
            .await
    }

    /// The durable history's state.
    pub fn status(&self) -> RecorderStatus {
        lock(&self.status).clone()
    }

    /// Writes what is buffered and ends the thread, waiting at most `wait`.
    pub async fn stop(&self, wait: Duration) {
        let Some(tx) = &self.tx else { return };
        let (reply, done) = oneshot::channel();
        if tx.try_send(Command::Stop(reply)).is_ok() {
            let _ = tokio::time::timeout(wait, done).await;
        }
    }
}

fn lock(status: &Mutex<RecorderStatus>) -> std::sync::MutexGuard<'_, RecorderStatus> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

/// The recorder's thread: opens the store, then serves commands and flushes on time.
fn run(config: RecorderConfig, rx: mpsc::Receiver<Command>, status: Arc<Mutex<RecorderStatus>>) {
    let options = Options {
        flush_interval: config.flush_interval,
        ..Options::default()
    };
    let mut history = match History::open_with(&config.path, config.retention, options) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("durable history unavailable: {e}");
            let mut s = lock(&status);
            s.state = RecorderState::Unavailable;
            s.reason = Some(e.to_string());
            drop(s);
            // Answer queries with "unavailable" until the host stops.
            while let Ok(c) = rx.recv() {
                if let Command::Stop(done) = c {
                    let _ = done.send(());
                    return;
                }
            }
            return;
        }
    };
    if let Some(r) = history.recovered() {
        tracing::error!("{r}");
        lock(&status).recovered = Some(r.to_string());
    }
    publish(&history, &status);
    let mut published = std::time::Instant::now();
    loop {
        let command = match rx.recv_timeout(config.flush_interval) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) => {
                let _ = history.flush();
                publish(&history, &status);
                published = std::time::Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = history.flush();
                return;
            }
        };
        match command {
            Command::Samples(ts, samples) => {
                let _ = history.record(ts, &samples);
            }
            Command::Event(ts, source, kind, text) => {
                let _ = history.record_event(ts, &source, &kind, &text);
            }
            Command::Query(selector, from, to, step, reply) => {
                let _ = reply.send(history.query(&selector, from, to, step));
            }
            Command::Events(from, to, source, limit, reply) => {
                let _ = reply.send(history.events(from, to, source.as_deref(), limit));
            }
            Command::Stop(done) => {
                let _ = history.flush();
                publish(&history, &status);
                let _ = done.send(());
                return;
            }
        }
        if published.elapsed() >= PUBLISH_EVERY {
            publish(&history, &status);
            published = std::time::Instant::now();
        }
    }
}

/// How often the store's state is copied for health while the recorder is busy.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Copies the store's state where health reads it, logging a change between writing and paused.
fn publish(history: &History, status: &Mutex<RecorderStatus>) {
    let h = history.status();
    let mut s = lock(status);
    let state = if h.paused.is_some() {
        RecorderState::Paused
    } else {
        RecorderState::Ok
    };
    if state != s.state {
        match &h.paused {
            Some(e) => tracing::warn!("{e}"),
            None if s.state == RecorderState::Paused => {
                tracing::info!("history writing resumed")
            }
            None => {}
        }
    }
    s.state = state;
    s.reason = h.paused.as_ref().map(ToString::to_string);
    s.file_bytes = h.file_bytes;
    s.pending_samples = h.pending_samples;
    s.dropped_samples = h.dropped_samples;
}
