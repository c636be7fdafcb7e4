//! End to end: the docker plugin reads the container list only after the daemon reports a
//! change (or every 10 s), through a counting proxy in front of the real daemon. Its own
//! test binary, so no other test's containers change the daemon meanwhile.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vitals_e2e::docker::{daemon_or_skip, docker, Containers, Proxy};
use vitals_e2e::{plugin_lib, toml_path, Host};

/// Guards the event-driven list: ten quiet collects make at most one list request, and a
/// container started, then stopped, shows in the section within a few collects, well before
/// the 10 s refresh would have listed it.
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
    let collects = |s: &serde_json::Value| s["collectors"]["docker"]["collects_total"].as_u64();

    // Quiet: about ten collects.
    let (_, before) = host.get("/admin/monitor/system");
    let lists_before = proxy.lists.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    let (_, after) = host.get("/admin/monitor/system");
    let quiet_lists = proxy.lists.load(Ordering::SeqCst) - lists_before;
    let quiet_collects = collects(&after).unwrap_or(0) - collects(&before).unwrap_or(0);
    eprintln!("quiet: {quiet_collects} collects, {quiet_lists} list requests");
    assert!(quiet_collects >= 5, "{after}");
    assert!(
        quiet_lists <= 1,
        "{quiet_lists} list requests in {quiet_collects} quiet collects"
    );

    // A change: the new container is listed at once.
    let containers = Containers::new("events");
    let started = Instant::now();
    let id = containers.run("sleeper", &[], &["sleep", "600"]);
    let name = containers.name("sleeper");
    let listed = |state: &'static str| {
        let name = name.clone();
        move |s: &serde_json::Value| {
            s["sections"]["docker"]["containers"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["name"] == name && c["status"] == state))
        }
    };
    host.wait_for(
        "the new container",
        Duration::from_secs(20),
        listed("running"),
    );
    let seen_after = started.elapsed();
    eprintln!("the new container was in the section {seen_after:?} after `docker run` returned");
    assert!(
        seen_after < Duration::from_secs(6),
        "listed after {seen_after:?}: only the 10 s refresh found it, not its event"
    );

    let stopped = Instant::now();
    docker(&["kill", &id]);
    host.wait_for(
        "the killed container",
        Duration::from_secs(20),
        listed("exited"),
    );
    let seen_after = stopped.elapsed();
    eprintln!("the kill was in the section {seen_after:?} after `docker kill` returned");
    assert!(seen_after < Duration::from_secs(6), "after {seen_after:?}");
}
