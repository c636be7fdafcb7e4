//! End to end: misbehaving plugins in both isolation modes, runtime control and config reload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::{plugin_lib, request, rss_bytes, thread_count, toml_path, Host, SseReader};

fn fault(name: &str, behaviour: &str, extra: &str) -> String {
    format!(
        "[collectors.{name}]\nlibrary = {}\ninterval = \"100ms\"\ndeadline = \"300ms\"\n{extra}\n[collectors.{name}.config]\nbehaviour = \"{behaviour}\"\n\n",
        toml_path(&plugin_lib("fault"))
    )
}

/// How long one health probe may take before it counts as missed: a liveness bound, not a
/// speed figure (`make bench` measures request latency). It separates a host whose API waits
/// on a stuck collector, which never answers (the `hang` fault never returns), from a working
/// one: measured beside `cargo build --release --workspace` on a 2-core machine at a load
/// average of 7.6-8.7, the slowest probe of each of 20 runs of the two tests below took
/// 25-176 ms (median 69 ms), so 10 s leaves a margin of over 50 times.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Probes `/admin/monitor/health` every 100 ms, each with a [`PROBE_TIMEOUT`], until finished.
struct Prober {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    slowest_ms: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(base: &str) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let slowest_ms = Arc::new(AtomicU64::new(0));
        let (s, a, f, slowest, url) = (
            stop.clone(),
            answered.clone(),
            failed.clone(),
            slowest_ms.clone(),
            format!("{base}/admin/monitor/health"),
        );
        let handle = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(PROBE_TIMEOUT)
                .build()
                .expect("client");
            while !s.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match client.get(&url).send() {
                    Ok(_) => a.fetch_add(1, Ordering::Relaxed),
                    Err(_) => f.fetch_add(1, Ordering::Relaxed),
                };
                let ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
                slowest.fetch_max(ms, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Prober {
            stop,
            answered,
            failed,
            slowest_ms,
            handle: Some(handle),
        }
    }

    /// Stops probing and asserts that every probe answered within [`PROBE_TIMEOUT`], and that
    /// there were enough probes for that to mean something.
    fn assert_all_answered(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let answered = self.answered.load(Ordering::Relaxed);
        let missed = self.failed.load(Ordering::Relaxed);
        let slowest = self.slowest_ms.load(Ordering::Relaxed);
        eprintln!("health probes: {answered} answered, {missed} missed, slowest {slowest} ms");
        assert_eq!(
            missed, 0,
            "every health probe answered within {PROBE_TIMEOUT:?} ({answered} answered, slowest {slowest} ms)"
        );
        assert!(answered >= 5, "only {answered} health probes were made");
    }
}

/// Waits until `name` made `more` collects after `from` (a snapshot), within 60 s: a liveness
/// bound, not a pace figure. It separates a collector that goes on beside the faults from one
/// a fault blocks or starves, which never gets there: measured under the load described at
/// [`PROBE_TIMEOUT`], 20 collects at 100 ms took 1.87-2.32 s in 20 runs, so 60 s leaves a
/// margin of over 25 times.
fn wait_for_more_collects(host: &Host, from: &Value, name: &str, more: u64) -> Value {
    let start = collects(from, name);
    let began = Instant::now();
    let snap = host.wait_for(
        &format!("{more} more collects of {name} beside the faults"),
        Duration::from_secs(60),
        |s| collects(s, name) >= start + more,
    );
    eprintln!(
        "{name}: {more} more collects took {:.2} s",
        began.elapsed().as_secs_f64()
    );
    snap
}

fn collects(s: &Value, name: &str) -> u64 {
    s["collectors"][name]["collects_total"]
        .as_u64()
        .unwrap_or(0)
}

fn reason(s: &Value, name: &str) -> String {
    s["collectors"][name]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Children of `pid` (from /proc), to prove dead or killed children are reaped and not piled up.
fn children(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| {
                    // The fourth field, after the parenthesised name, is the parent pid.
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                        .and_then(|p| p.parse::<u32>().ok())
                        == Some(pid)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Guards in-process containment: errors, panics (in `new` and `collect`), hangs and
/// "unavailable" each get their reason, while health answers throughout and a healthy
/// collector keeps its pace.
#[test]
fn in_process_faults_are_contained() {
    let config = format!(
        "[collectors.memory]\ninterval = \"100ms\"\n\n{}{}{}{}{}",
        fault("errors", "error", ""),
        fault("panics", "panic", ""),
        fault("panics_in_new", "panic-in-new", ""),
        fault("hangs", "hang", ""),
        fault("absent", "unavailable", ""),
    )
    .replace(
        "behaviour = \"panic\"",
        "behaviour = \"panic\"\ngood_collects = 2",
    );
    let host = Host::start(&config);
    let prober = Prober::start(&host.base);
    let first = host.wait_for("every fault to show", Duration::from_secs(20), |s| {
        ["errors", "panics", "panics_in_new", "hangs"]
            .iter()
            .all(|n| s["collectors"][n]["state"] == "failed")
            && s["collectors"]["absent"]["state"] == "unavailable"
    });
    let threads_early = thread_count(host.pid());
    // Memory keeps collecting beside the faults.
    let snap = wait_for_more_collects(&host, &first, "memory", 20);

    assert!(
        reason(&snap, "errors").contains("error, as configured"),
        "{}",
        reason(&snap, "errors")
    );
    assert!(
        reason(&snap, "panics").contains("panicked: fault plugin: panic in collect"),
        "{}",
        reason(&snap, "panics")
    );
    assert_eq!(snap["collectors"]["panics"]["stale"], true);
    assert_eq!(
        snap["sections"]["panics"]["count"], 2,
        "the last good data is kept"
    );
    assert!(
        reason(&snap, "panics_in_new").contains("panic in new"),
        "{}",
        reason(&snap, "panics_in_new")
    );
    assert!(
        reason(&snap, "hangs").contains("timed out"),
        "{}",
        reason(&snap, "hangs")
    );
    assert!(
        snap["collectors"]["panics"]["next_retry"].is_string(),
        "backing off: {}",
        snap["collectors"]["panics"]
    );
    assert!(
        snap["collectors"]["errors"]["errors_total"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    );

    let (status, health) = host.get("/admin/monitor/health");
    assert_eq!(status, 503);
    let problems = health["problems"].to_string();
    assert!(
        !problems.contains("absent"),
        "unavailable is not a failure: {problems}"
    );
    // A stuck collect holds its one thread; no new thread per attempt.
    let threads_late = thread_count(host.pid());
    assert!(
        threads_late <= threads_early + 1,
        "threads grew {threads_early} -> {threads_late}"
    );
    prober.assert_all_answered();
}

/// Guards process isolation: abort, segfault, a hang and a memory-limit breach end only the
/// child; the host reports each, restarts the child with backoff, and reaps every child.
#[test]
fn process_isolation_contains_crashes_hangs_and_memory_blowups() {
    let iso = "isolation = \"process\"";
    let config = format!(
        "[collectors.memory]\ninterval = \"100ms\"\n\n{}{}{}{}{}",
        fault("aborts", "abort", iso),
        fault("segfaults", "segfault", iso),
        fault("hangs", "hang", iso),
        // Each collect writes 64 MiB, which on a loaded machine takes longer than 300 ms: a
        // deadline that long would kill the child before the limit ends it.
        fault(
            "leaks",
            "leak",
            &format!("{iso}\nmemory_limit = \"160MiB\"")
        )
        .replace("deadline = \"300ms\"", "deadline = \"10s\""),
        fault("healthy_child", "ok", iso),
    );
    let host = Host::start(&config);
    let prober = Prober::start(&host.base);
    let snap = host.wait_for("every child fault to show", Duration::from_secs(30), |s| {
        ["aborts", "segfaults", "hangs", "leaks"].iter().all(|n| {
            s["collectors"][n]["state"] == "failed"
                && s["collectors"][n]["restarts"].as_u64().unwrap_or(0) >= 1
        }) && collects(s, "healthy_child") >= 3
    });
    assert!(
        reason(&snap, "aborts").contains("SIGABRT"),
        "{}",
        reason(&snap, "aborts")
    );
    assert!(
        reason(&snap, "segfaults").contains("SIGSEGV"),
        "{}",
        reason(&snap, "segfaults")
    );
    assert!(
        reason(&snap, "hangs").contains("child process was killed"),
        "{}",
        reason(&snap, "hangs")
    );
    let leak = reason(&snap, "leaks");
    assert!(
        leak.contains("crashed") || leak.contains("exited"),
        "{leak}"
    );
    assert_eq!(snap["collectors"]["healthy_child"]["state"], "ok");
    assert_eq!(snap["collectors"]["healthy_child"]["isolation"], "process");
    // Memory keeps collecting beside the crashing children.
    wait_for_more_collects(&host, &snap, "memory", 20);
    let kids = children(host.pid());
    assert!(
        kids <= 5,
        "{kids} children: dead ones are reaped, killed ones not piled up"
    );
    prober.assert_all_answered();
}

/// Guards boundedness: over 50+ faults in a row, threads, children and memory stay bounded.
#[test]
fn fifty_faults_in_a_row_keep_the_host_bounded() {
    let mut config = String::from("[collectors.memory]\ninterval = \"100ms\"\n\n");
    for i in 0..5 {
        config.push_str(&fault(&format!("panic{i}"), "panic", ""));
        config.push_str(&fault(
            &format!("crash{i}"),
            "segfault",
            "isolation = \"process\"",
        ));
    }
    let host = Host::start(&config);
    let faults = |s: &Value| -> u64 {
        s["collectors"]
            .as_object()
            .map(|m| m.values().filter_map(|c| c["errors_total"].as_u64()).sum())
            .unwrap_or(0)
    };
    // The first faults warm one-time caches (a panic's backtrace symbols when RUST_BACKTRACE
    // is set, allocator arenas per thread); growth is measured after them.
    host.wait_for("30 faults", Duration::from_secs(60), |s| faults(s) >= 30);
    let (threads0, rss0) = (thread_count(host.pid()), rss_bytes(host.pid()));
    let snap = host.wait_for("60 faults", Duration::from_secs(90), |s| faults(s) >= 60);
    let (threads1, rss1) = (thread_count(host.pid()), rss_bytes(host.pid()));
    assert!(threads1 <= threads0 + 2, "threads {threads0} -> {threads1}");
    assert!(
        rss1 < rss0 + (24 << 20) && rss1 < 256 << 20,
        "RSS {} -> {} MiB over 30 more faults",
        rss0 >> 20,
        rss1 >> 20
    );
    assert!(children(host.pid()) <= 5);
    assert_eq!(snap["collectors"]["memory"]["state"], "ok");
}

/// The median gap in milliseconds between the last `n + 1` points of a collector's series.
fn median_gap(host: &Host, collector: &str, series: &str, n: usize) -> u64 {
    let history = host.get_ok(&format!("/admin/monitor/history?collector={collector}"));
    let stamps: Vec<u64> = history[collector]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == series))
        .and_then(|s| s["points"].as_array())
        .map(|p| p.iter().filter_map(|p| p[0].as_u64()).collect())
        .unwrap_or_default();
    assert!(stamps.len() > n, "{collector}.{series}: {stamps:?}");
    let mut gaps: Vec<u64> = stamps[stamps.len() - n - 1..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    gaps.sort_unstable();
    gaps[gaps.len() / 2]
}

/// Guards the collectors API: interval, disable and enable take effect on that collector alone.
#[test]
fn collectors_api_controls_one_collector() {
    let host = Host::start(
        "[collectors.memory]\ninterval = \"200ms\"\n\n[collectors.cpu]\ninterval = \"200ms\"\n",
    );
    host.wait_for("both collecting", Duration::from_secs(20), |s| {
        collects(s, "memory") >= 2 && collects(s, "cpu") >= 2
    });
    let url = format!("{}/admin/monitor/collectors/memory", host.base);
    let list = host.get_ok("/admin/monitor/collectors");
    assert_eq!(list["collectors"].as_array().map(Vec::len), Some(2));

    let (s, _, b) = request("PUT", &url, &[], Some("{\"interval_seconds\": 1}"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["collector"]["interval_seconds"], 1.0);
    // The pace from the points' own time stamps, not from a wall-clock window: collects fall
    // on multiples of the interval, so the median gap is the interval itself on an idle
    // machine and a multiple of it only when most collects are late. Memory's must now be
    // about 1 s (not 200 ms), cpu's still 200 ms (not 1 s): bounds a factor of 2 apart from
    // either wrong answer, which a loaded machine's late collects do not reach.
    let put_at = collects(&host.get_ok("/admin/monitor/system"), "memory");
    host.wait_for(
        "six memory collects at the new interval",
        Duration::from_secs(60),
        |s| collects(s, "memory") >= put_at + 6,
    );
    let memory_gap = median_gap(&host, "memory", "used_percent", 5);
    assert!(
        (700..=2000).contains(&memory_gap),
        "memory now collects once a second: median gap {memory_gap} ms"
    );
    let cpu_gap = median_gap(&host, "cpu", "usage_percent", 10);
    assert!(
        (150..=500).contains(&cpu_gap),
        "cpu kept its 200 ms pace: median gap {cpu_gap} ms"
    );

    let (s, _, _) = request("PUT", &url, &[], Some("{\"enabled\": false}"));
    assert_eq!(s, 200);
    host.wait_for("memory disabled", Duration::from_secs(5), |s| {
        s["collectors"]["memory"]["state"] == "disabled"
    });
    let (s, _, _) = request(
        "PUT",
        &url,
        &[],
        Some("{\"enabled\": true, \"interval_seconds\": 0.2}"),
    );
    assert_eq!(s, 200);
    let c0 = collects(&host.get_ok("/admin/monitor/system"), "memory");
    host.wait_for("memory back", Duration::from_secs(30), |s| {
        s["collectors"]["memory"]["state"] == "ok" && collects(s, "memory") > c0
    });
}

/// Guards config reload: a changed file touches only the collectors it changes, keeps their
/// history, and an invalid file is rejected with its problems while everything stays.
#[test]
fn config_reload_applies_changes_per_collector() {
    // `steady` counts its own successful collects: a new plugin instance would start again at 1.
    let steady = format!(
        "[collectors.steady]\nlibrary = {}\ninterval = \"200ms\"\n\n",
        toml_path(&plugin_lib("fault"))
    );
    let base = format!(
        "{steady}[collectors.memory]\ninterval = \"200ms\"\n\n[collectors.cpu]\ninterval = \"200ms\"\n"
    );
    let host = Host::start(&base);
    let path = host.dir.path().join("vitals.toml");
    host.wait_for("history", Duration::from_secs(20), |s| {
        collects(s, "memory") >= 5
    });
    // The time stamps of memory's `used_percent` points, oldest first.
    let stamps = |h: &Host| -> Vec<u64> {
        h.get_ok("/admin/monitor/history?collector=memory")["memory"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == "used_percent"))
            .and_then(|s| s["points"].as_array())
            .map(|p| p.iter().filter_map(|p| p[0].as_u64()).collect())
            .unwrap_or_default()
    };
    let before = stamps(&host);
    let memory_before = collects(&host.get_ok("/admin/monitor/system"), "memory");

    std::fs::write(
        &path,
        format!("{steady}[collectors.memory]\ninterval = \"200ms\"\n\n[collectors.cpu]\nenabled = false\n\n[collectors.system]\ninterval = \"1s\"\n"),
    )
    .expect("write");
    let snap = host.wait_for("the reload", Duration::from_secs(10), |s| {
        s["collectors"]["cpu"]["state"] == "disabled" && s["collectors"]["system"]["state"] == "ok"
    });
    assert_eq!(snap["collectors"]["memory"]["state"], "ok");
    // Memory, untouched by the change, goes on as before: ten more collects, none lost.
    let at_reload = collects(&snap, "memory");
    assert!(at_reload >= memory_before, "{memory_before} -> {at_reload}");
    let later = host.wait_for(
        "ten memory collects after the reload",
        Duration::from_secs(30),
        |s| collects(s, "memory") >= at_reload + 10,
    );
    assert_eq!(later["collectors"]["memory"]["interval_seconds"], 0.2);
    // Untouched means not restarted: `steady`'s own count still equals every success the
    // host recorded for it since start.
    assert_eq!(
        later["sections"]["steady"]["count"], later["collectors"]["steady"]["collects_total"],
        "the untouched plugin instance kept running through the reload: {}",
        later["collectors"]["steady"]
    );
    let after = stamps(&host);
    assert!(
        !before.is_empty() && before.iter().all(|t| after.contains(t)),
        "every memory point from before the reload is kept: before {before:?}, after {after:?}"
    );
    // Its pace: collects fall on multiples of the interval, so a late one leaves a 400 ms
    // gap and never a shorter one; the median gap since the reload stays at 200-400 ms on
    // an idle machine (bounded here at 1 s for a loaded one), where a collector restarted at
    // the default interval would show 5 s.
    let last_before = *before.last().expect("points");
    let mut gaps: Vec<u64> = after
        .windows(2)
        .filter(|w| w[0] >= last_before)
        .map(|w| w[1] - w[0])
        .collect();
    gaps.sort_unstable();
    assert!(gaps.len() >= 10, "{after:?}");
    let median = gaps[gaps.len() / 2];
    assert!(
        (150..=1000).contains(&median),
        "memory's collects since the reload are {median} ms apart (median): {gaps:?}"
    );

    // Replaced the way editors save: a new file renamed over the old one.
    let next = host.dir.path().join("vitals.toml.new");
    std::fs::write(
        &next,
        "[collectors.memory]\nintervall = \"1s\"\n[collectors.system]\ninterval = 3\n",
    )
    .expect("write");
    std::fs::rename(&next, &path).expect("rename");
    let start = Instant::now();
    let errors = loop {
        let e = host.get_ok("/admin/monitor/errors?limit=20");
        if e["errors"]
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["source"] == "config"))
        {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no config error reported: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let message = errors["errors"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["source"] == "config"))
        .and_then(|r| r["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("intervall") && message.contains("collectors.system.interval"),
        "{message}"
    );
    let still = host.get_ok("/admin/monitor/system");
    assert_eq!(
        still["collectors"]["system"]["state"], "ok",
        "the running config stays"
    );
    assert_eq!(still["collectors"]["cpu"]["state"], "disabled");
}

/// Guards loading a plugin file that appears after start, on SIGHUP, without a restart.
#[test]
fn a_new_plugin_file_loads_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = dir.path().join("libextra.so");
    let host = Host::start(&format!(
        "[collectors.memory]\n\n[collectors.extra]\nlibrary = {}\ninterval = \"200ms\"\n",
        toml_path(&lib)
    ));
    let snap = host.wait_for("extra to fail", Duration::from_secs(10), |s| {
        s["collectors"]["extra"]["state"] == "failed"
    });
    assert!(
        reason(&snap, "extra").contains("not found"),
        "{}",
        reason(&snap, "extra")
    );
    std::fs::copy(plugin_lib("fault"), &lib).expect("copy plugin");
    host.hangup();
    host.wait_for("extra to load", Duration::from_secs(10), |s| {
        s["collectors"]["extra"]["state"] == "ok"
    });
    assert!(host.log().contains("SIGHUP received"), "{}", host.log());
}

/// Guards shutdown with a hung plugin and an open stream: SIGTERM ends the host within 5 s.
#[test]
fn shutdown_with_a_hung_plugin_and_open_streams_is_prompt() {
    let mut host = Host::start(&format!(
        "[collectors.memory]\ninterval = \"100ms\"\n\n{}",
        fault("hangs", "hang", "")
    ));
    host.wait_for("the hang", Duration::from_secs(10), |s| {
        s["collectors"]["hangs"]["state"] == "failed"
    });
    let stream = SseReader::open(&host.base, "/admin/monitor/stream", &[]);
    assert!(stream.next_data(Duration::from_secs(5)).is_some());
    let start = Instant::now();
    host.terminate();
    while host.is_running() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
