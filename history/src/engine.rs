//! The SQLite schema the store keeps, opening a store file, and telling corruption from I/O trouble.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::codec::Agg;
use crate::model::{Millis, Tier};

/// The layout version written in `meta`; a store of another version is moved aside.
pub(crate) const FORMAT: i64 = 1;

/// The page cache SQLite may use (KiB); RSS matters more than read speed here.
const CACHE_KIB: i64 = 2048;

/// `meta`: counters and marks. `series`: ids, stored keys and when each last had a sample.
/// `journal`: one row per flush, every series together. `segments`: what each segment holds.
/// `data`: (segment, series) -> that series' points or aggregate rows in the segment.
/// `events`: timestamped events. `data` keeps its rowid: a value of up to ~4 KB then fits in
/// its leaf page, where a WITHOUT ROWID row spills past ~1 KB into an overflow page of its own.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series(sid INTEGER PRIMARY KEY, last_ts INTEGER NOT NULL, key BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS journal(seq INTEGER PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS segments(seq INTEGER PRIMARY KEY, tier INTEGER NOT NULL, rolled INTEGER NOT NULL,
    min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS data(seq INTEGER NOT NULL, sid INTEGER NOT NULL, v BLOB NOT NULL,
    PRIMARY KEY(seq, sid));
CREATE TABLE IF NOT EXISTS events(ts INTEGER NOT NULL, seq INTEGER NOT NULL, source TEXT NOT NULL,
    kind TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY(ts, seq)) WITHOUT ROWID;
";

/// An engine call's failure, or a stored value that does not decode.
#[derive(Debug)]
pub(crate) enum Fault {
    Sql(rusqlite::Error),
    Damaged(String),
}

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Self {
        Fault::Sql(e)
    }
}

impl From<rusqlite::types::FromSqlError> for Fault {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Fault::Damaged(e.to_string())
    }
}

impl From<crate::codec::CodecError> for Fault {
    fn from(e: crate::codec::CodecError) -> Self {
        Fault::Damaged(e.to_string())
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Sql(e) => e.fmt(f),
            Fault::Damaged(m) => f.write_str(m),
        }
    }
}

/// What one segment holds: a tier's data for every series over one stretch of writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegMeta {
    pub tier: Tier,
    /// Its data is in a segment of the next coarser tier too.
    pub rolled: bool,
    pub min_ts: Millis,
    pub max_ts: Millis,
    /// Encoded bytes of all its values.
    pub bytes: u64,
}

impl SegMeta {
    pub fn overlaps(&self, from: Millis, to: Millis) -> bool {
        self.min_ts < to && self.max_ts >= from
    }
}

/// How an engine failure is handled.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The file is damaged: move it aside and start afresh.
    Corrupt(String),
    /// Another process holds it.
    Locked,
    /// The disk or file system refuses (full, read-only, gone): pause and retry later.
    Unavailable(String),
}

pub(crate) fn classify(f: Fault) -> Failure {
    match f {
        Fault::Damaged(m) => Failure::Corrupt(m),
        Fault::Sql(rusqlite::Error::SqliteFailure(e, msg)) => {
            let text = msg.unwrap_or_else(|| e.to_string());
            match e.code {
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Failure::Corrupt(text),
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Failure::Locked,
                _ => Failure::Unavailable(text),
            }
        }
        Fault::Sql(other) => Failure::Unavailable(other.to_string()),
    }
}

/// Opens (or creates) the store file. With `verify`, every page is checked first
/// (`PRAGMA quick_check`). The connection holds the file exclusively, in WAL mode with a
/// durable commit per transaction.
pub(crate) fn open_file(path: &Path, verify: bool, budget: u64) -> Result<Connection, Failure> {
    open(path, verify, budget).map_err(classify)
}

/// The most the write-ahead log keeps between checkpoints: a sixteenth of the budget, between
/// 256 KiB and 4 MiB. Eviction leaves this much of the budget to it.
pub(crate) fn wal_limit(budget: u64) -> u64 {
    (budget / 16).clamp(256 * 1024, 4 * 1024 * 1024)
}

fn open(path: &Path, verify: bool, budget: u64) -> Result<Connection, Fault> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Fresh files only: lets eviction hand pages back to the file system, and 16 KiB pages
    // hold a dozen ~1.4 KB segment values where 4 KiB pages waste a third on two.
    conn.pragma_update(None, "page_size", 16384)?;
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Fault::Damaged(format!("journal mode {mode}")));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let wal = wal_limit(budget);
    conn.pragma_update(None, "journal_size_limit", wal as i64)?;
    conn.pragma_update(None, "wal_autocheckpoint", (wal / 4096) as i64)?;
    if verify {
        let mut check = conn.prepare("PRAGMA quick_check(4)")?;
        let lines: Vec<String> = check
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        drop(check);
        if lines.first().map(String::as_str) != Some("ok") {
            let report = lines.join("; ").replace('\n', " ");
            return Err(Fault::Damaged(crate::model::cut(&report, 512).to_owned()));
        }
    }
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Renames a damaged store aside, with its WAL: `<file>.corrupt-<unix seconds>` (a counter if taken).
pub(crate) fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let with = |p: &Path, suffix: &str| {
        let mut name = p.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let mut n = 0;
    loop {
        let suffix = if n == 0 {
            format!(".corrupt-{secs}")
        } else {
            format!(".corrupt-{secs}-{n}")
        };
        let target = with(path, &suffix);
        if !target.exists() {
            std::fs::rename(path, &target)?;
            for side in ["-wal", "-shm"] {
                let from = with(path, side);
                if from.exists() {
                    std::fs::rename(&from, with(&target, side))?;
                }
            }
            return Ok(target);
        }
        n += 1;
    }
}

/// The store file's bytes on disk, its write-ahead log included.
pub(crate) fn file_bytes(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_owned(), PathBuf::from(wal)]
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// Folds samples or aggregate rows into one bucket's summary.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acc {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
    pub last: f64,
    /// (timestamp, write order) of `last`: the latest wins.
    pub last_at: (Millis, u64),
}

impl Acc {
    pub fn new() -> Self {
        Self {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            count: 0,
            last: f64::NAN,
            last_at: (Millis::MIN, 0),
        }
    }

    pub fn add_sample(&mut self, ts: Millis, order: u64, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
        if (ts, order) >= self.last_at {
            self.last = v;
            self.last_at = (ts, order);
        }
    }

    pub fn add_agg(&mut self, row: &Agg, order: u64) {
        if row.count == 0 {
            return;
        }
        self.min = self.min.min(row.min);
        self.max = self.max.max(row.max);
        self.sum += row.avg * f64::from(row.count);
        self.count += u64::from(row.count);
        if (row.ts, order) >= self.last_at {
            self.last = row.last;
            self.last_at = (row.ts, order);
        }
    }

    /// The mean, kept within [min, max]: the sum of equal values divided by their count can
    /// round just outside them (three times 53.522194 averages to 53.52219399999999).
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            (self.sum / self.count as f64).max(self.min).min(self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards min <= avg <= max when rounding would put the mean of equal values below them.
    #[test]
    fn the_mean_of_equal_values_is_that_value() {
        let mut acc = Acc::new();
        for i in 0..3 {
            acc.add_sample(i, 0, 53.522194);
        }
        assert_eq!(acc.avg(), 53.522194);
        assert!(acc.min <= acc.avg() && acc.avg() <= acc.max);
    }
}
