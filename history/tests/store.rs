//! The store's behaviour through its public API: restart, tiers, limits, events, clock jumps, churn.

use std::time::Duration;

use vitals_history::{
    History, Options, QueryError, Retention, Selector, SeriesKey, Tier, MAX_POINTS_PER_SERIES,
};

const T0: i64 = 1_800_000_000_000;

fn manual() -> Options {
    Options {
        flush_interval: Duration::from_secs(3600),
        ..Options::default()
    }
}

fn select(collector: &str, name: &str, label: Option<&str>) -> Selector {
    Selector {
        collector: collector.into(),
        name: name.into(),
        label: label.map(str::to_owned),
    }
}

/// Guards durability across a clean restart: samples and events written before are read after,
/// the ones still buffered at the close included.
#[test]
fn restart_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let key = SeriesKey::new("cpu", "usage", None);
    {
        let mut h = History::open_with(&path, Retention::default(), manual()).unwrap();
        for i in 0..100 {
            h.record(T0 + i * 5_000, &[(key.clone(), i as f64)])
                .unwrap();
        }
        h.record_event(T0, "cpu", "failed", "collect timed out")
            .unwrap();
        h.flush().unwrap();
        // Buffered, not flushed: a clean close writes it.
        h.record(T0 + 100 * 5_000, &[(key.clone(), 100.0)]).unwrap();
    }
    let h = History::open_with(&path, Retention::default(), manual()).unwrap();
    assert!(h.recovered().is_none());
    let r = h
        .query(&select("cpu", "usage", None), T0, T0 + 505_000, 5_000)
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].points.len(), 101);
    assert_eq!(r[0].points[42].avg, 42.0);
    let ev = h.events(T0, T0 + 1, Some("cpu"), 10).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].text, "collect timed out");
    assert!(h.events(T0, T0 + 1, Some("gpu"), 10).unwrap().is_empty());
}

/// Guards the request bound: one step past 1,000 points per series is refused with the limit.
#[test]
fn query_step_limit_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let h =
        History::open_with(dir.path().join("h.sqlite"), Retention::default(), manual()).unwrap();
    let sel = select("cpu", "usage", None);
    let limit = MAX_POINTS_PER_SERIES as i64;
    assert!(h.query(&sel, T0, T0 + limit * 1_000, 1_000).is_ok());
    assert_eq!(
        h.query(&sel, T0, T0 + limit * 1_000 + 1, 1_000),
        Err(QueryError::TooManyPoints {
            requested: MAX_POINTS_PER_SERIES + 1,
            limit: MAX_POINTS_PER_SERIES
        })
    );
    assert!(matches!(
        h.query(&sel, T0, T0 + 86_400_000 * 365, 1),
        Err(QueryError::TooManyPoints {
            limit: MAX_POINTS_PER_SERIES,
            ..
        })
    ));
    assert!(matches!(
        h.query(&sel, T0, T0, 1_000),
        Err(QueryError::InvalidRange(_))
    ));
    assert!(matches!(
        h.query(&select("cpu", "usage", Some("[")), T0, T0 + 1_000, 1_000),
        Err(QueryError::InvalidPattern(_))
    ));
}

/// Guards the tiers: eight days of samples are rolled up into minute and hour rows whose
/// counts and extremes match the raw samples, a coarse step reads the coarse tier, a fine step
/// reads the finer tiers, and labels are globbed.
#[test]
fn tiers_roll_up_and_queries_pick_the_coarsest() {
    let dir = tempfile::tempdir().unwrap();
    let mut h =
        History::open_with(dir.path().join("h.sqlite"), Retention::default(), manual()).unwrap();
    let gpu0 = SeriesKey::new("gpu", "util", Some("0"));
    let gpu1 = SeriesKey::new("gpu", "util", Some("1"));
    // 8 days at 30 s: past the 7 days after which minute rows are rolled into hours.
    let steps = 8 * 24 * 120;
    for i in 0..steps {
        let ts = T0 + i * 30_000;
        h.record(ts, &[(gpu0.clone(), (i % 7) as f64), (gpu1.clone(), 1.0)])
            .unwrap();
        if i % 20 == 19 {
            h.flush().unwrap();
        }
    }
    h.flush().unwrap();
    let st = h.status();
    assert!(st.segments.iter().all(|&n| n > 0), "{st:?}");
    let end = T0 + steps * 30_000;
    let hour = h
        .query(&select("gpu", "util", Some("0")), T0, end, 3_600_000)
        .unwrap();
    assert_eq!(hour.len(), 1);
    assert_eq!(hour[0].tier, Tier::Hour);
    let total: u64 = hour[0].points.iter().map(|p| p.count).sum();
    assert_eq!(total, steps as u64, "every sample counted once");
    assert!(hour[0].points.iter().all(|p| p.min == 0.0 && p.max == 6.0));
    let minute = h
        .query(
            &select("gpu", "util", Some("*")),
            end - 3_600_000 * 12,
            end,
            60_000,
        )
        .unwrap();
    assert_eq!(minute.len(), 2);
    assert_eq!(minute[0].tier, Tier::Minute);
    let total: u64 = minute[1].points.iter().map(|p| p.count).sum();
    assert_eq!(total, 12 * 120);
    assert_eq!(minute[1].points[0].avg, 1.0);
    assert_eq!(minute[1].points[0].last, 1.0);
    let raw = h
        .query(
            &select("gpu", "util", Some("0")),
            end - 600_000,
            end,
            30_000,
        )
        .unwrap();
    assert_eq!(raw[0].tier, Tier::Raw);
    assert_eq!(raw[0].points.len(), 20);
    // A minute step over a range older than the raw tier keeps is read from minutes.
    let old = h
        .query(&select("gpu", "util", Some("0")), T0, T0 + 600_000, 30_000)
        .unwrap();
    assert_eq!(old[0].tier, Tier::Minute);
    assert_eq!(old[0].points.iter().map(|p| p.count).sum::<u64>(), 20);
    assert!(h
        .query(&select("gpu", "util", Some("7")), T0, end, 3_600_000)
        .unwrap()
        .is_empty());
}

/// Guards clock jumps: the wall clock going forward an hour and back an hour and a half never loses,
/// duplicates or reorders samples, in the journal, after a seal, after a rollup, and after a
/// restart.
#[test]
fn clock_jumps_keep_every_sample_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let key = SeriesKey::new("memory", "used_bytes", None);
    let opts = Options {
        seal_samples: 50,
        ..manual()
    };
    let mut stamps = Vec::new();
    {
        let mut h = History::open_with(&path, Retention::default(), opts).unwrap();
        let mut ts = T0;
        for i in 0..600 {
            ts += 5_000;
            if i == 200 {
                ts += 3_600_000;
            }
            if i == 400 {
                // Back past the jump and 500 s more: lands on the timestamps of samples 100..
                ts -= 3_600_000 + 1_500_000;
            }
            stamps.push(ts);
            h.record(ts, &[(key.clone(), i as f64)]).unwrap();
            if i % 10 == 9 {
                h.flush().unwrap();
            }
        }
        h.flush().unwrap();
    }
    let h = History::open_with(&path, Retention::default(), opts).unwrap();
    let (lo, hi) = (
        *stamps.iter().min().unwrap(),
        *stamps.iter().max().unwrap() + 1,
    );
    let sel = select("memory", "used_bytes", None);
    let step = (hi - lo) / 900 + 1;
    let r = h.query(&sel, lo, hi, step).unwrap();
    let total: u64 = r[0].points.iter().map(|p| p.count).sum();
    assert_eq!(total, 600, "no sample lost or doubled");
    assert!(r[0].points.windows(2).all(|w| w[0].ts < w[1].ts));
    // The samples written after the jump back share their hour with older ones, both kept.
    let overlap = stamps[400];
    let r = h.query(&sel, overlap, overlap + 5_000, 5_000).unwrap();
    assert_eq!(r[0].points[0].count, 2);
}

/// Guards the disk budget under series churn: 2,000 containers come and go over a simulated
/// day and the store file stays inside its budget, and the ids kept in memory stay bounded.
#[test]
fn series_churn_stays_inside_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let budget = 3 * 1024 * 1024;
    let retention = Retention {
        budget_bytes: budget,
        ..Retention::default()
    };
    let mut h = History::open_with(&path, retention, manual()).unwrap();
    // Every 30 s, 100 containers alive at a time, each for about 76 minutes: 2,000 of them
    // come and go over the day.
    let mut max_file = 0;
    let mut max_known = 0;
    for i in 0..2_880i64 {
        let ts = T0 + i * 30_000;
        let first = i * 1_900 / 2_880;
        let mut samples = Vec::new();
        for c in first..first + 100 {
            let label = format!("c{c}");
            let x = ((i * 7919 + c * 104_729) % 1_000) as f64 / 7.0;
            samples.push((SeriesKey::new("docker", "cpu", Some(&label)), x));
            samples.push((SeriesKey::new("docker", "memory", Some(&label)), x * 4096.0));
        }
        h.record(ts, &samples).unwrap();
        if i % 10 == 9 {
            h.flush().unwrap();
            let st = h.status();
            max_file = max_file.max(st.file_bytes);
            max_known = max_known.max(st.series_in_memory);
        }
    }
    assert!(
        max_file <= budget,
        "file grew to {max_file} bytes, budget {budget}"
    );
    assert!(max_known <= 600, "{max_known} series ids held in memory");
    let st = h.status();
    assert!(st.segments[0] > 0 && st.segments[1] > 0, "{st:?}");
}

/// Guards the in-memory bounds of events and samples while nothing is flushed.
#[test]
fn buffers_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_pending_samples: 1_000,
        max_pending_events: 10,
        ..manual()
    };
    let mut h =
        History::open_with(dir.path().join("h.sqlite"), Retention::default(), opts).unwrap();
    let key = SeriesKey::new("cpu", "usage", None);
    for i in 0..2_000 {
        h.record(T0 + i, &[(key.clone(), 1.0), (key.clone(), f64::NAN)])
            .unwrap();
        h.record_event(T0 + i, "host", "x", &"é".repeat(2_000))
            .unwrap();
    }
    let st = h.status();
    assert_eq!(st.pending_samples, 1_000);
    assert_eq!(st.dropped_samples, 1_000);
    assert_eq!(st.rejected_samples, 2_000);
    assert_eq!(st.dropped_events, 1_990);
    let ev = h.events(T0, T0 + 10_000, None, 100).unwrap();
    assert_eq!(ev.len(), 10);
    assert!(ev[0].text.len() <= vitals_history::MAX_EVENT_TEXT_BYTES);
    assert_eq!(ev[0].ts, T0 + 1_999, "newest first");
}
