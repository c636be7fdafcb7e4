//! Range queries over the tiers, and reading events back.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::codec::{self, Record};
use crate::engine::Acc;
use crate::error::QueryError;
use crate::model::{
    Event, Millis, Point, Selector, SeriesKey, SeriesPoints, Tier, MAX_EVENTS_PER_QUERY,
    MAX_POINTS_PER_SERIES, MAX_SERIES_PER_QUERY,
};
use crate::store::History;

fn unreadable(e: impl std::fmt::Display) -> QueryError {
    QueryError::Unavailable(e.to_string())
}

/// The buckets of one series over the query's steps.
struct Buckets {
    from: Millis,
    step: Millis,
    accs: Vec<Acc>,
}

impl Buckets {
    fn slot(&mut self, ts: Millis) -> Option<&mut Acc> {
        let i = usize::try_from(ts.checked_sub(self.from)? / self.step).ok()?;
        self.accs.get_mut(i)
    }
}

impl History {
    /// Points of every series `selector` matches, one per `step` over `[from, to)` that has
    /// samples, each with min/avg/max/last and the sample count. Reads the coarsest tier that
    /// `step` allows (hour for a step of an hour or more, minute for a minute or more) and no
    /// finer tier than the age of `from` still has; parts not yet rolled up are read from the
    /// finer tiers, buffered samples included.
    ///
    /// # Errors
    /// More than [`MAX_POINTS_PER_SERIES`] steps, more than [`MAX_SERIES_PER_QUERY`] series, an
    /// empty range or step, a bad label glob, or an unreadable store.
    pub fn query(
        &self,
        selector: &Selector,
        from: Millis,
        to: Millis,
        step: Millis,
    ) -> Result<Vec<SeriesPoints>, QueryError> {
        if to <= from {
            return Err(QueryError::InvalidRange("`to` must be after `from`"));
        }
        if step <= 0 {
            return Err(QueryError::InvalidRange("`step` must be positive"));
        }
        let steps = (to as i128 - from as i128 + step as i128 - 1) / step as i128;
        let requested = u64::try_from(steps).unwrap_or(u64::MAX);
        if requested > MAX_POINTS_PER_SERIES {
            return Err(QueryError::TooManyPoints {
                requested,
                limit: MAX_POINTS_PER_SERIES,
            });
        }
        let pattern = selector
            .label
            .as_deref()
            .map(glob::Pattern::new)
            .transpose()
            .map_err(|e| QueryError::InvalidPattern(e.to_string()))?;
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| QueryError::Unavailable("the store is not open".into()))?;
        let series = self.matching(db, selector, pattern.as_ref())?;
        let tier = self.tier_for(from, step);
        let mut out: Vec<(SeriesKey, u32, Buckets)> = series
            .into_iter()
            .map(|(key, sid)| {
                let accs = vec![Acc::new(); requested as usize];
                (key, sid, Buckets { from, step, accs })
            })
            .collect();
        // Each datum is in exactly one of: a segment of `tier`, an unrolled segment of a finer
        // tier, the journal, or the buffer.
        let mut get = db
            .prepare_cached("SELECT v FROM data WHERE seq = ?1 AND sid = ?2")
            .map_err(unreadable)?;
        for (seq, m) in &self.segments {
            let wanted = m.tier == tier || (m.tier < tier && !m.rolled);
            if !wanted || !m.overlaps(from, to) {
                continue;
            }
            for (_, sid, buckets) in &mut out {
                let v: Option<Vec<u8>> = get
                    .query_row(params![*seq as i64, *sid], |r| r.get(0))
                    .optional()
                    .map_err(unreadable)?;
                if let Some(v) = v {
                    fold_value(m.tier, &v, *seq, buckets)?;
                }
            }
        }
        let mut journal = db
            .prepare_cached("SELECT v FROM journal WHERE seq = ?1")
            .map_err(unreadable)?;
        for (seq, j) in &self.journal {
            if j.max_ts < from || j.min_ts >= to {
                continue;
            }
            let v: Option<Vec<u8>> = journal
                .query_row([*seq as i64], |r| r.get(0))
                .optional()
                .map_err(unreadable)?;
            if let Some(v) = v {
                let records = codec::decode_batch(&v).map_err(unreadable)?;
                fold_records(&records, *seq, &mut out);
            }
        }
        fold_records(&self.pending, u64::MAX, &mut out);
        Ok(out
            .into_iter()
            .map(|(key, _, b)| SeriesPoints {
                key,
                tier,
                points: b
                    .accs
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.count > 0)
                    .map(|(i, a)| Point {
                        ts: from + i as Millis * step,
                        min: a.min,
                        avg: a.avg(),
                        max: a.max,
                        last: a.last,
                        count: a.count,
                    })
                    .collect(),
            })
            .collect())
    }

    /// The coarsest tier `step` allows, made coarser if `from` is older than a tier keeps.
    pub(crate) fn tier_for(&self, from: Millis, step: Millis) -> Tier {
        let by_step = Tier::ALL
            .into_iter()
            .rev()
            .find(|t| step >= t.bucket_millis())
            .unwrap_or(Tier::Raw);
        let by_age = Tier::ALL
            .into_iter()
            .find(|t| from >= self.now.saturating_sub(self.retention.of(*t)))
            .unwrap_or(Tier::Hour);
        by_step.max(by_age)
    }

    fn matching(
        &self,
        db: &Connection,
        selector: &Selector,
        pattern: Option<&glob::Pattern>,
    ) -> Result<Vec<(SeriesKey, u32)>, QueryError> {
        let mut found = BTreeMap::new();
        let mut consider = |stored: &[u8], sid: u32| -> Result<(), QueryError> {
            let Some(key) = SeriesKey::decode(stored) else {
                return Ok(());
            };
            let label_ok = match (&key.label, pattern) {
                (_, None) => true,
                (Some(l), Some(p)) => p.matches(l),
                (None, Some(_)) => false,
            };
            if key.collector == selector.collector && key.name == selector.name && label_ok {
                found.insert(key, sid);
                if found.len() > MAX_SERIES_PER_QUERY {
                    return Err(QueryError::TooManySeries {
                        matched: found.len(),
                        limit: MAX_SERIES_PER_QUERY,
                    });
                }
            }
            Ok(())
        };
        let mut prefix = Vec::new();
        prefix.extend_from_slice(selector.collector.as_bytes());
        prefix.push(0);
        prefix.extend_from_slice(selector.name.as_bytes());
        let mut range = db
            .prepare_cached("SELECT key, sid FROM series WHERE key >= ?1 AND key < ?2")
            .map_err(unreadable)?;
        for flag in [0u8, 1] {
            let mut start = vec![flag];
            start.extend_from_slice(&prefix);
            let mut end = start.clone();
            end.push(1);
            let mut rows = range.query(params![start, end]).map_err(unreadable)?;
            while let Some(r) = rows.next().map_err(unreadable)? {
                let stored = r
                    .get_ref(0)
                    .and_then(|v| Ok(v.as_blob()?))
                    .map_err(unreadable)?;
                consider(stored, r.get(1).map_err(unreadable)?)?;
            }
        }
        for (sid, (_, stored)) in &self.new_series {
            consider(stored, *sid)?;
        }
        Ok(found.into_iter().collect())
    }

    /// Events in `[from, to)`, newest first, of one source or all, at most `limit` (itself at
    /// most [`MAX_EVENTS_PER_QUERY`]); buffered events included.
    ///
    /// # Errors
    /// An empty range or an unreadable store.
    pub fn events(
        &self,
        from: Millis,
        to: Millis,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>, QueryError> {
        if to <= from {
            return Err(QueryError::InvalidRange("`to` must be after `from`"));
        }
        let limit = limit.min(MAX_EVENTS_PER_QUERY);
        let wanted = |e: &Event| e.ts >= from && e.ts < to && source.is_none_or(|s| e.source == s);
        let mut out: Vec<Event> = self
            .pending_events
            .iter()
            .rev()
            .filter(|e| wanted(e))
            .cloned()
            .collect();
        if let Some(db) = &self.db {
            let mut st = db
                .prepare_cached(
                    "SELECT ts, source, kind, text FROM events WHERE ts >= ?1 AND ts < ?2
                     AND (?3 IS NULL OR source = ?3) ORDER BY ts DESC, seq DESC LIMIT ?4",
                )
                .map_err(unreadable)?;
            let mut rows = st
                .query(params![from, to, source, limit as i64])
                .map_err(unreadable)?;
            while let Some(r) = rows.next().map_err(unreadable)? {
                out.push(Event {
                    ts: r.get(0).map_err(unreadable)?,
                    source: r.get(1).map_err(unreadable)?,
                    kind: r.get(2).map_err(unreadable)?,
                    text: r.get(3).map_err(unreadable)?,
                });
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.ts));
        out.truncate(limit);
        Ok(out)
    }
}

fn fold_value(tier: Tier, bytes: &[u8], seq: u64, b: &mut Buckets) -> Result<(), QueryError> {
    if tier == Tier::Raw {
        let points = codec::decode_raw(bytes).map_err(unreadable)?;
        for (i, (ts, v)) in points.into_iter().enumerate() {
            if let Some(acc) = b.slot(ts) {
                acc.add_sample(ts, (seq << 24) + i as u64, v);
            }
        }
    } else {
        for row in codec::decode_aggs(bytes).map_err(unreadable)? {
            if let Some(acc) = b.slot(row.ts) {
                acc.add_agg(&row, seq);
            }
        }
    }
    Ok(())
}

fn fold_records(records: &[Record], seq: u64, out: &mut [(SeriesKey, u32, Buckets)]) {
    let index: BTreeMap<u32, usize> = out.iter().enumerate().map(|(i, o)| (o.1, i)).collect();
    for (n, r) in records.iter().enumerate() {
        for (sid, v) in &r.samples {
            if let Some(&i) = index.get(sid) {
                if let Some(acc) = out[i].2.slot(r.ts) {
                    acc.add_sample(r.ts, seq.saturating_add(n as u64), *v);
                }
            }
        }
    }
}
