//! End to end: the built host with the docker plugin against the real Docker daemon (its own labelled containers) and against missing or vanishing daemons.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::docker::{daemon_or_skip, docker, Containers, Proxy, IMAGE};
use vitals_e2e::{plugin_lib, toml_path, Host};

/// How far the plugin's CPU % of the busy container may be from `docker stats`' figure, in
/// percentage points: both sample about one second of a container capped at half a CPU, at
/// slightly different moments on a machine that also builds code.
const CPU_TOLERANCE_POINTS: f64 = 15.0;

fn host_with(config: &str) -> Host {
    Host::start(&format!(
        "[collectors.docker]\nlibrary = {lib}\ninterval = \"1s\"\ndeadline = \"8s\"\nconfig = {config}\n",
        lib = toml_path(&plugin_lib("docker")),
    ))
}

fn container<'a>(snap: &'a Value, name: &str) -> Option<&'a Value> {
    snap["sections"]["docker"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn field(snap: &Value, name: &str, key: &str) -> Value {
    container(snap, name).map_or(Value::Null, |c| c[key].clone())
}

/// `docker stats --no-stream`'s CPU % for one container.
fn docker_stats_cpu(name: &str) -> f64 {
    let text = docker(&["stats", "--no-stream", "--format", "{{.CPUPerc}}", name]);
    text.trim_end_matches('%')
        .parse()
        .unwrap_or_else(|e| panic!("docker stats gave {text:?}: {e}"))
}

/// Guards the whole container picture through the host: names, images, states, published
/// ports, uptime that grows, memory under the limit, network counters that move, and the
/// busy container's CPU % against `docker stats` (within `CPU_TOLERANCE_POINTS`).
#[test]
fn reports_the_test_containers_like_docker_does() {
    if !daemon_or_skip() {
        return;
    }
    let c = Containers::new("picture");
    let busy_id = c.run(
        "busy",
        &["--cpus", "0.5"],
        &["sh", "-c", "while :; do :; done"],
    );
    c.run(
        "idle",
        &["--memory", "64m", "-p", "127.0.0.1::80"],
        &["sh", "-c", "while :; do echo hello | nc -l -p 80; done"],
    );
    c.run("exited", &[], &["sh", "-c", "exit 3"]);
    let (busy, idle, exited) = (c.name("busy"), c.name("idle"), c.name("exited"));
    let port = docker(&["port", &idle, "80/tcp"]);
    let port = port.lines().next().unwrap_or_default().to_owned();

    let host = host_with("{ include_stopped = true }");
    let snap = host.wait_for(
        "the three containers, the busy one with a CPU figure and the exited one stopped",
        Duration::from_secs(30),
        |s| {
            field(s, &busy, "cpu_usage_percent").is_f64()
                && field(s, &idle, "cpu_usage_percent").is_f64()
                && field(s, &exited, "status") == "exited"
        },
    );
    let docker_section = &snap["sections"]["docker"];
    assert_eq!(snap["collectors"]["docker"]["state"], "ok");
    // The other tests' containers share the daemon: a restarting one whose process ended
    // between its inspect and its read is served by the stats API, which adds `api+`.
    assert!(
        docker_section["stats_source"]
            .as_str()
            .is_some_and(|s| s.split('+').any(|p| p.starts_with("cgroup"))),
        "a local daemon's containers are read from their cgroup files: {docker_section}"
    );
    assert!(docker_section["server_version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert!(docker_section["containers_running"].as_u64() >= Some(2));
    assert!(docker_section["containers_stopped"].as_u64() >= Some(1));

    let b = container(&snap, &busy).expect("busy listed");
    assert_eq!(b["id"], busy_id);
    assert_eq!(b["image"], IMAGE);
    assert_eq!(b["status"], "running");
    assert_eq!(b["ports"], serde_json::json!([]));
    assert_eq!(b["restart_count"], 0);
    assert!(b["pids"].as_u64() >= Some(1), "{b}");

    let i = container(&snap, &idle).expect("idle listed");
    assert_eq!(i["status"], "running");
    assert_eq!(i["image"], IMAGE);
    assert_eq!(
        i["ports"],
        serde_json::json!([format!("{port}->80/tcp")]),
        "docker port says {port}"
    );
    assert_eq!(i["memory_limit_bytes"], 64 * 1024 * 1024);
    let used = i["memory_used_bytes"].as_u64().expect("memory used");
    assert!(used > 0 && used < 64 * 1024 * 1024, "{i}");
    let pct = i["memory_used_percent"].as_f64().expect("memory percent");
    assert!(pct > 0.0 && pct < 100.0, "{i}");
    assert!(
        i["cpu_usage_percent"].as_f64().expect("idle cpu") < 5.0,
        "{i}"
    );
    assert!(
        i["block_read_bytes"].is_u64() && i["block_write_bytes"].is_u64(),
        "{i}"
    );

    let e = container(&snap, &exited).expect("exited listed");
    assert_eq!(e["image"], IMAGE);
    assert!(
        e["status_text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Exited (3)")),
        "{e}"
    );
    assert!(
        e["uptime_seconds"].is_null() && e["cpu_usage_percent"].is_null(),
        "{e}"
    );

    // Uptime grows with the wall clock.
    let up0 = field(&snap, &idle, "uptime_seconds")
        .as_u64()
        .expect("uptime");
    host.wait_for(
        "the idle container's uptime to grow",
        Duration::from_secs(20),
        |s| field(s, &idle, "uptime_seconds").as_u64() >= Some(up0 + 2),
    );

    // The published port is real, and talking to it moves the container's network counters.
    let tx0 = field(&snap, &idle, "network_tx_bytes")
        .as_u64()
        .expect("tx bytes");
    let mut answer = String::new();
    std::net::TcpStream::connect(&port)
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.read_to_string(&mut answer)
        })
        .unwrap_or_else(|e| panic!("connect to the published port {port}: {e}"));
    assert_eq!(answer.trim(), "hello");
    host.wait_for(
        "the idle container's sent bytes to grow",
        Duration::from_secs(20),
        |s| field(s, &idle, "network_tx_bytes").as_u64() > Some(tx0),
    );

    // CPU % as docker stats reports it, over about the same second.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let theirs = docker_stats_cpu(&busy);
        let ours = field(
            &host.get_ok("/admin/monitor/system"),
            &busy,
            "cpu_usage_percent",
        )
        .as_f64()
        .expect("busy cpu");
        assert!(
            ours <= 50.0 + CPU_TOLERANCE_POINTS,
            "capped at half a CPU, got {ours}"
        );
        seen.push((ours, theirs));
        if (ours - theirs).abs() <= CPU_TOLERANCE_POINTS {
            eprintln!("busy container CPU %: vitals {ours:.1}, docker stats {theirs:.1}");
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!(
        "the busy container's CPU % (vitals, docker stats) stayed more than {CPU_TOLERANCE_POINTS} points apart: {seen:?}"
    );
}

/// Guards the stats-API path against the real daemon (what a remote or unreadable-cgroup
/// daemon uses), and `include_stopped = false`: stopped containers are counted, not listed.
#[test]
fn the_stats_api_path_reports_usage_and_hides_stopped_containers() {
    if !daemon_or_skip() {
        return;
    }
    let c = Containers::new("api");
    c.run(
        "busy",
        &["--cpus", "0.5"],
        &["sh", "-c", "while :; do :; done"],
    );
    c.run("exited", &[], &["true"]);
    let (busy, exited) = (c.name("busy"), c.name("exited"));
    docker(&["wait", &exited]);

    let host = host_with("{ stats_source = \"api\", include_stopped = false }");
    let snap = host.wait_for(
        "the busy container with a CPU figure from the stats API",
        Duration::from_secs(30),
        |s| field(s, &busy, "cpu_usage_percent").is_f64(),
    );
    let section = &snap["sections"]["docker"];
    assert_eq!(section["stats_source"], "api", "{section}");
    assert!(
        container(&snap, &exited).is_none(),
        "stopped containers are not listed"
    );
    assert!(
        section["containers_stopped"].as_u64() >= Some(1),
        "{section}"
    );
    let b = container(&snap, &busy).expect("busy listed");
    let cpu = b["cpu_usage_percent"].as_f64().expect("cpu");
    assert!(cpu > 5.0 && cpu <= 50.0 + CPU_TOLERANCE_POINTS, "{b}");
    let used = b["memory_used_bytes"].as_u64().expect("memory");
    assert!(
        used > 0 && Some(used) < b["memory_limit_bytes"].as_u64(),
        "{b}"
    );
    assert!(b["network_rx_bytes"].is_u64(), "{b}");
    assert!(b["uptime_seconds"].is_u64(), "{b}");
}

/// Guards restart counts and health checks: a container the daemon restarted twice under
/// its policy, and one whose health check passes.
#[test]
fn reports_restart_counts_and_health() {
    if !daemon_or_skip() {
        return;
    }
    let c = Containers::new("restart");
    c.run(
        "flaky",
        &["--restart", "on-failure:2"],
        &["sh", "-c", "exit 1"],
    );
    c.run(
        "checked",
        &["--health-cmd", "true", "--health-interval", "1s"],
        &["sleep", "3600"],
    );
    let (flaky, checked) = (c.name("flaky"), c.name("checked"));
    let host = host_with("{}");
    let snap = host.wait_for(
        "two restarts and a healthy container",
        Duration::from_secs(40),
        |s| {
            field(s, &flaky, "restart_count") == 2
                && field(s, &flaky, "status") == "exited"
                && field(s, &checked, "health") == "healthy"
        },
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.RestartCount}}", &flaky]),
        "2",
        "the daemon agrees"
    );
    assert!(field(&snap, &checked, "status_text")
        .as_str()
        .is_some_and(|t| t.contains("(healthy)")));
}

/// Guards the no-daemon state: a socket that does not exist makes the collector
/// `unavailable` with the reason, and health stays 200.
#[test]
fn a_missing_socket_is_unavailable_and_the_host_stays_healthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let host = host_with(&format!("{{ host = {} }}", toml_path(&socket)));
    let snap = host.wait_for("docker to be unavailable", Duration::from_secs(20), |s| {
        s["collectors"]["docker"]["state"] == "unavailable"
    });
    let reason = snap["collectors"]["docker"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains(&socket.display().to_string()), "{reason}");
    assert!(reason.contains("does not exist"), "{reason}");
    assert!(
        snap["sections"]["docker"].is_null(),
        "no section without a daemon"
    );
    let (status, health) = host.get("/admin/monitor/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health["components"]["collector:docker"]["state"], "unavailable",
        "{health}"
    );
}

/// Guards recovery: the daemon's socket goes away (unavailable, health 200) and comes back,
/// and the section returns by itself with no restart of the host.
#[test]
fn the_section_recovers_when_the_daemon_comes_back() {
    if !daemon_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("proxy.sock");
    let mut proxy = Proxy::start(&socket);
    let host = Host::start(&format!(
        "[collectors.docker]\nlibrary = {lib}\ninterval = \"300ms\"\ndeadline = \"5s\"\nconfig = {{ host = {sock} }}\n",
        lib = toml_path(&plugin_lib("docker")),
        sock = toml_path(&socket),
    ));
    host.wait_for(
        "docker ok through the proxy",
        Duration::from_secs(20),
        |s| s["collectors"]["docker"]["state"] == "ok",
    );
    assert!(proxy.served.load(Ordering::SeqCst) > 0);

    proxy.stop();
    let snap = host.wait_for("docker unavailable", Duration::from_secs(20), |s| {
        s["collectors"]["docker"]["state"] == "unavailable"
    });
    let reason = snap["collectors"]["docker"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("proxy.sock"), "{reason}");
    let (status, health) = host.get("/admin/monitor/health");
    assert_eq!(status, 200, "{health}");

    let back = Instant::now();
    let _proxy = Proxy::start(&socket);
    let snap = host.wait_for(
        "docker ok again after the daemon came back",
        Duration::from_secs(70),
        |s| {
            s["collectors"]["docker"]["state"] == "ok"
                && s["collectors"]["docker"]["stale"] == false
        },
    );
    assert!(snap["sections"]["docker"]["reachable"] == true);
    eprintln!("recovered {:?} after the socket came back", back.elapsed());
    assert!(
        host.log().contains("answers again"),
        "the recovery is logged:\n{}",
        host.log()
    );
}
