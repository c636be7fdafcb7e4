//! Aging the data: sealing journal rows into segments, rolling segments up into coarser tiers,
//! expiring by retention and evicting down to the byte budget.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::codec::{self, Agg};
use crate::engine::{self, Acc, Fault, SegMeta};
use crate::model::{Millis, Tier};
use crate::store::History;

/// A rollup into the next tier starts once the unrolled segments of a tier span this long
/// (long enough that each series' rows compress well: 360 minute rows, 168 hour rows)…
fn rollup_span(from: Tier) -> Millis {
    match from {
        Tier::Raw => 6 * 3_600_000,
        Tier::Minute | Tier::Hour => 7 * 24 * 3_600_000,
    }
}
/// …or there are this many of them.
const ROLLUP_MAX_SEGMENTS: usize = 64;

/// Pages in use may reach this share of the budget before eviction starts (the write-ahead log
/// and the next seal need room).
const BUDGET_SHARE: f64 = 0.85;

impl History {
    /// Seals, rolls up, expires and evicts, each only when due.
    pub(crate) fn maintain(&mut self) -> Result<(), Fault> {
        let mut changed = false;
        if self.seal_due() {
            self.seal()?;
            changed = true;
        }
        for tier in [Tier::Raw, Tier::Minute] {
            if self.rollup_due(tier) {
                self.rollup(tier)?;
                changed = true;
            }
        }
        if changed {
            self.expire()?;
            self.evict_to_budget()?;
        }
        Ok(())
    }

    fn seal_due(&self) -> bool {
        let samples: u64 = self.journal.values().map(|j| j.samples).sum();
        let min = self.journal.values().map(|j| j.min_ts).min();
        let max = self.journal.values().map(|j| j.max_ts).max();
        let span = match (min, max) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        samples >= self.options.seal_samples as u64
            || (samples > 0 && span >= self.options.seal_span.as_millis() as Millis)
    }

    /// Moves every journal row into one raw segment: one value per series, points in time order.
    pub(crate) fn seal(&mut self) -> Result<(), Fault> {
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let txn = Transaction::new_unchecked(db, TransactionBehavior::Immediate)?;
        let mut by_series: BTreeMap<u32, Vec<(Millis, f64)>> = BTreeMap::new();
        {
            let mut st = txn.prepare_cached("SELECT v FROM journal ORDER BY seq")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                for record in codec::decode_batch(r.get_ref(0)?.as_blob()?)? {
                    for (sid, value) in record.samples {
                        by_series.entry(sid).or_default().push((record.ts, value));
                    }
                }
            }
        }
        txn.execute("DELETE FROM journal", [])?;
        let seq = self.next_seq;
        let mut meta = SegMeta {
            tier: Tier::Raw,
            rolled: false,
            min_ts: Millis::MAX,
            max_ts: Millis::MIN,
            bytes: 0,
        };
        {
            let mut insert =
                txn.prepare_cached("INSERT INTO data(seq, sid, v) VALUES (?1, ?2, ?3)")?;
            let mut seen = txn.prepare_cached("UPDATE series SET last_ts = ?2 WHERE sid = ?1")?;
            for (sid, points) in &mut by_series {
                // Stable: samples of one timestamp keep their arrival order.
                points.sort_by_key(|p| p.0);
                let (first, last) = (points[0].0, points[points.len() - 1].0);
                meta.min_ts = meta.min_ts.min(first);
                meta.max_ts = meta.max_ts.max(last);
                let bytes = codec::encode_raw(points)?;
                meta.bytes += bytes.len() as u64;
                insert.execute(params![seq as i64, sid, bytes])?;
                seen.execute(params![sid, last])?;
            }
        }
        if !by_series.is_empty() {
            insert_segment(&txn, seq, &meta)?;
        }
        set_meta(&txn, "next_seq", (seq + 1) as i64)?;
        txn.commit()?;
        self.next_seq = seq + 1;
        self.journal.clear();
        if !by_series.is_empty() {
            self.segments.insert(seq, meta);
        }
        // Forget the ids of series that had no sample for a whole seal (gone containers); the
        // store still has them if they come back.
        let keep_from = self.generation;
        self.known.retain(|_, k| k.generation >= keep_from);
        self.generation += 1;
        Ok(())
    }

    fn unrolled(&self, tier: Tier) -> Vec<(u64, SegMeta)> {
        self.segments
            .iter()
            .filter(|(_, m)| m.tier == tier && !m.rolled)
            .map(|(s, m)| (*s, *m))
            .collect()
    }

    fn rollup_due(&self, tier: Tier) -> bool {
        let segs = self.unrolled(tier);
        let min = segs.iter().map(|s| s.1.min_ts).min();
        let max = segs.iter().map(|s| s.1.max_ts).max();
        match (min, max) {
            (Some(a), Some(b)) => {
                b.saturating_sub(a) >= rollup_span(tier) || segs.len() >= ROLLUP_MAX_SEGMENTS
            }
            _ => false,
        }
    }

    /// Summarises every unrolled segment of `from` into one segment of the next tier, series by
    /// series, and marks the sources rolled (they stay until retention or the budget takes them).
    pub(crate) fn rollup(&mut self, from: Tier) -> Result<(), Fault> {
        let Some(to) = from.coarser() else {
            return Ok(());
        };
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let sources = self.unrolled(from);
        let width = to.bucket_millis();
        let seq = self.next_seq;
        let mut meta = SegMeta {
            tier: to,
            rolled: false,
            min_ts: Millis::MAX,
            max_ts: Millis::MIN,
            bytes: 0,
        };
        let txn = Transaction::new_unchecked(db, TransactionBehavior::Immediate)?;
        {
            let mut sids = BTreeSet::new();
            let mut list = txn.prepare_cached("SELECT sid FROM data WHERE seq = ?1")?;
            for (s, _) in &sources {
                let mut rows = list.query([*s as i64])?;
                while let Some(r) = rows.next()? {
                    sids.insert(r.get::<_, u32>(0)?);
                }
            }
            let mut get = txn.prepare_cached("SELECT v FROM data WHERE seq = ?1 AND sid = ?2")?;
            let mut insert =
                txn.prepare_cached("INSERT INTO data(seq, sid, v) VALUES (?1, ?2, ?3)")?;
            for sid in sids {
                let mut buckets: BTreeMap<Millis, Acc> = BTreeMap::new();
                for (s, _) in &sources {
                    let v: Option<Vec<u8>> = get
                        .query_row(params![*s as i64, sid], |r| r.get(0))
                        .optional()?;
                    if let Some(v) = v {
                        fold(from, &v, *s, width, &mut buckets)?;
                    }
                }
                let rows: Vec<Agg> = buckets
                    .into_iter()
                    .map(|(ts, a)| Agg {
                        ts,
                        min: a.min,
                        avg: a.avg(),
                        max: a.max,
                        last: a.last,
                        count: u32::try_from(a.count).unwrap_or(u32::MAX),
                    })
                    .collect();
                let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                    continue;
                };
                meta.min_ts = meta.min_ts.min(first.ts);
                meta.max_ts = meta.max_ts.max(last.ts + width - 1);
                let bytes = codec::encode_aggs(&rows)?;
                meta.bytes += bytes.len() as u64;
                insert.execute(params![seq as i64, sid, bytes])?;
            }
            let mut rolled = txn.prepare_cached("UPDATE segments SET rolled = 1 WHERE seq = ?1")?;
            for (s, _) in &sources {
                rolled.execute([*s as i64])?;
            }
            if meta.bytes > 0 {
                insert_segment(&txn, seq, &meta)?;
            }
            set_meta(&txn, "next_seq", (seq + 1) as i64)?;
        }
        txn.commit()?;
        self.next_seq = seq + 1;
        for (s, _) in &sources {
            if let Some(m) = self.segments.get_mut(s) {
                m.rolled = true;
            }
        }
        if meta.bytes > 0 {
            self.segments.insert(seq, meta);
        }
        Ok(())
    }

    /// Deletes what retention no longer covers: rolled segments older than their tier keeps,
    /// hour segments and events older than a year (by default), the oldest events past
    /// [`crate::Options::max_events`], and series with no data left.
    pub(crate) fn expire(&mut self) -> Result<(), Fault> {
        let victims: Vec<u64> = self
            .segments
            .iter()
            .filter(|(_, m)| {
                let cutoff = self.now.saturating_sub(self.retention.of(m.tier));
                m.max_ts < cutoff && (m.rolled || m.tier == Tier::Hour)
            })
            .map(|(s, _)| *s)
            .collect();
        let event_cutoff = self.now.saturating_sub(self.retention.of(Tier::Hour));
        let live: BTreeSet<u32> = self.known.values().map(|k| k.sid).collect();
        let oldest = self
            .segments
            .iter()
            .filter(|(s, _)| !victims.contains(s))
            .map(|(_, m)| m.min_ts)
            .chain(self.journal.values().map(|j| j.min_ts))
            .min()
            .unwrap_or(self.now);
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let txn = Transaction::new_unchecked(db, TransactionBehavior::Immediate)?;
        delete_segments(&txn, &victims)?;
        txn.execute("DELETE FROM events WHERE ts < ?1", [event_cutoff])?;
        let over = count(&txn, "events")?.saturating_sub(self.options.max_events);
        if over > 0 {
            txn.execute(
                "DELETE FROM events WHERE (ts, seq) IN (SELECT ts, seq FROM events ORDER BY ts, seq LIMIT ?1)",
                [over as i64],
            )?;
        }
        let gone = drop_series_before(&txn, oldest, &live)?;
        let events_left = count(&txn, "events")?;
        set_meta(&txn, "events", events_left as i64)?;
        txn.commit()?;
        self.events_on_disk = events_left;
        for s in &victims {
            self.segments.remove(s);
        }
        self.known.retain(|_, k| !gone.contains(&k.sid));
        Ok(())
    }

    /// Evicts segments until the pages in use fit [`BUDGET_SHARE`] of the budget less the
    /// write-ahead log's share: first the
    /// oldest minute segments already rolled into hours, then the oldest raw segments already
    /// rolled into minutes, then the oldest hour segments; then hands freed pages back to the
    /// file system.
    pub(crate) fn evict_to_budget(&mut self) -> Result<(), Fault> {
        let budget = self.retention.budget_bytes;
        let target =
            ((budget as f64 * BUDGET_SHARE) as u64).saturating_sub(engine::wal_limit(budget));
        for _ in 0..4 {
            let Some(db) = self.db.as_ref() else {
                return Ok(());
            };
            let used = used_bytes(db)?;
            if used <= target {
                break;
            }
            if !self.evict(used - target)? {
                // Nothing has a coarser copy yet: make one early, then evict again.
                match [Tier::Minute, Tier::Raw]
                    .into_iter()
                    .find(|t| !self.unrolled(*t).is_empty())
                {
                    Some(tier) => self.rollup(tier)?,
                    None => {
                        tracing::warn!(
                            used,
                            target,
                            "history over its disk budget with nothing evictable"
                        );
                        break;
                    }
                }
            }
        }
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        if engine::file_bytes(&self.path) > target {
            // Each step of the pragma frees one page: run it to the end.
            let mut vacuum = db.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = vacuum.query([])?;
            while rows.next()?.is_some() {}
            drop(rows);
            db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }

    /// Deletes about `need` bytes of segments in eviction order; false if none could go.
    fn evict(&mut self, mut need: u64) -> Result<bool, Fault> {
        let order = |m: &SegMeta| match (m.tier, m.rolled) {
            (Tier::Minute, true) => Some(0),
            (Tier::Raw, true) => Some(1),
            (Tier::Hour, _) => Some(2),
            _ => None,
        };
        let mut candidates: Vec<(u8, u64, SegMeta)> = self
            .segments
            .iter()
            .filter_map(|(s, m)| order(m).map(|o| (o, *s, *m)))
            .collect();
        candidates.sort_by_key(|c| (c.0, c.1));
        let mut victims = Vec::new();
        for (_, s, m) in candidates {
            if need == 0 {
                break;
            }
            victims.push(s);
            need = need.saturating_sub(m.bytes.max(1));
        }
        let Some(db) = self.db.as_ref() else {
            return Ok(false);
        };
        if victims.is_empty() {
            return Ok(false);
        }
        let txn = Transaction::new_unchecked(db, TransactionBehavior::Immediate)?;
        delete_segments(&txn, &victims)?;
        txn.commit()?;
        for s in &victims {
            self.segments.remove(s);
        }
        Ok(true)
    }
}

/// Folds one stored value (raw points or aggregate rows) into buckets of `width`.
fn fold(
    tier: Tier,
    bytes: &[u8],
    order: u64,
    width: Millis,
    buckets: &mut BTreeMap<Millis, Acc>,
) -> Result<(), Fault> {
    let bucket = |ts: Millis| ts - ts.rem_euclid(width);
    if tier == Tier::Raw {
        for (i, (ts, v)) in codec::decode_raw(bytes)?.into_iter().enumerate() {
            buckets
                .entry(bucket(ts))
                .or_insert_with(Acc::new)
                .add_sample(ts, (order << 24) + i as u64, v);
        }
    } else {
        for row in codec::decode_aggs(bytes)? {
            buckets
                .entry(bucket(row.ts))
                .or_insert_with(Acc::new)
                .add_agg(&row, order);
        }
    }
    Ok(())
}

fn insert_segment(txn: &Transaction<'_>, seq: u64, m: &SegMeta) -> Result<(), Fault> {
    txn.prepare_cached(
        "INSERT INTO segments(seq, tier, rolled, min_ts, max_ts, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        seq as i64,
        m.tier.code(),
        m.rolled,
        m.min_ts,
        m.max_ts,
        m.bytes as i64
    ])?;
    Ok(())
}

fn set_meta(txn: &Transaction<'_>, name: &str, value: i64) -> Result<(), Fault> {
    txn.prepare_cached("INSERT OR REPLACE INTO meta(name, value) VALUES (?1, ?2)")?
        .execute(params![name, value])?;
    Ok(())
}

fn count(txn: &Transaction<'_>, table: &str) -> Result<u64, Fault> {
    let n: i64 = txn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Pages in use (the file less its free pages), in bytes.
fn used_bytes(db: &Connection) -> Result<u64, Fault> {
    let pragma = |name: &str| -> Result<i64, Fault> {
        Ok(db.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
    };
    let pages = pragma("page_count")? - pragma("freelist_count")?;
    Ok((pages.max(0) * pragma("page_size")?) as u64)
}

fn delete_segments(txn: &Transaction<'_>, victims: &[u64]) -> Result<(), Fault> {
    let mut data = txn.prepare_cached("DELETE FROM data WHERE seq = ?1")?;
    let mut meta = txn.prepare_cached("DELETE FROM segments WHERE seq = ?1")?;
    for s in victims {
        data.execute([*s as i64])?;
        meta.execute([*s as i64])?;
    }
    Ok(())
}

/// Removes series whose last sample is older than every datum left; returns their ids. Series
/// this process is recording (`live`) stay.
fn drop_series_before(
    txn: &Transaction<'_>,
    oldest: Millis,
    live: &BTreeSet<u32>,
) -> Result<BTreeSet<u32>, Fault> {
    let mut gone = BTreeSet::new();
    {
        let mut st = txn.prepare_cached("SELECT sid FROM series WHERE last_ts < ?1")?;
        let mut rows = st.query([oldest])?;
        while let Some(r) = rows.next()? {
            let sid: u32 = r.get(0)?;
            if !live.contains(&sid) {
                gone.insert(sid);
            }
        }
    }
    let mut delete = txn.prepare_cached("DELETE FROM series WHERE sid = ?1")?;
    for sid in &gone {
        delete.execute([*sid])?;
    }
    Ok(gone)
}
