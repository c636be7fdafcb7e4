//! The durable history through the real binary: range queries, events, restarts, SIGKILL, a corrupt store, a full or read-only disk.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::{plugin_lib, toml_path, Host};

/// A config with the CPU collector every 100 ms (plus `extra`) and the durable history at
/// `path`, flushed every second.
fn config(path: &Path, extra: &str) -> String {
    format!(
        "[history]\npath = {}\nflush_interval = \"1s\"\n\n[collectors.cpu]\ninterval = \"100ms\"\n{extra}",
        toml_path(path)
    )
}

/// How many CPU usage samples the durable history holds from the last hour (stored and buffered).
fn cpu_samples(host: &Host) -> u64 {
    let body = host.get_ok("/admin/monitor/history?series=cpu.usage_percent&from=-1h&step=1h");
    body["series"][0]["points"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p[4].as_u64()).sum())
        .unwrap_or(0)
}

/// The points of the last `range` of CPU usage at one-second steps.
fn cpu_range(host: &Host, range: &str) -> Value {
    host.get_ok(&format!(
        "/admin/monitor/history?series=cpu.usage_percent&from=-{range}&step=1s"
    ))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn warnings(host: &Host) -> Vec<String> {
    let (_, h) = host.get("/admin/monitor/health");
    h["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Guards the range API: points with min <= avg <= max per step, the CSV download, the
/// 2,000-point bound with a clear 400, and a required `series`.
#[test]
fn range_queries_answer_points_csv_and_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Host::start(&config(&dir.path().join("h.db"), ""));
    wait_until(
        "three seconds of CPU points",
        Duration::from_secs(30),
        || {
            cpu_range(&host, "1m")["series"][0]["points"]
                .as_array()
                .is_some_and(|p| p.len() >= 3)
        },
    );
    let body = cpu_range(&host, "1m");
    let series = &body["series"][0];
    assert_eq!(series["collector"], "cpu");
    assert_eq!(series["unit"], "percent");
    assert_eq!(series["tier"], "raw");
    for p in series["points"].as_array().expect("points") {
        let (min, avg, max) = (
            p[1].as_f64().expect("min"),
            p[2].as_f64().expect("avg"),
            p[3].as_f64().expect("max"),
        );
        assert!(min <= avg && avg <= max, "{p}");
        assert!((0.0..=100.0).contains(&avg), "{p}");
        assert!(p[4].as_u64().is_some_and(|n| n >= 1), "{p}");
    }
    // Ten collects per second: a one-second step aggregates several of them.
    let whole = host.get_ok("/admin/monitor/history?series=cpu&from=-1m&step=1m");
    let names: Vec<&str> = whole["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains(&"usage_percent"), "{names:?}");

    let resp = vitals_e2e::client()
        .get(format!(
            "{}/admin/monitor/history?series=cpu.usage_percent&from=-1m&step=1s&format=csv",
            host.base
        ))
        .send()
        .expect("csv");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/csv"));
    let text = resp.text().expect("text");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("collector,name,label,time_unix_ms,min,avg,max,count")
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("cpu,usage_percent,,")),
        "{text}"
    );

    let (status, body) =
        host.get("/admin/monitor/history?series=cpu.usage_percent&from=-1h&step=1ms");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("2000"),
        "{body}"
    );
    let (status, body) = host.get("/admin/monitor/history?from=-1h");
    assert_eq!(status, 400, "{body}");
    let (status, body) = host.get("/admin/monitor/history?series=cpu&from=yesterday");
    assert_eq!(status, 400, "{body}");
    // Without range parameters `/history` is still the live window.
    let live = host.get_ok("/admin/monitor/history?collector=cpu");
    assert!(
        live["cpu"].as_array().is_some_and(|s| !s.is_empty()),
        "{live}"
    );
}

/// Guards the whole-collector view under item churn: a collector whose items were more than
/// a request answers over the range (here 10 new ones every collect, as containers come and
/// go) still answers its page view with the items present now, and says what it left out;
/// naming one item with `label` still answers that one alone.
#[test]
fn a_churned_collector_answers_the_items_present_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("churn.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nf=\"$(dirname \"$0\")/n\"\nn=$(cat \"$f\" 2>/dev/null || echo 0)\necho $((n + 1)) > \"$f\"\n\
         printf '{\"items\": ['\nfor i in 0 1 2 3 4 5 6 7 8 9; do\n  [ $i -gt 0 ] && printf ','\n  printf '{\"name\": \"i%s-%s\", \"v\": %s}' $n $i $i\ndone\nprintf ']}\\n'\n",
    )
    .expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let extra = format!(
        "\n[collectors.churn]\ncommand = [{}]\ninterval = \"100ms\"\n\
         series = [{{ name = \"v\", pointer = \"/items/*/v\", unit = \"\", label = \"name\" }}]\n",
        toml_path(&script)
    );
    // Five points live: an item leaves the live history five collects after its last one.
    let host = Host::start(&config(&dir.path().join("h.db"), &extra).replacen(
        "[history]\n",
        "[history]\npoints = 5\n",
        1,
    ));
    let view = "/admin/monitor/history?series=churn&from=-1h&step=1m";
    wait_until(
        "over 256 items stored for churn.v",
        Duration::from_secs(60),
        || host.get(view).1["partial"].is_array(),
    );
    let body = host.get_ok(view);
    let partial = &body["partial"][0];
    assert_eq!(partial["series"], "churn.v", "{body}");
    assert!(partial["matched"].as_u64().unwrap_or(0) > 256, "{body}");
    let live: Vec<String> = host.get_ok("/admin/monitor/history?collector=churn")["churn"]
        .as_array()
        .expect("live series")
        .iter()
        .filter_map(|s| s["label"].as_str().map(str::to_owned))
        .collect();
    let answered: Vec<&str> = body["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|s| s["label"].as_str())
        .collect();
    assert!(
        !answered.is_empty() && answered.len() <= 256,
        "{} answered",
        answered.len()
    );
    // The answered items are among the live ones of about that moment (the live window
    // moves on between the two requests, so only the overlap is checked).
    assert!(
        answered.iter().any(|l| live.iter().any(|x| x == l)),
        "answered {answered:?}, live {live:?}"
    );
    let one = host.get_ok("/admin/monitor/history?series=churn.v&label=i1-3&from=-1h&step=1m");
    assert_eq!(one["series"].as_array().map(Vec::len), Some(1), "{one}");
    assert!(one.get("partial").is_none(), "{one}");
}

/// Guards the events kept with the series: host start and stop, config reloads, and a
/// collector failing and recovering, newest first and filterable by source; they survive a restart.
#[test]
fn events_record_failures_recoveries_reloads_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.db");
    let flaky = format!(
        "[collectors.flaky]\nlibrary = {}\ninterval = \"200ms\"\nconfig = {{ behaviour = \"error\", good_collects = 2 }}\n",
        toml_path(&plugin_lib("fault"))
    );
    let host = Host::start(&config(&path, &flaky));
    wait_until(
        "the flaky collector's failure event",
        Duration::from_secs(30),
        || {
            host.get_ok("/admin/monitor/events?source=collector:flaky")["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["kind"] == "failed"))
        },
    );
    // A reload that turns the collector off and on again.
    host.hangup();
    wait_until("the reload event", Duration::from_secs(30), || {
        host.get_ok("/admin/monitor/events?source=config")["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "reloaded"))
    });
    let all = host.get_ok("/admin/monitor/events");
    let events = all["events"].as_array().expect("events");
    let times: Vec<i64> = events
        .iter()
        .filter_map(|e| e["time_unix_ms"].as_i64())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["source"] == "host" && e["kind"] == "started"),
        "{all}"
    );
    let failed = events
        .iter()
        .find(|e| e["source"] == "collector:flaky" && e["kind"] == "failed")
        .expect("failure event");
    assert!(
        failed["text"]
            .as_str()
            .unwrap_or("")
            .contains("flaky failed"),
        "{failed}"
    );
    let mut host = host;
    host.terminate();
    assert!(
        host.wait_exit(Duration::from_secs(20)).is_some(),
        "SIGTERM ends the host"
    );
    drop(host);

    let host = Host::start(&config(&path, ""));
    wait_until(
        "events from before the restart",
        Duration::from_secs(30),
        || {
            let e = host.get_ok("/admin/monitor/events?source=host");
            let kinds: Vec<&str> = e["events"]
                .as_array()
                .map(|l| l.iter().filter_map(|e| e["kind"].as_str()).collect())
                .unwrap_or_default();
            kinds.iter().filter(|k| **k == "started").count() >= 2 && kinds.contains(&"stopped")
        },
    );
    let (status, body) = host.get("/admin/monitor/events?limit=0");
    assert_eq!(status, 400, "{body}");
}

/// Guards durability: restarting keeps the history, and SIGKILL during writes, 50 times in a
/// row, never corrupts the store and loses at most about one flush interval of points.
#[test]
fn sigkill_fifty_times_loses_at_most_a_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.db");
    let cfg = config(&path, "");
    let mut seen_before_kill = 0usize;
    for round in 0..50 {
        let host = Host::start(&cfg);
        let at_start = cpu_samples(&host) as usize;
        // Ten points a second are collected; a flush every second: what was seen a flush
        // before the kill must have been kept (a generous 3 s of points of slack for a
        // loaded machine, against ~15 s of points written per round).
        assert!(
            at_start + 30 >= seen_before_kill,
            "round {round}: {at_start} points after the restart, {seen_before_kill} seen before the kill"
        );
        let w = warnings(&host);
        assert!(w.is_empty(), "round {round}: {w:?}");
        std::thread::sleep(Duration::from_millis(1200 + (round % 5) * 150));
        seen_before_kill = cpu_samples(&host) as usize;
        assert!(seen_before_kill > at_start, "round {round}: no new points");
        // Host's Drop sends SIGKILL.
        drop(host);
    }
    let host = Host::start(&cfg);
    assert!(cpu_samples(&host) as usize + 30 >= seen_before_kill);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt"))
        .collect();
    assert!(aside.is_empty(), "no store was ever moved aside: {aside:?}");
}

/// Guards a corrupt store: moved aside with a clear error in health and `/errors`, a fresh
/// store starts, live monitoring never stops.
#[test]
fn corrupt_store_is_moved_aside_and_a_fresh_one_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.db");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).expect("garbage");
    let host = Host::start(&config(&path, ""));
    host.wait_for("a CPU section", Duration::from_secs(30), |s| {
        !s["sections"]["cpu"].is_null()
    });
    wait_until("the corruption warning", Duration::from_secs(30), || {
        warnings(&host)
            .iter()
            .any(|w| w.contains("corrupt") && w.contains("moved aside"))
    });
    let (status, _) = host.get("/admin/monitor/health");
    assert_eq!(
        status, 200,
        "a recovered store is not a failure of the host"
    );
    // The error is listed once the recorder has opened the store (the host checks every 100 ms).
    wait_until("the corruption in /errors", Duration::from_secs(30), || {
        host.get_ok("/admin/monitor/errors")["errors"]
            .as_array()
            .is_some_and(|e| {
                e.iter().any(|e| {
                    e["source"] == "history"
                        && e["message"].as_str().unwrap_or("").contains("corrupt")
                })
            })
    });
    let moved = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("h.db.corrupt"));
    assert!(moved, "the damaged file is kept aside");
    wait_until("points in the fresh store", Duration::from_secs(30), || {
        cpu_samples(&host) > 0
    });
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop; `None` where mounting is not allowed.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.0.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn paused(host: &Host) -> bool {
    host.get_ok("/admin/monitor/health")["components"]["history"]["details"]["durable"]["state"]
        == "paused"
}

/// Guards a read-only and a full disk: writing pauses with a health warning (200), live
/// monitoring goes on, and writing resumes by itself when the disk takes writes again.
#[test]
fn full_or_read_only_disk_pauses_and_resumes() {
    let Some(fs) = Tmpfs::mount("4m") else {
        vitals_e2e::skip(
            "mounting a tmpfs needs root: the full and read-only disk cases are not tested",
        );
        return;
    };
    let path = fs.0.path().join("h.db");
    let host = Host::start(&config(&path, ""));
    wait_until("points on disk", Duration::from_secs(30), || {
        host.get_ok("/admin/monitor/health")["components"]["history"]["details"]["durable"]
            ["file_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0)
    });

    fs.remount("rw");
    wait_until("writing to resume", Duration::from_secs(30), || {
        !paused(&host)
    });

    // Fill the disk: writing pauses again, and resumes once the filler is gone.
    let filler = fs.0.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    wait_until(
        "writing to pause on a full disk",
        Duration::from_secs(60),
        || paused(&host),
    );
    assert_eq!(host.get("/admin/monitor/health").0, 200);
    std::fs::remove_file(&filler).expect("remove filler");
    wait_until(
        "writing to resume after space returns",
        Duration::from_secs(60),
        || !paused(&host),
    );
    drop(host);
}

/// Guards container lifecycle events: a container that exits with a code and one that is
/// OOM-killed are stored as events of the docker collector, each once, with the container's
/// name and exit code.
#[test]
fn container_lifecycle_events_are_stored_once() {
    use vitals_e2e::docker::{daemon_or_skip, Containers};
    if !daemon_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let docker = format!(
        "[collectors.docker]\nlibrary = {}\ninterval = \"500ms\"\n",
        toml_path(&plugin_lib("docker"))
    );
    let host = Host::start(&config(&dir.path().join("h.db"), &docker));
    host.wait_for("a docker section", Duration::from_secs(30), |s| {
        s["sections"]["docker"]["reachable"] == true
    });
    let containers = Containers::new("history-events");
    containers.run("exits", &[], &["sh", "-c", "sleep 1; exit 3"]);
    let name = containers.name("exits");
    let wanted = format!("container {name} died with exit code 3");
    wait_until("the died event", Duration::from_secs(60), || {
        host.get_ok("/admin/monitor/events?source=collector:docker")["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["text"] == wanted.as_str()))
    });
    // Later sections repeat the recent events: the history keeps each once.
    std::thread::sleep(Duration::from_secs(2));
    let events = host.get_ok("/admin/monitor/events?source=collector:docker");
    let list = events["events"].as_array().expect("events");
    let died = list.iter().filter(|e| e["text"] == wanted.as_str()).count();
    assert_eq!(died, 1, "{events}");
    assert!(
        list.iter()
            .any(|e| e["kind"] == "started" && e["text"].as_str().unwrap_or("").contains(&name)),
        "{events}"
    );

    // A container over its memory limit is OOM-killed.
    containers.run(
        "oom",
        &["--memory", "8m", "--memory-swap", "8m"],
        &["sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a)"],
    );
    let oom = format!(
        "container {} was killed: out of memory",
        containers.name("oom")
    );
    wait_until("the OOM event", Duration::from_secs(60), || {
        host.get_ok("/admin/monitor/events?source=collector:docker")["events"]
            .as_array()
            .is_some_and(|e| {
                e.iter()
                    .any(|e| e["kind"] == "oom_killed" && e["text"] == oom.as_str())
            })
    });
}
