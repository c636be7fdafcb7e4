//! Engine comparison on the history workload: the store itself (SQLite through rusqlite, bundled),
//! and the same layout run directly on SQLite and on redb.
//! `cargo bench -p vitals-history --features compare-engines [-- HOURS]`.
//!
//! The layout both run: one journal row per flush (every 10 s), sealed every 250,000 samples or
//! 15 minutes into one compressed value per series, rolled up into one-minute rows every hour.
//! Figures: CPU per simulated minute and per flush, file bytes, query time for 24 h of one series
//! at a 1-minute step, and RSS growth. RSS growth is fair only for the first run in a process
//! (later runs reuse the heap the earlier ones grew): `ENGINES=redb` and the like run one engine.

#[path = "../tests/common/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use vitals_history::codec::{self, Agg, Record};
use vitals_history::{History, Options, Retention, Selector, SeriesKey};
use workload::Workload;

const START: i64 = 1_800_000_000_000;
/// Raw segments are rolled into minute rows once they span this long (as the store does).
const ROLLUP_SPAN: i64 = 6 * 3_600_000;

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One engine's figures for one run.
struct Figures {
    engine: &'static str,
    interval_s: u64,
    simulated_h: f64,
    series: usize,
    cpu_per_min: f64,
    cpu_per_flush_ms: f64,
    file_bytes: u64,
    raw_bytes: u64,
    minute_bytes: u64,
    query_ms: f64,
    rss_growth_kib: i64,
}

trait Engine {
    fn record(&mut self, ts: i64, samples: &[(SeriesKey, f64)]);
    fn flush(&mut self);
    fn query_day(&mut self, key: &SeriesKey, now: i64) -> usize;
    fn sizes(&self) -> (u64, u64, u64);
}

struct Store(History);

impl Engine for Store {
    fn record(&mut self, ts: i64, samples: &[(SeriesKey, f64)]) {
        self.0.record(ts, samples).expect("record");
    }
    fn flush(&mut self) {
        self.0.flush().expect("flush");
    }
    fn query_day(&mut self, key: &SeriesKey, now: i64) -> usize {
        let sel = Selector {
            collector: key.collector.clone(),
            name: key.name.clone(),
            label: key.label.clone(),
        };
        // 1,440 steps are past the 1,000-point limit of one request: two requests of 12 h.
        let mut n = 0;
        for half in [now - 86_400_000, now - 43_200_000] {
            let r = self
                .0
                .query(&sel, half, half + 43_200_000, 60_000)
                .expect("query");
            n += r[0].points.len();
        }
        n
    }
    fn sizes(&self) -> (u64, u64, u64) {
        let s = self.0.status();
        (s.file_bytes, s.tier_bytes[0], s.tier_bytes[1])
    }
}

/// The same layout on SQLite: WAL, synchronous=FULL (a durable commit per flush, as redb's).
struct Sqlite {
    conn: Connection,
    path: std::path::PathBuf,
    sids: BTreeMap<SeriesKey, u32>,
    pending: Vec<Record>,
    journal_samples: usize,
    journal_span: (i64, i64),
    next_seq: i64,
    /// (seq, tier, min_ts, max_ts, rolled, bytes)
    segments: Vec<(i64, u8, i64, i64, bool, u64)>,
}

impl Sqlite {
    fn open(path: &Path) -> Self {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-4096;
             CREATE TABLE journal(seq INTEGER PRIMARY KEY, v BLOB NOT NULL);
             CREATE TABLE raw(seq INTEGER, sid INTEGER, v BLOB NOT NULL, PRIMARY KEY(seq, sid)) WITHOUT ROWID;
             CREATE TABLE minute(seq INTEGER, sid INTEGER, v BLOB NOT NULL, PRIMARY KEY(seq, sid)) WITHOUT ROWID;
             CREATE TABLE segments(seq INTEGER PRIMARY KEY, tier INTEGER, min_ts INTEGER, max_ts INTEGER, rolled INTEGER);",
        )
        .expect("schema");
        Self {
            conn,
            path: path.to_owned(),
            sids: BTreeMap::new(),
            pending: Vec::new(),
            journal_samples: 0,
            journal_span: (i64::MAX, i64::MIN),
            next_seq: 1,
            segments: Vec::new(),
        }
    }

    fn seal(&mut self) {
        let tx = self.conn.transaction().expect("tx");
        let mut by: BTreeMap<u32, Vec<(i64, f64)>> = BTreeMap::new();
        {
            let mut st = tx
                .prepare("SELECT v FROM journal ORDER BY seq")
                .expect("sel");
            let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0)).expect("rows");
            for v in rows {
                for rec in codec::decode_batch(&v.expect("row")).expect("decode") {
                    for (sid, x) in rec.samples {
                        by.entry(sid).or_default().push((rec.ts, x));
                    }
                }
            }
        }
        tx.execute("DELETE FROM journal", []).expect("del");
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut bytes = 0;
        {
            let mut ins = tx
                .prepare("INSERT INTO raw(seq, sid, v) VALUES (?1, ?2, ?3)")
                .expect("ins");
            for (sid, pts) in &mut by {
                pts.sort_by_key(|p| p.0);
                let v = codec::encode_raw(pts).expect("enc");
                bytes += v.len() as u64;
                ins.execute(params![seq, sid, v]).expect("ins");
            }
        }
        let (a, b) = self.journal_span;
        tx.execute(
            "INSERT INTO segments VALUES (?1, 0, ?2, ?3, 0)",
            params![seq, a, b],
        )
        .expect("seg");
        tx.commit().expect("commit");
        self.segments.push((seq, 0, a, b, false, bytes));
        self.journal_samples = 0;
        self.journal_span = (i64::MAX, i64::MIN);
        let unrolled: Vec<_> = self.segments.iter().filter(|s| s.1 == 0 && !s.4).collect();
        let span = unrolled.iter().map(|s| s.3).max().unwrap_or(0)
            - unrolled.iter().map(|s| s.2).min().unwrap_or(0);
        if span >= ROLLUP_SPAN {
            self.rollup();
        }
    }

    fn rollup(&mut self) {
        let sources: Vec<i64> = self
            .segments
            .iter()
            .filter(|s| s.1 == 0 && !s.4)
            .map(|s| s.0)
            .collect();
        let seq = self.next_seq;
        self.next_seq += 1;
        let tx = self.conn.transaction().expect("tx");
        let (mut lo, mut hi, mut bytes) = (i64::MAX, i64::MIN, 0u64);
        {
            let mut get = tx
                .prepare("SELECT v FROM raw WHERE seq = ?1 AND sid = ?2")
                .expect("get");
            let mut ins = tx
                .prepare("INSERT INTO minute(seq, sid, v) VALUES (?1, ?2, ?3)")
                .expect("ins");
            for sid in self.sids.values() {
                let mut buckets: BTreeMap<i64, Agg> = BTreeMap::new();
                for s in &sources {
                    let v: Option<Vec<u8>> = get.query_row(params![s, sid], |r| r.get(0)).ok();
                    for (ts, x) in v
                        .map(|v| codec::decode_raw(&v).expect("dec"))
                        .unwrap_or_default()
                    {
                        let b = ts - ts.rem_euclid(60_000);
                        let a = buckets.entry(b).or_insert(Agg {
                            ts: b,
                            min: f64::INFINITY,
                            avg: 0.0,
                            max: f64::NEG_INFINITY,
                            last: 0.0,
                            count: 0,
                        });
                        a.min = a.min.min(x);
                        a.max = a.max.max(x);
                        a.avg += x;
                        a.last = x;
                        a.count += 1;
                    }
                }
                let rows: Vec<Agg> = buckets
                    .into_values()
                    .map(|mut a| {
                        a.avg /= f64::from(a.count);
                        a
                    })
                    .collect();
                if let (Some(f), Some(l)) = (rows.first(), rows.last()) {
                    lo = lo.min(f.ts);
                    hi = hi.max(l.ts + 59_999);
                }
                let v = codec::encode_aggs(&rows).expect("enc");
                bytes += v.len() as u64;
                ins.execute(params![seq, sid, v]).expect("ins");
            }
        }
        tx.execute("UPDATE segments SET rolled = 1 WHERE tier = 0", [])
            .expect("upd");
        tx.execute(
            "INSERT INTO segments VALUES (?1, 1, ?2, ?3, 0)",
            params![seq, lo, hi],
        )
        .expect("seg");
        tx.commit().expect("commit");
        for s in &mut self.segments {
            if s.1 == 0 {
                s.4 = true;
            }
        }
        self.segments.push((seq, 1, lo, hi, false, bytes));
    }
}

impl Engine for Sqlite {
    fn record(&mut self, ts: i64, samples: &[(SeriesKey, f64)]) {
        let next = self.sids.len() as u32 + 1;
        let mut r = Record {
            ts,
            samples: Vec::with_capacity(samples.len()),
        };
        for (k, v) in samples {
            let sid = match self.sids.get(k) {
                Some(s) => *s,
                None => {
                    let s = next + r.samples.len() as u32;
                    self.sids.insert(k.clone(), s);
                    s
                }
            };
            r.samples.push((sid, *v));
        }
        self.pending.push(r);
    }
    fn flush(&mut self) {
        let n: usize = self.pending.iter().map(|r| r.samples.len()).sum();
        for r in &self.pending {
            self.journal_span.0 = self.journal_span.0.min(r.ts);
            self.journal_span.1 = self.journal_span.1.max(r.ts);
        }
        let v = codec::encode_batch(&self.pending).expect("enc");
        self.conn
            .execute("INSERT INTO journal(v) VALUES (?1)", params![v])
            .expect("journal");
        self.pending.clear();
        self.journal_samples += n;
        if self.journal_samples >= 250_000
            || self.journal_span.1 - self.journal_span.0 >= 15 * 60_000
        {
            self.seal();
        }
    }
    fn query_day(&mut self, key: &SeriesKey, now: i64) -> usize {
        let sid = self.sids[key];
        let from = now - 86_400_000;
        let mut buckets: BTreeMap<i64, (f64, f64, f64, u64)> = BTreeMap::new();
        let mut get_m = self
            .conn
            .prepare_cached("SELECT v FROM minute WHERE seq = ?1 AND sid = ?2")
            .expect("prep");
        for s in self.segments.iter().filter(|s| s.1 == 1 && s.3 >= from) {
            if let Ok(v) = get_m.query_row(params![s.0, sid], |r| r.get::<_, Vec<u8>>(0)) {
                for a in codec::decode_aggs(&v).expect("dec") {
                    let e =
                        buckets
                            .entry(a.ts)
                            .or_insert((f64::INFINITY, 0.0, f64::NEG_INFINITY, 0));
                    e.0 = e.0.min(a.min);
                    e.1 += a.avg * f64::from(a.count);
                    e.2 = e.2.max(a.max);
                    e.3 += u64::from(a.count);
                }
            }
        }
        let mut get_r = self
            .conn
            .prepare_cached("SELECT v FROM raw WHERE seq = ?1 AND sid = ?2")
            .expect("prep");
        for s in self
            .segments
            .iter()
            .filter(|s| s.1 == 0 && !s.4 && s.3 >= from)
        {
            if let Ok(v) = get_r.query_row(params![s.0, sid], |r| r.get::<_, Vec<u8>>(0)) {
                for (ts, x) in codec::decode_raw(&v).expect("dec") {
                    let e = buckets.entry(ts - ts.rem_euclid(60_000)).or_insert((
                        f64::INFINITY,
                        0.0,
                        f64::NEG_INFINITY,
                        0,
                    ));
                    e.0 = e.0.min(x);
                    e.1 += x;
                    e.2 = e.2.max(x);
                    e.3 += 1;
                }
            }
        }
        // The journal (not sealed yet) is read as the store reads it.
        let mut get_j = self
            .conn
            .prepare_cached("SELECT v FROM journal")
            .expect("prep");
        let rows = get_j
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .expect("rows");
        for v in rows {
            for rec in codec::decode_batch(&v.expect("row")).expect("dec") {
                for (s, x) in rec.samples {
                    if s == sid {
                        let e = buckets
                            .entry(rec.ts - rec.ts.rem_euclid(60_000))
                            .or_insert((f64::INFINITY, 0.0, f64::NEG_INFINITY, 0));
                        e.1 += x;
                        e.3 += 1;
                    }
                }
            }
        }
        buckets.len()
    }
    fn sizes(&self) -> (u64, u64, u64) {
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        let file = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let tier = |t| self.segments.iter().filter(|s| s.1 == t).map(|s| s.5).sum();
        (file, tier(0), tier(1))
    }
}

const JOURNAL: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("journal");
const DATA: redb::TableDefinition<'_, (u64, u32), &[u8]> = redb::TableDefinition::new("data");

/// The same layout on redb: a durable (fsynced) commit per flush, a 4 MiB cache.
struct Redb {
    db: redb::Database,
    path: std::path::PathBuf,
    sids: BTreeMap<SeriesKey, u32>,
    pending: Vec<Record>,
    journal_samples: usize,
    journal_span: (i64, i64),
    next_seq: u64,
    /// (seq, tier, min_ts, max_ts, rolled, bytes)
    segments: Vec<(u64, u8, i64, i64, bool, u64)>,
}

impl Redb {
    fn open(path: &Path) -> Self {
        let db = redb::Database::builder()
            .set_cache_size(4 * 1024 * 1024)
            .create(path)
            .expect("open");
        let w = db.begin_write().expect("w");
        w.open_table(JOURNAL).expect("t");
        w.open_table(DATA).expect("t");
        w.commit().expect("c");
        Self {
            db,
            path: path.to_owned(),
            sids: BTreeMap::new(),
            pending: Vec::new(),
            journal_samples: 0,
            journal_span: (i64::MAX, i64::MIN),
            next_seq: 1 << 40,
            segments: Vec::new(),
        }
    }

    fn seal(&mut self) {
        use redb::ReadableTable;
        let w = self.db.begin_write().expect("w");
        let mut by: BTreeMap<u32, Vec<(i64, f64)>> = BTreeMap::new();
        {
            let mut j = w.open_table(JOURNAL).expect("t");
            for row in j.iter().expect("iter") {
                let (_, v) = row.expect("row");
                for rec in codec::decode_batch(v.value()).expect("decode") {
                    for (sid, x) in rec.samples {
                        by.entry(sid).or_default().push((rec.ts, x));
                    }
                }
            }
            j.retain(|_, _| false).expect("del");
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut bytes = 0;
        {
            let mut d = w.open_table(DATA).expect("t");
            for (sid, pts) in &mut by {
                pts.sort_by_key(|p| p.0);
                let v = codec::encode_raw(pts).expect("enc");
                bytes += v.len() as u64;
                d.insert((seq, *sid), v.as_slice()).expect("ins");
            }
        }
        w.commit().expect("commit");
        let (a, b) = self.journal_span;
        self.segments.push((seq, 0, a, b, false, bytes));
        self.journal_samples = 0;
        self.journal_span = (i64::MAX, i64::MIN);
        let unrolled: Vec<_> = self.segments.iter().filter(|s| s.1 == 0 && !s.4).collect();
        let span = unrolled.iter().map(|s| s.3).max().unwrap_or(0)
            - unrolled.iter().map(|s| s.2).min().unwrap_or(0);
        if span >= ROLLUP_SPAN {
            self.rollup();
        }
    }

    fn rollup(&mut self) {
        use redb::ReadableTable;
        let sources: Vec<u64> = self
            .segments
            .iter()
            .filter(|s| s.1 == 0 && !s.4)
            .map(|s| s.0)
            .collect();
        let seq = self.next_seq;
        self.next_seq += 1;
        let w = self.db.begin_write().expect("w");
        let (mut lo, mut hi, mut bytes) = (i64::MAX, i64::MIN, 0u64);
        {
            let mut d = w.open_table(DATA).expect("t");
            for sid in self.sids.values() {
                let mut pts = Vec::new();
                for s in &sources {
                    if let Some(v) = d.get((*s, *sid)).expect("get") {
                        pts.extend(codec::decode_raw(v.value()).expect("dec"));
                    }
                }
                let rows = minute_rows(&pts);
                if let (Some(f), Some(l)) = (rows.first(), rows.last()) {
                    lo = lo.min(f.ts);
                    hi = hi.max(l.ts + 59_999);
                }
                let v = codec::encode_aggs(&rows).expect("enc");
                bytes += v.len() as u64;
                d.insert((seq, *sid), v.as_slice()).expect("ins");
            }
        }
        w.commit().expect("commit");
        for s in &mut self.segments {
            if s.1 == 0 {
                s.4 = true;
            }
        }
        self.segments.push((seq, 1, lo, hi, false, bytes));
    }
}

impl Engine for Redb {
    fn record(&mut self, ts: i64, samples: &[(SeriesKey, f64)]) {
        self.pending.push(to_record(&mut self.sids, ts, samples));
    }
    fn flush(&mut self) {
        let n: usize = self.pending.iter().map(|r| r.samples.len()).sum();
        for r in &self.pending {
            self.journal_span.0 = self.journal_span.0.min(r.ts);
            self.journal_span.1 = self.journal_span.1.max(r.ts);
        }
        let v = codec::encode_batch(&self.pending).expect("enc");
        let w = self.db.begin_write().expect("w");
        w.open_table(JOURNAL)
            .expect("t")
            .insert(self.next_seq, v.as_slice())
            .expect("journal");
        w.commit().expect("commit");
        self.next_seq += 1;
        self.pending.clear();
        self.journal_samples += n;
        if self.journal_samples >= 250_000
            || self.journal_span.1 - self.journal_span.0 >= 15 * 60_000
        {
            self.seal();
        }
    }
    fn query_day(&mut self, key: &SeriesKey, now: i64) -> usize {
        use redb::{ReadableDatabase, ReadableTable};
        let sid = self.sids[key];
        let from = now - 86_400_000;
        let r = self.db.begin_read().expect("r");
        let d = r.open_table(DATA).expect("t");
        let mut aggs = Vec::new();
        let mut pts = Vec::new();
        for s in self.segments.iter().filter(|s| s.3 >= from) {
            if s.1 == 1 {
                if let Some(v) = d.get((s.0, sid)).expect("get") {
                    aggs.extend(codec::decode_aggs(v.value()).expect("dec"));
                }
            } else if !s.4 {
                if let Some(v) = d.get((s.0, sid)).expect("get") {
                    pts.extend(codec::decode_raw(v.value()).expect("dec"));
                }
            }
        }
        let j = r.open_table(JOURNAL).expect("t");
        for row in j.iter().expect("iter") {
            let (_, v) = row.expect("row");
            for rec in codec::decode_batch(v.value()).expect("dec") {
                pts.extend(
                    rec.samples
                        .iter()
                        .filter(|s| s.0 == sid)
                        .map(|s| (rec.ts, s.1)),
                );
            }
        }
        merge_minutes(&aggs, &pts)
    }
    fn sizes(&self) -> (u64, u64, u64) {
        let file = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let tier = |t| self.segments.iter().filter(|s| s.1 == t).map(|s| s.5).sum();
        (file, tier(0), tier(1))
    }
}

/// Series ids for a record, handing out new ones in order.
fn to_record(sids: &mut BTreeMap<SeriesKey, u32>, ts: i64, samples: &[(SeriesKey, f64)]) -> Record {
    let mut r = Record {
        ts,
        samples: Vec::with_capacity(samples.len()),
    };
    for (k, v) in samples {
        let next = sids.len() as u32 + 1;
        let sid = *sids.entry(k.clone()).or_insert(next);
        r.samples.push((sid, *v));
    }
    r
}

/// One-minute rows of raw points.
fn minute_rows(pts: &[(i64, f64)]) -> Vec<Agg> {
    let mut buckets: BTreeMap<i64, Agg> = BTreeMap::new();
    for &(ts, x) in pts {
        let b = ts - ts.rem_euclid(60_000);
        let a = buckets.entry(b).or_insert(Agg {
            ts: b,
            min: f64::INFINITY,
            avg: 0.0,
            max: f64::NEG_INFINITY,
            last: 0.0,
            count: 0,
        });
        a.min = a.min.min(x);
        a.max = a.max.max(x);
        a.avg += x;
        a.last = x;
        a.count += 1;
    }
    buckets
        .into_values()
        .map(|mut a| {
            a.avg /= f64::from(a.count);
            a
        })
        .collect()
}

/// Minute buckets of aggregate rows and raw points together; returns how many.
fn merge_minutes(aggs: &[Agg], pts: &[(i64, f64)]) -> usize {
    let mut buckets: BTreeMap<i64, (f64, f64, f64, u64)> = BTreeMap::new();
    for a in aggs.iter().chain(minute_rows(pts).iter()) {
        let e = buckets
            .entry(a.ts)
            .or_insert((f64::INFINITY, 0.0, f64::NEG_INFINITY, 0));
        e.0 = e.0.min(a.min);
        e.1 += a.avg * f64::from(a.count);
        e.2 = e.2.max(a.max);
        e.3 += u64::from(a.count);
    }
    buckets.len()
}

fn run(
    engine: &'static str,
    interval_s: u64,
    hours: f64,
    containers: usize,
    host: usize,
) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let rss0 = rss_kib("VmRSS:") as i64;
    let mut e: Box<dyn Engine> = match engine {
        "store (sqlite)" => {
            let options = Options {
                flush_interval: Duration::from_secs(3600),
                ..Options::default()
            };
            Box::new(Store(
                History::open_with(dir.path().join("h.sqlite"), Retention::default(), options)
                    .expect("open"),
            ))
        }
        "sqlite" => Box::new(Sqlite::open(&dir.path().join("h.sqlite"))),
        _ => Box::new(Redb::open(&dir.path().join("h.redb"))),
    };
    let per_container = std::env::var("PER_CONTAINER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut w = Workload::with(containers, per_container, host, interval_s as f64, 7);
    let steps = (hours * 3600.0 / interval_s as f64) as u64;
    let per_flush = 10 / interval_s;
    let mut cpu = 0.0;
    let mut flushes = 0u64;
    let mut ts = START;
    for i in 0..steps {
        ts = START + (i * interval_s * 1000) as i64;
        let samples = w.next();
        let c0 = cpu_seconds();
        e.record(ts, samples);
        if (i + 1) % per_flush == 0 {
            e.flush();
            flushes += 1;
        }
        cpu += cpu_seconds() - c0;
    }
    let key = w.samples[0].0.clone();
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let n = e.query_day(&key, ts);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(n > 0);
    }
    times.sort_by(f64::total_cmp);
    let (file_bytes, raw_bytes, minute_bytes) = e.sizes();
    let rss1 = rss_kib("VmRSS:") as i64;
    drop(e);
    Figures {
        engine,
        interval_s,
        simulated_h: hours,
        series: w.samples.len(),
        cpu_per_min: cpu / (hours * 60.0),
        cpu_per_flush_ms: cpu / flushes as f64 * 1000.0,
        file_bytes,
        raw_bytes,
        minute_bytes,
        query_ms: times[times.len() / 2],
        rss_growth_kib: rss1 - rss0,
    }
}

/// `TIER_DAYS=N`: the store alone at a 60 s interval for N simulated days, to measure what the
/// minute and hour tiers cost per day (their rows do not depend on the raw interval much).
/// `PER_CONTAINER=2 HOST_SERIES=30` is the default config's shape with 100 containers.
fn tiers(days: u64, host: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        flush_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let mut h = History::open_with(dir.path().join("h.sqlite"), Retention::default(), options)
        .expect("open");
    let per_container = std::env::var("PER_CONTAINER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut w = Workload::with(100, per_container, host, 60.0, 7);
    for i in 0..days * 1440 {
        h.record(START + i as i64 * 60_000, w.next())
            .expect("record");
        if i % 10 == 9 {
            h.flush().expect("flush");
        }
    }
    let st = h.status();
    let covered = |tier: usize| {
        // Days each tier's segments cover so far, from the data.
        match tier {
            1 => days as f64,
            _ => (days as f64 - 7.0).max(1.0).min(days as f64),
        }
    };
    println!(
        "{} series, {days} days at 60 s: minute tier {:.2} MB ({:.2} MB/day), hour tier {:.2} MB ({} segments, {:.3} MB/day of data rolled), file {:.1} MB",
        w.samples.len(),
        st.tier_bytes[1] as f64 / 1e6,
        st.tier_bytes[1] as f64 / 1e6 / covered(1),
        st.tier_bytes[2] as f64 / 1e6,
        st.segments[2],
        st.tier_bytes[2] as f64 / 1e6 / 7.0,
        st.file_bytes as f64 / 1e6,
    );
    drop(h);
    let t = Instant::now();
    let h = History::open_with(dir.path().join("h.sqlite"), Retention::default(), options)
        .expect("reopen");
    println!(
        "reopen with quick_check of {:.1} MB: {:.0} ms",
        h.status().file_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1000.0
    );
}

fn main() {
    if let Some(days) = std::env::var("TIER_DAYS").ok().and_then(|d| d.parse().ok()) {
        let host = std::env::var("HOST_SERIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        tiers(days, host);
        return;
    }
    // `cargo bench` passes `--bench`; a number argument sets the simulated hours at 5 s.
    let hours: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(24.0);
    let all = ["store (sqlite)", "sqlite", "redb"];
    let only = std::env::var("ENGINES").unwrap_or_default();
    let engines: Vec<&'static str> = all
        .into_iter()
        .filter(|e| only.is_empty() || only.split(',').any(|o| o == *e))
        .collect();
    println!(
        "| engine | interval | simulated | series | CPU-s per min | CPU ms per flush | file MB | raw tier MB | minute tier MB | query 24 h @ 1 min (ms) | RSS growth (MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    // HOST_SERIES: host series beside the 100 containers' 1,000 (default 1,000).
    let host: usize = std::env::var("HOST_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for (interval, h) in [(5, hours), (1, (hours / 12.0).max(1.0))] {
        for &engine in &engines {
            let f = run(engine, interval, h, 100, host);
            println!(
                "| {} | {} s | {} h | {} | {:.4} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} |",
                f.engine,
                f.interval_s,
                f.simulated_h,
                f.series,
                f.cpu_per_min,
                f.cpu_per_flush_ms,
                f.file_bytes as f64 / 1e6,
                f.raw_bytes as f64 / 1e6,
                f.minute_bytes as f64 / 1e6,
                f.query_ms,
                f.rss_growth_kib as f64 / 1024.0,
            );
        }
    }
}
