//! End to end: a failing collector backs off with growing delays and comes back to ok when its fault ends, in both isolation modes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::{plugin_lib, toml_path, Host};

/// Unix milliseconds of an RFC 3339 UTC time as the host writes it (`2026-01-02T03:04:05.678Z`).
fn unix_ms(rfc3339: &str) -> i64 {
    let num = |range: std::ops::Range<usize>| -> i64 {
        rfc3339
            .get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an RFC 3339 UTC time: {rfc3339}"))
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    let millis = if rfc3339.as_bytes().get(19) == Some(&b'.') {
        num(20..23)
    } else {
        0
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + millis
}

/// Guards the RFC 3339 reading this file relies on.
#[test]
fn reads_rfc3339_times() {
    assert_eq!(unix_ms("1970-01-01T00:00:00Z"), 0);
    assert_eq!(unix_ms("2000-03-01T00:00:01.250Z"), 951_868_801_250);
    assert_eq!(
        unix_ms("2026-11-28T23:59:59.999Z") + 1,
        unix_ms("2026-11-29T00:00:00Z")
    );
}

fn status<'a>(s: &'a Value, name: &str) -> &'a Value {
    &s["collectors"][name]
}

/// Guards the backoff after failures: the delay the host schedules before each retry
/// (`next_retry` minus the failure's time) doubles from one failure to the next, and the
/// attempts really spread out (the last gap is many intervals long).
#[test]
fn retries_after_failures_back_off_with_growing_delays() {
    let host = Host::start(&format!(
        "[collectors.memory]\ninterval = \"250ms\"\n\n[collectors.failing]\nlibrary = {}\ninterval = \"250ms\"\n\n[collectors.failing.config]\nbehaviour = \"error\"\n",
        toml_path(&plugin_lib("fault"))
    ));
    // Per failure count: when it failed and when the host said it would retry (Unix ms).
    let mut seen: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    let start = Instant::now();
    while !seen.contains_key(&6) {
        let snap = host.get_ok("/admin/monitor/system");
        let st = status(&snap, "failing");
        if let (Some(n), Some(at), Some(next)) = (
            st["consecutive_failures"].as_u64(),
            st["last_error"]["time_unix_ms"].as_i64(),
            st["next_retry"].as_str(),
        ) {
            seen.entry(n).or_insert((at, unix_ms(next)));
        }
        // Six failures take 0.25 + 0.5 + 1 + 2 + 4 s of backoff; the cap is liveness only.
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no sixth failure within 60 s: {seen:?}\nhost log:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(40));
    }
    let delays: BTreeMap<u64, i64> = seen.iter().map(|(n, (at, next))| (*n, next - at)).collect();
    // Failures 3 to 6 are a second or more apart, so none of them is missed by the polling.
    for n in 3..=6 {
        assert!(delays.contains_key(&n), "failure {n} not seen: {seen:?}");
    }
    let mut pairs = 0;
    for (n, d) in &delays {
        if let Some(next) = delays.get(&(n + 1)) {
            pairs += 1;
            assert!(
                *next as f64 >= *d as f64 * 1.5,
                "the delay after failure {} ({next} ms) is not about twice the one after failure {n} ({d} ms): {delays:?}",
                n + 1
            );
        }
    }
    assert!(pairs >= 3, "{delays:?}");
    // The attempts themselves: failure 6 came at least 3 s after failure 5 (the scheduled
    // delay is 4 s); retrying at the 250 ms interval would put them 250 ms apart.
    let gap = seen[&6].0 - seen[&5].0;
    assert!(
        gap >= 3000,
        "failures 5 and 6 were {gap} ms apart: {seen:?}"
    );
    assert_eq!(
        status(&host.get_ok("/admin/monitor/system"), "memory")["state"],
        "ok"
    );
}

/// Waits until `name` is failed for the `n`-th time in a row, then creates `heal` (the fault
/// plugin turns healthy when it exists) and waits for recovery: state ok, fresh data, no
/// stale flag, no reason, no retry pending, the failure count back at 0, health 200 again.
fn fails_then_recovers(host: &Host, name: &str, heal: &std::path::Path) {
    let failed = host.wait_for(
        &format!("{name} failed three times in a row"),
        Duration::from_secs(30),
        |s| {
            status(s, name)["state"] == "failed"
                && status(s, name)["consecutive_failures"]
                    .as_u64()
                    .unwrap_or(0)
                    >= 3
        },
    );
    assert!(status(&failed, name)["next_retry"].is_string(), "{failed}");
    assert_eq!(host.get("/admin/monitor/health").0, 503);
    let count_before = failed["sections"][name]["count"].as_u64().unwrap_or(0);
    std::fs::write(heal, "").expect("heal file");
    // Three failures in a row put the next attempt at most 1 s away (at 250 ms); 30 s is
    // a liveness bound.
    let ok = host.wait_for(
        &format!("{name} back to ok"),
        Duration::from_secs(30),
        |s| status(s, name)["state"] == "ok",
    );
    let st = status(&ok, name);
    assert_eq!(st["stale"], false, "{st}");
    assert!(st["reason"].is_null(), "{st}");
    assert!(st["next_retry"].is_null(), "no retry pending: {st}");
    assert_eq!(st["consecutive_failures"], 0, "{st}");
    assert!(
        ok["sections"][name]["count"].as_u64().unwrap_or(0) > count_before,
        "fresh data after the recovery: {ok}"
    );
    let (code, health) = host.get("/admin/monitor/health");
    assert_eq!(code, 200, "{health}");
    assert_eq!(
        health["components"][format!("collector:{name}")]["state"],
        "ok"
    );
}

/// Guards recovery in process: a collector that failed (after a good collect, so its data
/// went stale) returns to ok when its fault ends, with fresh data and health back to 200.
#[test]
fn a_failed_collector_recovers_to_ok_in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let heal = dir.path().join("healed");
    let host = Host::start(&format!(
        "[collectors.flaky]\nlibrary = {}\ninterval = \"250ms\"\n\n[collectors.flaky.config]\nbehaviour = \"error\"\ngood_collects = 1\nheal_file = {}\n",
        toml_path(&plugin_lib("fault")),
        toml_path(&heal)
    ));
    let stale = host.wait_for("stale data", Duration::from_secs(30), |s| {
        status(s, "flaky")["stale"] == true
    });
    assert_eq!(stale["sections"]["flaky"]["count"], 1);
    fails_then_recovers(&host, "flaky", &heal);
}

/// Guards recovery under process isolation: a child that crashes on every collect is
/// restarted with backoff, and once the crash stops the collector is ok again.
#[test]
fn a_crashing_child_recovers_to_ok_under_process_isolation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let heal = dir.path().join("healed");
    let host = Host::start(&format!(
        "[collectors.crashy]\nlibrary = {}\ninterval = \"250ms\"\nisolation = \"process\"\n\n[collectors.crashy.config]\nbehaviour = \"segfault\"\nheal_file = {}\n",
        toml_path(&plugin_lib("fault")),
        toml_path(&heal)
    ));
    fails_then_recovers(&host, "crashy", &heal);
    let snap = host.get_ok("/admin/monitor/system");
    assert!(
        status(&snap, "crashy")["restarts"].as_u64().unwrap_or(0) >= 1,
        "{snap}"
    );
}
