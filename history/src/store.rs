//! The store handle: opening, buffering samples and events in memory, and flushing them to disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::codec::{self, Record};
use crate::engine::{self, Failure, Fault, SegMeta};
use crate::error::{CorruptStore, OpenError, WriteError};
use crate::model::{
    cut, Event, Millis, Options, Retention, SeriesKey, Tier, MAX_EVENT_TAG_BYTES,
    MAX_EVENT_TEXT_BYTES,
};

/// A journal row's summary, kept in memory so sealing decisions need no read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JournalMeta {
    pub min_ts: Millis,
    pub max_ts: Millis,
    pub samples: u64,
}

/// A series id known to this process and the seal generation it last had a sample in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Known {
    pub sid: u32,
    pub generation: u64,
}

/// What the store is doing, for health reporting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Why writing is paused, if it is.
    pub paused: Option<WriteError>,
    /// The corrupt store this one replaced when it was opened or while it ran, if any.
    pub recovered: Option<CorruptStore>,
    /// Samples buffered in memory, not yet on disk.
    pub pending_samples: usize,
    /// Samples dropped because the in-memory bound was reached while writing was paused.
    pub dropped_samples: u64,
    /// Samples refused: a non-finite value or a key part too long.
    pub rejected_samples: u64,
    /// Events dropped because the in-memory bound was reached while writing was paused.
    pub dropped_events: u64,
    /// The store file's size.
    pub file_bytes: u64,
    /// Segments on disk per tier (raw, minute, hour).
    pub segments: [usize; 3],
    /// Series ids held in memory (those recorded since the last seal or two).
    pub series_in_memory: usize,
    /// Encoded bytes of the segments per tier (raw, minute, hour), before engine overhead.
    pub tier_bytes: [u64; 3],
}

/// A durable, tiered history of series and events in one SQLite file.
///
/// Samples are buffered in memory and written every [`Options::flush_interval`] as one journal
/// row; journal rows are sealed into per-series compressed segments, which are rolled up into
/// one-minute and one-hour aggregates as they age, expired by [`Retention`], and evicted oldest
/// first when the file passes the byte budget.
pub struct History {
    pub(crate) path: PathBuf,
    pub(crate) retention: Retention,
    pub(crate) options: Options,
    pub(crate) db: Option<Connection>,
    pub(crate) segments: BTreeMap<u64, SegMeta>,
    pub(crate) journal: BTreeMap<u64, JournalMeta>,
    pub(crate) next_seq: u64,
    pub(crate) next_sid: u32,
    /// The timestamp of the latest `record` call: retention counts back from it.
    pub(crate) now: Millis,
    pub(crate) events_on_disk: u64,
    pub(crate) known: HashMap<SeriesKey, Known>,
    pub(crate) generation: u64,
    /// Series ids handed out but not yet written, with their stored keys.
    pub(crate) new_series: BTreeMap<u32, (Millis, Vec<u8>)>,
    pub(crate) pending: Vec<Record>,
    pub(crate) pending_samples: usize,
    pub(crate) pending_events: Vec<Event>,
    pub(crate) last_flush: Instant,
    pub(crate) paused: Option<WriteError>,
    pub(crate) recovered: Option<CorruptStore>,
    pub(crate) dropped_samples: u64,
    pub(crate) rejected_samples: u64,
    pub(crate) dropped_events: u64,
}

impl History {
    /// Opens the store at `path` (created with its folder when missing) with default [`Options`].
    ///
    /// # Errors
    /// See [`History::open_with`].
    pub fn open(path: impl AsRef<Path>, retention: Retention) -> Result<Self, OpenError> {
        Self::open_with(path, retention, Options::default())
    }

    /// Opens the store at `path`. A corrupt or truncated file is renamed aside and a fresh store
    /// starts ([`History::recovered`] says so); a file that cannot be written (disk full,
    /// read-only) leaves the store paused, retrying at every flush.
    ///
    /// # Errors
    /// Out-of-range settings, a store held by another process, or a corrupt file that cannot be
    /// renamed.
    pub fn open_with(
        path: impl AsRef<Path>,
        retention: Retention,
        options: Options,
    ) -> Result<Self, OpenError> {
        validate(&retention, &options)?;
        let mut history = Self {
            path: path.as_ref().to_owned(),
            retention,
            options,
            db: None,
            segments: BTreeMap::new(),
            journal: BTreeMap::new(),
            next_seq: 1,
            next_sid: 1,
            now: Millis::MIN,
            events_on_disk: 0,
            known: HashMap::new(),
            generation: 0,
            new_series: BTreeMap::new(),
            pending: Vec::new(),
            pending_samples: 0,
            pending_events: Vec::new(),
            last_flush: Instant::now(),
            paused: None,
            recovered: None,
            dropped_samples: 0,
            rejected_samples: 0,
            dropped_events: 0,
        };
        if let Some(dir) = history.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                history.pause(e.to_string());
                return Ok(history);
            }
        }
        match history.connect(true) {
            Ok(()) => Ok(history),
            Err(Failure::Locked) => Err(OpenError::Locked {
                path: history.path.clone(),
            }),
            Err(Failure::Corrupt(reason)) => match history.start_afresh(&reason) {
                Ok(()) => Ok(history),
                Err(source) => Err(OpenError::MoveAside {
                    path: history.path.clone(),
                    reason,
                    source,
                }),
            },
            Err(Failure::Unavailable(reason)) => {
                history.pause(reason);
                Ok(history)
            }
        }
    }

    /// The corrupt store this one replaced, if it replaced one.
    pub fn recovered(&self) -> Option<&CorruptStore> {
        self.recovered.as_ref()
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers one collect's samples taken at `ts` (milliseconds since the Unix epoch) and
    /// flushes when the flush interval has passed. Non-finite values and keys with an over-long
    /// or NUL-holding part are refused and counted. Timestamps may go back (a clock set back):
    /// they are stored as given, in timestamp order within each series.
    ///
    /// # Errors
    /// The flush this call made failed; the samples stay buffered (see [`History::flush`]).
    pub fn record(&mut self, ts: Millis, samples: &[(SeriesKey, f64)]) -> Result<(), WriteError> {
        let mut record = Record {
            ts,
            samples: Vec::with_capacity(samples.len()),
        };
        for (key, value) in samples {
            match (value.is_finite(), self.series_id(key, ts)) {
                (true, Some(sid)) => record.samples.push((sid, *value)),
                _ => self.rejected_samples += 1,
            }
        }
        self.now = ts;
        self.pending_samples += record.samples.len();
        self.pending.push(record);
        self.bound_pending();
        self.flush_if_due()
    }

    /// Buffers an event (a collector failing, a container dying); written with the next flush
    /// and kept under the hour tier's retention. Over-long parts are cut.
    ///
    /// # Errors
    /// The flush this call made failed; the event stays buffered.
    pub fn record_event(
        &mut self,
        ts: Millis,
        source: &str,
        kind: &str,
        text: &str,
    ) -> Result<(), WriteError> {
        let clean = |s: &str, max| cut(s, max).replace('\0', " ");
        self.pending_events.push(Event {
            ts,
            source: clean(source, MAX_EVENT_TAG_BYTES),
            kind: clean(kind, MAX_EVENT_TAG_BYTES),
            text: cut(text, MAX_EVENT_TEXT_BYTES).to_owned(),
        });
        if self.pending_events.len() > self.options.max_pending_events {
            self.pending_events.remove(0);
            self.dropped_events += 1;
        }
        self.flush_if_due()
    }

    fn flush_if_due(&mut self) -> Result<(), WriteError> {
        if self.last_flush.elapsed() >= self.options.flush_interval {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Writes what is buffered as one durable transaction, then seals, rolls up, expires and
    /// evicts as due. A store that could not be written is reopened first.
    ///
    /// # Errors
    /// The disk refused: writing is paused, the buffer is kept (up to
    /// [`Options::max_pending_samples`]) and the next flush retries.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.last_flush = Instant::now();
        if self.db.is_none() {
            if let Err(f) = self.connect(false) {
                return Err(self.fail(f));
            }
        }
        if let Err(e) = self.write_pending() {
            return Err(self.fail(engine::classify(e)));
        }
        self.paused = None;
        if let Err(e) = self.maintain() {
            return Err(self.fail(engine::classify(e)));
        }
        Ok(())
    }

    /// What the store is doing.
    pub fn status(&self) -> Status {
        let mut segments = [0; 3];
        let mut tier_bytes = [0; 3];
        for s in self.segments.values() {
            segments[usize::from(s.tier.code())] += 1;
            tier_bytes[usize::from(s.tier.code())] += s.bytes;
        }
        Status {
            paused: self.paused.clone(),
            recovered: self.recovered.clone(),
            pending_samples: self.pending_samples,
            dropped_samples: self.dropped_samples,
            rejected_samples: self.rejected_samples,
            dropped_events: self.dropped_events,
            file_bytes: engine::file_bytes(&self.path),
            segments,
            series_in_memory: self.known.len(),
            tier_bytes,
        }
    }

    /// The id of `key`, handing out a new one (written with the next flush) if the store has none.
    fn series_id(&mut self, key: &SeriesKey, ts: Millis) -> Option<u32> {
        if let Some(k) = self.known.get_mut(key) {
            k.generation = self.generation;
            return Some(k.sid);
        }
        let stored = key.encode()?;
        let sid = match self.lookup_sid(&stored) {
            Some(sid) => sid,
            None => {
                let sid = self.next_sid;
                self.next_sid = self.next_sid.checked_add(1)?;
                self.new_series.insert(sid, (ts, stored));
                sid
            }
        };
        self.known.insert(
            key.clone(),
            Known {
                sid,
                generation: self.generation,
            },
        );
        Some(sid)
    }

    fn lookup_sid(&self, stored: &[u8]) -> Option<u32> {
        self.db
            .as_ref()?
            .prepare_cached("SELECT sid FROM series WHERE key = ?1")
            .ok()?
            .query_row([stored], |r| r.get(0))
            .optional()
            .ok()?
    }

    fn bound_pending(&mut self) {
        let mut drop = 0;
        let mut excess = self
            .pending_samples
            .saturating_sub(self.options.max_pending_samples);
        while excess > 0 && drop < self.pending.len() {
            let n = self.pending[drop].samples.len();
            excess = excess.saturating_sub(n);
            self.pending_samples -= n;
            self.dropped_samples += n as u64;
            drop += 1;
        }
        self.pending.drain(..drop);
    }

    fn write_pending(&mut self) -> Result<(), Fault> {
        if self.pending.is_empty() && self.pending_events.is_empty() && self.new_series.is_empty() {
            return Ok(());
        }
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let txn = Transaction::new_unchecked(db, TransactionBehavior::Immediate)?;
        let mut journal_meta = None;
        let mut seq = self.next_seq;
        {
            let mut series = txn.prepare_cached(
                "INSERT OR REPLACE INTO series(sid, last_ts, key) VALUES (?1, ?2, ?3)",
            )?;
            for (sid, (ts, stored)) in &self.new_series {
                series.execute(params![sid, ts, stored])?;
            }
            let samples: usize = self.pending.iter().map(|r| r.samples.len()).sum();
            if samples > 0 {
                let bytes = codec::encode_batch(&self.pending)?;
                txn.prepare_cached("INSERT INTO journal(seq, v) VALUES (?1, ?2)")?
                    .execute(params![seq as i64, bytes])?;
                let min_ts = self.pending.iter().map(|r| r.ts).min().unwrap_or(self.now);
                let max_ts = self.pending.iter().map(|r| r.ts).max().unwrap_or(self.now);
                journal_meta = Some((
                    seq,
                    JournalMeta {
                        min_ts,
                        max_ts,
                        samples: samples as u64,
                    },
                ));
                seq += 1;
            }
            let mut events = txn.prepare_cached(
                "INSERT INTO events(ts, seq, source, kind, text) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in &self.pending_events {
                events.execute(params![e.ts, seq as i64, e.source, e.kind, e.text])?;
                seq += 1;
            }
            let mut meta =
                txn.prepare_cached("INSERT OR REPLACE INTO meta(name, value) VALUES (?1, ?2)")?;
            meta.execute(params!["next_seq", seq as i64])?;
            meta.execute(params!["next_sid", i64::from(self.next_sid)])?;
            meta.execute(params!["now", self.now])?;
            meta.execute(params![
                "events",
                (self.events_on_disk + self.pending_events.len() as u64) as i64
            ])?;
        }
        txn.commit()?;
        self.next_seq = seq;
        self.events_on_disk += self.pending_events.len() as u64;
        if let Some((seq, m)) = journal_meta {
            self.journal.insert(seq, m);
        }
        self.new_series.clear();
        self.pending.clear();
        self.pending_samples = 0;
        self.pending_events.clear();
        Ok(())
    }

    /// Opens the file and loads its marks; `verify` checks every page first.
    pub(crate) fn connect(&mut self, verify: bool) -> Result<(), Failure> {
        let db = engine::open_file(&self.path, verify, self.retention.budget_bytes)?;
        self.load(&db).map_err(engine::classify)?;
        self.db = Some(db);
        Ok(())
    }

    fn load(&mut self, db: &Connection) -> Result<(), Fault> {
        let txn = Transaction::new_unchecked(db, TransactionBehavior::Immediate)?;
        {
            let get = |name: &str| -> Result<Option<i64>, Fault> {
                Ok(txn
                    .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                    .optional()?)
            };
            match get("format")? {
                None => {
                    txn.execute(
                        "INSERT INTO meta(name, value) VALUES ('format', ?1)",
                        [engine::FORMAT],
                    )?;
                }
                Some(engine::FORMAT) => {}
                Some(other) => {
                    return Err(Fault::Damaged(format!(
                        "unknown history layout version {other}"
                    )))
                }
            }
            self.next_seq = self
                .next_seq
                .max(get("next_seq")?.unwrap_or(1).max(1) as u64);
            let sid = u32::try_from(get("next_sid")?.unwrap_or(1)).unwrap_or(u32::MAX);
            self.next_sid = self.next_sid.max(sid);
            if let Some(now) = get("now")? {
                self.now = self.now.max(now);
            }
            self.events_on_disk = get("events")?.unwrap_or(0).max(0) as u64;
            self.segments.clear();
            let mut st =
                txn.prepare("SELECT seq, tier, rolled, min_ts, max_ts, bytes FROM segments")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let tier = Tier::from_code(r.get(1)?)
                    .ok_or_else(|| Fault::Damaged("unknown tier in a segment record".into()))?;
                let seq: i64 = r.get(0)?;
                let bytes: i64 = r.get(5)?;
                self.segments.insert(
                    seq as u64,
                    SegMeta {
                        tier,
                        rolled: r.get(2)?,
                        min_ts: r.get(3)?,
                        max_ts: r.get(4)?,
                        bytes: bytes.max(0) as u64,
                    },
                );
            }
            self.journal.clear();
            let mut st = txn.prepare("SELECT seq, v FROM journal")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                let records = codec::decode_batch(r.get_ref(1)?.as_blob()?)?;
                let ts = records.iter().map(|r| r.ts);
                self.journal.insert(
                    seq as u64,
                    JournalMeta {
                        min_ts: ts.clone().min().unwrap_or(0),
                        max_ts: ts.max().unwrap_or(0),
                        samples: records.iter().map(|r| r.samples.len() as u64).sum(),
                    },
                );
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Moves the damaged file aside and starts an empty store; buffered samples and the series
    /// this process knows are written to the new one.
    pub(crate) fn start_afresh(&mut self, reason: &str) -> std::io::Result<()> {
        self.db = None;
        let moved_to = engine::move_aside(&self.path)?;
        tracing::error!(path = %self.path.display(), moved_to = %moved_to.display(), reason, "history store corrupt; starting a fresh one");
        self.recovered = Some(CorruptStore {
            moved_to,
            reason: reason.to_owned(),
        });
        self.segments.clear();
        self.journal.clear();
        self.events_on_disk = 0;
        for (key, known) in &self.known {
            if let Some(stored) = key.encode() {
                self.new_series.insert(known.sid, (self.now, stored));
            }
        }
        if let Err(f) = self.connect(false) {
            let reason = match f {
                Failure::Corrupt(r) | Failure::Unavailable(r) => r,
                Failure::Locked => "locked".into(),
            };
            self.pause(reason);
        }
        Ok(())
    }

    fn pause(&mut self, reason: String) {
        if self.paused.is_none() {
            tracing::warn!(path = %self.path.display(), %reason, "history writing paused");
        }
        self.paused = Some(WriteError::Unavailable {
            path: self.path.clone(),
            reason,
        });
    }

    /// Handles an engine failure mid-run: damage starts a fresh store, anything else pauses
    /// writing and drops the handle so the next flush reopens the file.
    fn fail(&mut self, failure: Failure) -> WriteError {
        match failure {
            Failure::Corrupt(reason) => {
                if let Err(e) = self.start_afresh(&reason) {
                    self.pause(format!("corrupt ({reason}) and not movable: {e}"));
                }
            }
            Failure::Locked => self.pause("in use by another process".into()),
            Failure::Unavailable(reason) => {
                self.db = None;
                self.pause(reason);
            }
        }
        self.paused.clone().unwrap_or(WriteError::Unavailable {
            path: self.path.clone(),
            reason: "store replaced".into(),
        })
    }
}

impl Drop for History {
    /// A clean shutdown keeps what is buffered (a kill loses at most one flush interval).
    fn drop(&mut self) {
        if !self.pending.is_empty() || !self.pending_events.is_empty() {
            if let Err(e) = self.flush() {
                tracing::warn!(%e, "history buffer not written at shutdown");
            }
        }
    }
}

fn validate(r: &Retention, o: &Options) -> Result<(), OpenError> {
    let bad = |m: &str| Err(OpenError::Invalid(m.to_owned()));
    if r.raw < Duration::from_secs(60) {
        return bad("raw retention must be at least 1 minute");
    }
    if r.minute < r.raw || r.hour < r.minute {
        return bad("each tier must keep at least as long as the finer one");
    }
    if r.budget_bytes < 1024 * 1024 {
        return bad("the disk budget must be at least 1 MiB");
    }
    if o.seal_samples == 0 || o.max_pending_samples == 0 {
        return bad("seal_samples and max_pending_samples must be positive");
    }
    Ok(())
}
