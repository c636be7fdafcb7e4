//! Plugins that send too much or too deep, leak memory in their child, or hang across restarts: the bounds the host keeps.

use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::{plugin_lib, request, rss_bytes, run_vitals, thread_count, toml_path, Host};

/// A fault collector named `name` with `behaviour`, extra keys for its table and for its config.
fn fault(name: &str, behaviour: &str, table: &str, config: &str) -> String {
    format!(
        "[collectors.{name}]\nlibrary = {}\n{table}\n[collectors.{name}.config]\nbehaviour = \"{behaviour}\"\n{config}\n\n",
        toml_path(&plugin_lib("fault"))
    )
}

const MEMORY: &str = "[collectors.memory]\ninterval = \"200ms\"\n\n";

/// A liveness bound, not a speed figure: a host whose API waits behind a collect of a
/// million values (seconds each, under the store's lock before the bound) misses it.
const LIVENESS: Duration = Duration::from_secs(10);

fn reason(snap: &Value, name: &str) -> String {
    snap["collectors"][name]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Guards the history's bounds: a series whose `*` walks a 1,000,000-element array keeps
/// `MAX_POINTS_PER_COLLECT` values per collect, the collector stays ok with a reason naming
/// the bound, `/history` stays bounded, health answers and the host's memory stays bounded.
#[test]
fn a_wildcard_over_a_million_elements_is_capped() {
    let host = Host::start(&format!(
        "{MEMORY}{}",
        fault("wide", "wide", "interval = \"1s\"\ndeadline = \"10s\"", "")
    ));
    let bound = vitals_host::store::MAX_POINTS_PER_COLLECT;
    let snap = host.wait_for("three wide collects", Duration::from_secs(90), |s| {
        s["collectors"]["wide"]["collects_total"].as_u64() >= Some(3)
    });
    assert_eq!(snap["collectors"]["wide"]["state"], "ok");
    let why = reason(&snap, "wide");
    assert!(
        why.contains("MAX_POINTS_PER_COLLECT") && why.contains(&bound.to_string()),
        "{why}"
    );
    // Health answers while the wide collector goes on collecting.
    let client = reqwest::blocking::Client::builder()
        .timeout(LIVENESS)
        .build()
        .expect("client");
    for _ in 0..10 {
        let sent = Instant::now();
        let status = client
            .get(format!("{}/admin/monitor/health", host.base))
            .send()
            .map(|r| r.status().as_u16());
        assert!(
            status.is_ok(),
            "health did not answer within {LIVENESS:?}: {status:?} after {:?}",
            sent.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = client
        .get(format!(
            "{}/admin/monitor/history?collector=wide",
            host.base
        ))
        .send()
        .and_then(|r| r.text())
        .expect("history");
    let history: Value = serde_json::from_str(&text).expect("history JSON");
    let series = history["wide"].as_array().map_or(0, Vec::len);
    assert!(
        series <= bound + 1,
        "{series} series kept for one collector"
    );
    assert!(text.len() < 64 << 20, "/history is {} bytes", text.len());
    let rss = rss_bytes(host.pid());
    assert!(rss < 768 << 20, "RSS {} MiB", rss >> 20);
    let snap = host.get_ok("/admin/monitor/system");
    assert_eq!(snap["collectors"]["memory"]["state"], "ok");
}

/// Guards the depth bound in-process: a section nested 5,000 levels deep (which overflowed
/// the collector thread's stack and aborted the host) is refused with a reason naming the
/// bound, by the SDK (`deep`) and by the host for JSON text the SDK passes through
/// (`deep-raw`); the host keeps serving and `/metrics` keeps the other collectors.
#[test]
fn a_deeply_nested_section_is_refused_in_process() {
    let host = Host::start(&format!(
        "{MEMORY}{}{}",
        fault("deep", "deep", "interval = \"200ms\"", ""),
        fault("deep_raw", "deep-raw", "interval = \"200ms\"", ""),
    ));
    let snap = host.wait_for(
        "both deep collectors to fail",
        Duration::from_secs(30),
        |s| {
            ["deep", "deep_raw"]
                .iter()
                .all(|n| s["collectors"][n]["state"] == "failed")
        },
    );
    for name in ["deep", "deep_raw"] {
        let why = reason(&snap, name);
        assert!(
            why.contains("nested deeper than 64 levels") && why.contains("MAX_SECTION_DEPTH"),
            "{name}: {why}"
        );
        assert!(snap["sections"].get(name).is_none(), "{name} stored");
    }
    let (status, _, body) = request("GET", &format!("{}/metrics", host.base), &[], None);
    assert_eq!(status, 200);
    assert!(body.to_string().contains("memory"), "{body}");
}

/// Guards the depth bound with process isolation: the child's section nested 5,000 levels
/// deep (accepted before, then breaking every card of the page) is refused, and so is the
/// SDK-encoded one; the host and its neighbours go on.
#[test]
fn a_deeply_nested_section_is_refused_from_a_child() {
    let iso = "interval = \"200ms\"\nisolation = \"process\"\ndeadline = \"5s\"";
    let host = Host::start(&format!(
        "{MEMORY}{}{}",
        fault("deep", "deep", iso, ""),
        fault("deep_raw", "deep-raw", iso, ""),
    ));
    let snap = host.wait_for("both deep children to fail", Duration::from_secs(60), |s| {
        ["deep", "deep_raw"]
            .iter()
            .all(|n| s["collectors"][n]["state"] == "failed")
    });
    for name in ["deep", "deep_raw"] {
        let why = reason(&snap, name);
        assert!(
            why.contains("nested deeper than 64 levels"),
            "{name}: {why}"
        );
        assert!(snap["sections"].get(name).is_none(), "{name} stored");
    }
    assert_eq!(snap["collectors"]["memory"]["state"], "ok");
}

/// Guards `vitals plugin check` on deep sections: it reports the bound as a failed collect
/// instead of aborting.
#[test]
fn plugin_check_reports_a_deep_section() {
    let lib = plugin_lib("fault");
    for behaviour in ["deep", "deep-raw"] {
        let (ok, out, err) = run_vitals(&[
            "plugin",
            "check",
            &lib.display().to_string(),
            "--plugin-config",
            &format!("behaviour = \"{behaviour}\""),
        ]);
        assert!(!ok, "{behaviour}: {out}{err}");
        assert!(
            out.contains("collect:") && out.contains("nested deeper than 64 levels"),
            "{behaviour}: {out}{err}"
        );
        assert!(
            out.contains("result:"),
            "the check ran to its end: {out}{err}"
        );
    }
}

/// The children of a process, from each thread's `children` list in /proc.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|l| {
                    l.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The soft address-space limit of a process in bytes (`None`: unlimited or unreadable).
fn address_space_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Guards the default memory limit and the reasons of a child's death: an isolated plugin
/// with no `memory_limit` runs under `DEFAULT_MEMORY_LIMIT`; a leak that reaches its
/// limit is reported as running out of memory, a stack overflow as a stack overflow.
#[test]
fn isolated_children_have_a_memory_limit_and_say_why_they_died() {
    let iso = "interval = \"200ms\"\nisolation = \"process\"";
    let host = Host::start(&format!(
        "{}{}{}",
        fault("plain", "ok", iso, ""),
        fault(
            "leaks",
            "leak",
            &format!("{iso}\ndeadline = \"10s\"\nmemory_limit = \"160MiB\""),
            ""
        ),
        fault("overflows", "stack-overflow", iso, ""),
    ));
    let snap = host.wait_for(
        "the leak and the overflow to fail",
        Duration::from_secs(60),
        |s| {
            ["leaks", "overflows"].iter().all(|n| {
                s["collectors"][n]["state"] == "failed"
                    && s["collectors"][n]["restarts"].as_u64() >= Some(1)
            }) && s["collectors"]["plain"]["state"] == "ok"
        },
    );
    let leak = reason(&snap, "leaks");
    assert!(
        leak.contains("ran out of memory") && leak.contains("memory_limit of 160 MiB"),
        "{leak}"
    );
    let overflow = reason(&snap, "overflows");
    assert!(
        overflow.contains("stack overflow") && !overflow.contains("memory"),
        "{overflow}"
    );
    let default = vitals_host::worker::child::DEFAULT_MEMORY_LIMIT;
    let limits: Vec<Option<u64>> = children(host.pid())
        .into_iter()
        .map(address_space_limit)
        .collect();
    assert!(
        limits.contains(&Some(default)),
        "no child runs under the default limit of {default}: {limits:?}"
    );
}

/// Guards the bound on threads left stuck: an in-process collector whose collect never
/// returns, restarted 20 times, leaves at most `MAX_ABANDONED_THREADS` threads behind; past
/// that it fails with a reason saying it is stuck and pointing to process isolation.
#[test]
fn restarting_a_hung_in_process_collector_keeps_threads_bounded() {
    let host = Host::start(&format!(
        "{MEMORY}{}",
        fault(
            "hangs",
            "hang",
            "interval = \"100ms\"\ndeadline = \"200ms\"",
            ""
        )
    ));
    host.wait_for("the hang to show", Duration::from_secs(30), |s| {
        s["collectors"]["hangs"]["state"] == "failed"
    });
    let threads0 = thread_count(host.pid());
    let url = format!("{}/admin/monitor/collectors/hangs", host.base);
    for _ in 0..20 {
        let (s, _, body) = request("PUT", &url, &[], Some("{\"enabled\": false}"));
        assert_eq!(s, 200, "{body}");
        let (s, _, body) = request("PUT", &url, &[], Some("{\"enabled\": true}"));
        assert_eq!(s, 200, "{body}");
        host.wait_for(
            "the restarted collector to fail",
            Duration::from_secs(30),
            |s| s["collectors"]["hangs"]["state"] == "failed",
        );
    }
    let threads1 = thread_count(host.pid());
    let max = vitals_host::worker::thread::MAX_ABANDONED_THREADS as u64;
    assert!(
        threads1 <= threads0 + max + 4,
        "threads {threads0} -> {threads1} over 20 restarts"
    );
    let snap = host.wait_for("the stuck reason", Duration::from_secs(30), |s| {
        reason(s, "hangs").contains("MAX_ABANDONED_THREADS")
    });
    let why = reason(&snap, "hangs");
    assert!(why.contains("isolation = \"process\""), "{why}");
    assert_eq!(snap["collectors"]["memory"]["state"], "ok");
}
