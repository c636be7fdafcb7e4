//! End to end: the docker plugin reads the container list only after the daemon reports a
//! change (or every 10 s), through a counting proxy in front of the real daemon. Its own
//! test binary, so no other test's containers change the daemon meanwhile.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vitals_e2e::docker::{daemon_or_skip, docker, Containers, Proxy};
use vitals_e2e::{plugin_lib, toml_path, Host};
// Without an event, the container list is read again only this long after the last read.
use vitals_plugin_docker::LIST_EVERY;

/// Seconds since the Unix epoch, as `docker events --since` takes them.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How many container events the daemon reported between two times.
fn container_events(since: f64, until: f64) -> u64 {
    let out = docker(&[
        "events",
        "--since",
        &format!("{since:.3}"),
        "--until",
        &format!("{until:.3}"),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    out.lines().filter(|l| !l.trim().is_empty()).count() as u64
}

/// Asserts that a list request since `since` came less than [`LIST_EVERY`] after the one
/// before it, i.e. that `what` was listed because of its event, not by the periodic re-list.
fn assert_event_list(proxy: &Proxy, since: Instant, what: &str) {
    let times = proxy.list_times();
    let gaps: Vec<Duration> = times
        .windows(2)
        .filter(|w| w[1] >= since)
        .map(|w| w[1] - w[0])
        .collect();
    eprintln!(
        "{what}: list requests since the change came {gaps:?} after the one before; first {:?} after the change",
        times.iter().find(|t| **t >= since).map(|t| *t - since)
    );
    assert!(
        gaps.iter().any(|g| *g < LIST_EVERY),
        "{what} was listed only by the periodic re-list (list requests {gaps:?} apart, every {LIST_EVERY:?}), not because of its event"
    );
}

/// Guards the event-driven list: ten quiet collects make no list request beyond the periodic
/// re-list, and a container started, then stopped, is listed because of its events, by a list
/// request the periodic re-list could not have made.
#[test]
fn the_list_is_read_again_only_after_a_container_event() {
    if !daemon_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("proxy.sock");
    let proxy = Proxy::start(&socket);
    let host = Host::start(&format!(
        "[collectors.docker]\nlibrary = {lib}\ninterval = \"300ms\"\ndeadline = \"5s\"\nconfig = {{ host = {sock} }}\n",
        lib = toml_path(&plugin_lib("docker")),
        sock = toml_path(&socket),
    ));
    host.wait_for("docker ok", Duration::from_secs(20), |s| {
        s["collectors"]["docker"]["state"] == "ok"
    });
    let collects = |s: &serde_json::Value| {
        s["collectors"]["docker"]["collects_total"]
            .as_u64()
            .unwrap_or(0)
    };

    // Quiet: ten collects make no list request beyond the periodic re-list and one per
    // container event on the daemon (someone else's, on a shared daemon); a list per collect
    // would make ten.
    let before = host.get_ok("/admin/monitor/system");
    let lists_before = proxy.lists.load(Ordering::SeqCst);
    let quiet_from = Instant::now();
    let quiet_since = unix_now();
    host.wait_for("ten quiet collects", Duration::from_secs(60), |s| {
        collects(s) >= collects(&before) + 10
    });
    let quiet_lists = proxy.lists.load(Ordering::SeqCst) - lists_before;
    let events = container_events(quiet_since, unix_now());
    let allowed = 1 + quiet_from.elapsed().as_secs() / LIST_EVERY.as_secs() + events;
    eprintln!(
        "quiet: 10 collects in {:.1} s, {quiet_lists} list requests, {events} container events",
        quiet_from.elapsed().as_secs_f64()
    );
    assert!(
        quiet_lists as u64 <= allowed,
        "{quiet_lists} list requests in ten quiet collects; the periodic re-list and {events} container events allow {allowed}"
    );

    // A change is listed because of its event. Right after a periodic list the next one is
    // LIST_EVERY away, so a list request sooner than that after the one before it was
    // triggered by something else: the container's events. A collector that ignored events
    // would only ever list LIST_EVERY or more apart, however fast or slow the machine; a
    // working one listed 275-590 ms after `docker run` or `docker kill` returned in 5 runs
    // beside `cargo build --release --workspace` (load average 4-6 on 2 cores): the only
    // time compared is the collector's own re-list period, over 15 times that.
    let containers = Containers::new("events");
    let name = containers.name("sleeper");
    let listed = |state: &'static str| {
        let name = name.clone();
        move |s: &serde_json::Value| {
            s["sections"]["docker"]["containers"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["name"] == name && c["status"] == state))
        }
    };
    proxy
        .next_list(LIST_EVERY * 3)
        .expect("the periodic re-list came");
    let started = Instant::now();
    let id = containers.run("sleeper", &[], &["sleep", "600"]);
    host.wait_for(
        "the new container",
        Duration::from_secs(60),
        listed("running"),
    );
    assert_event_list(&proxy, started, "the new container");

    proxy
        .next_list(LIST_EVERY * 3)
        .expect("the periodic re-list came");
    let stopped = Instant::now();
    docker(&["kill", &id]);
    host.wait_for(
        "the killed container",
        Duration::from_secs(60),
        listed("exited"),
    );
    assert_event_list(&proxy, stopped, "the killed container");
}
