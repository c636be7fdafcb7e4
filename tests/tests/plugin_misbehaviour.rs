//! Plugins that misbehave in ways the SDK cannot catch: calling exit(0) in-process, closing the process's standard output and error.

use std::time::Duration;

use vitals_e2e::{plugin_lib, toml_path, Host, SseReader};

fn fault(name: &str, behaviour: &str) -> String {
    format!(
        "[collectors.{name}]\nlibrary = {}\ninterval = \"200ms\"\nconfig = {{ behaviour = \"{behaviour}\", good_collects = 3 }}\n\n",
        toml_path(&plugin_lib("fault"))
    )
}

/// Guards the exit hook: an in-process plugin that calls `exit(0)` ends the host with a
/// failure status (so `Restart=on-failure` restarts it too), and the log names the collector.
#[test]
fn an_exiting_plugin_is_named_and_the_exit_is_a_failure() {
    let mut host = Host::start(&format!(
        "[collectors.memory]\ninterval = \"200ms\"\n\n{}",
        fault("quitter", "exit")
    ));
    let status = host
        .wait_exit(Duration::from_secs(30))
        .expect("the plugin's exit(0) ends the host");
    assert_eq!(status.code(), Some(70), "{status:?}\n{}", host.log());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        host.log()
            .contains("the `quitter` collector's plugin ended the process"),
        "{}",
        host.log()
    );
}

/// Guards the log's own descriptor: after a plugin closes descriptors 1 and 2, new
/// connections (which reuse those numbers) carry no log lines, and the log goes on.
#[test]
fn closing_stdio_does_not_send_the_log_into_connections() {
    let host = Host::start(&format!(
        "[collectors.memory]\ninterval = \"200ms\"\n\n{}",
        fault("closer", "close-stdio")
    ));
    host.wait_for(
        "the closer's fourth collect",
        Duration::from_secs(30),
        |s| s["collectors"]["closer"]["collects_total"].as_u64() >= Some(4),
    );
    // New connections now get the lowest free descriptors, 1 and 2 among them.
    let streams: Vec<SseReader> = (0..4)
        .map(|_| SseReader::open(&host.base, "/admin/monitor/stream", &[]))
        .collect();
    let lines_before = host.log().lines().count();
    // Something to log: a config reload.
    host.hangup();
    let start = std::time::Instant::now();
    while host.log().lines().count() == lines_before {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the log stopped after the plugin closed stdio"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in &streams {
        assert_eq!(s.status, 200);
        for _ in 0..3 {
            let Some(ev) = s.next(Duration::from_secs(5)) else {
                break;
            };
            assert!(
                !ev.data.contains("INFO") && !ev.data.contains("config reloaded"),
                "a log line in an event stream: {}",
                ev.data
            );
        }
    }
}

/// Guards the child protocol's bound: an isolated plugin whose reply passes
/// `MAX_REPLY_BYTES` is killed with a reason naming the bound, instead of the host buffering
/// whatever it writes; its neighbours keep collecting.
#[test]
fn an_isolated_plugin_over_the_reply_bound_is_killed() {
    let host = Host::start(&format!(
        "[collectors.memory]\ninterval = \"200ms\"\n\n[collectors.bloat]\nlibrary = {}\ninterval = \"1s\"\ndeadline = \"10s\"\nisolation = \"process\"\nconfig = {{ behaviour = \"huge\" }}\n",
        toml_path(&plugin_lib("fault"))
    ));
    let bound = vitals_host::worker::child::MAX_REPLY_BYTES.to_string();
    let snap = host.wait_for(
        "the bloat collector to fail on the bound",
        Duration::from_secs(60),
        |s| {
            s["collectors"]["bloat"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&bound))
        },
    );
    assert_eq!(snap["collectors"]["bloat"]["state"], "failed");
    assert!(
        snap["collectors"]["bloat"]["restarts"].as_u64() >= Some(1),
        "{}",
        snap["collectors"]["bloat"]
    );
    assert_eq!(snap["collectors"]["memory"]["state"], "ok");
    assert!(
        vitals_e2e::rss_bytes(host.pid()) < 200 << 20,
        "the host did not buffer the child's output"
    );
}
