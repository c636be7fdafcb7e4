//! End to end: state kept right under concurrent and noisy requests: parallel collector changes, component errors under request noise.

use serde_json::Value;
use vitals_e2e::{plugin_lib, request, toml_path, Host};

/// Guards atomic collector changes: eight PUTs sent at the same moment, each retiming its own
/// collector, all take effect, round after round (a change applied from a stale copy of the
/// config would undo another's).
#[test]
fn parallel_puts_lose_no_update() {
    let n = 8;
    let mut config = String::new();
    for i in 0..n {
        config.push_str(&format!(
            "[collectors.c{i}]\nlibrary = {}\ninterval = \"1s\"\n\n",
            toml_path(&plugin_lib("fault"))
        ));
    }
    let host = Host::start(&config);
    for round in 0..30 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let url = format!("{}/admin/monitor/collectors/c{i}", host.base);
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let body = format!("{{\"interval_seconds\": {}}}", 2 + round);
                    barrier.wait();
                    request("PUT", &url, &[], Some(&body)).0
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread"), 200);
        }
        let (_, _, list) = request(
            "GET",
            &format!("{}/admin/monitor/collectors", host.base),
            &[],
            None,
        );
        let intervals: Vec<Option<f64>> = (0..n)
            .map(|i| {
                list["collectors"]
                    .as_array()
                    .and_then(|a| a.iter().find(|c| c["name"] == format!("c{i}")))
                    .and_then(|c| c["interval_seconds"].as_f64())
            })
            .collect();
        assert!(
            intervals.iter().all(|v| *v == Some(f64::from(2 + round))),
            "round {round}: an update was lost: {intervals:?}"
        );
    }
}

/// Guards the errors list: a component's one-time error stays in `/errors` after thousands of
/// failed requests, which are kept (bounded) apart from it.
#[test]
fn request_noise_does_not_push_out_component_errors() {
    let host = Host::start(
        "[server]\nmax_errors = 50\n\n[collectors.memory]\ninterval = \"1s\"\n\n\
         [collectors.broken]\nlibrary = \"/nonexistent/libvitals_plugin_missing.so\"\n",
    );
    let has_component = |e: &Value| {
        e["errors"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["source"] != "request"))
    };
    let first = host.get_ok("/admin/monitor/errors");
    assert!(has_component(&first), "a load error is listed: {first}");
    for i in 0..2000 {
        let (s, _, _) = request(
            "GET",
            &format!("{}/admin/monitor/no-such-route-{i}", host.base),
            &[],
            None,
        );
        assert_eq!(s, 404);
    }
    let after = host.get_ok("/admin/monitor/errors");
    assert!(
        has_component(&after),
        "the load error was pushed out: {after}"
    );
    let requests = after["errors"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|e| e["source"] == "request").count());
    assert!(
        (1..=50).contains(&requests),
        "request errors listed: {requests}"
    );
}
