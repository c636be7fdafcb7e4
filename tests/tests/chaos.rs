//! Chaos with real parts: a Docker daemon of the test's own killed and restarted, network interfaces and mounts coming and going, the config file rewritten hundreds of times; the host recovers and leaks nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::block::BlockMount;
use vitals_e2e::{plugin_lib, skip, thread_count, toml_path, Host};

/// Threads a recovery may leave above the baseline: one worker thread of the async runtime
/// or of the HTTP server started on demand (a leak per cycle exceeds it over the cycles).
const THREAD_SLACK: u64 = 2;
/// Descriptors a recovery may leave above the baseline: a keep-alive connection of the
/// test's own client or of a collector opened between two samples.
const FD_SLACK: usize = 3;

/// Open descriptors of a process (from /proc).
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The host's threads and descriptors: the least of a few samples taken 200 ms apart, so a
/// connection or thread that lives for one moment does not count.
fn settled_usage(pid: u32) -> (u64, usize) {
    let mut least = (u64::MAX, usize::MAX);
    for _ in 0..5 {
        least.0 = least.0.min(thread_count(pid));
        least.1 = least.1.min(fd_count(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    least
}

/// Asserts the host holds no more threads and descriptors than `before` (with the slack).
fn assert_no_growth(host: &Host, before: (u64, usize), what: &str) {
    let after = settled_usage(host.pid());
    eprintln!(
        "{what}: threads {} -> {}, descriptors {} -> {}",
        before.0, after.0, before.1, after.1
    );
    assert!(
        after.0 <= before.0 + THREAD_SLACK,
        "threads grew from {} to {} after {what}",
        before.0,
        after.0
    );
    assert!(
        after.1 <= before.1 + FD_SLACK,
        "descriptors grew from {} to {} after {what}:\n{:?}",
        before.1,
        after.1,
        std::fs::read_dir(format!("/proc/{}/fd", host.pid()))
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .collect::<Vec<_>>()
    );
}

/// True when this process runs as root; otherwise the calling test is skipped loudly.
#[track_caller]
fn root_or_skip(what: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    if !root {
        skip(&format!("{what} needs root"));
    }
    root
}

/// True when `cmd` can be run; otherwise the calling test is skipped loudly.
#[track_caller]
fn command_or_skip(cmd: &str, what: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        skip(&format!("{what}: `{cmd}` is not installed"));
    }
    found
}

/// A Docker daemon of the test's own (socket, data root and exec root in a temp folder),
/// with a containerd of its own that outlives each daemon: the shared daemon the other
/// tests use is never touched.
struct Daemon {
    dir: tempfile::TempDir,
    containerd: Child,
    dockerd: Option<Child>,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log");
        let containerd = Command::new("containerd")
            .arg("--address")
            .arg(dir.path().join("containerd.sock"))
            .arg("--root")
            .arg(dir.path().join("containerd-root"))
            .arg("--state")
            .arg(dir.path().join("containerd-state"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut d = Daemon {
            dir,
            containerd,
            dockerd: None,
        };
        d.start_dockerd();
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// Starts dockerd on the test's socket and waits (bounded) until it answers.
    fn start_dockerd(&mut self) {
        let p = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p.join("dockerd.log"))
            .expect("log");
        // In a network namespace of its own: a dockerd started with `--bridge=none` deletes
        // the machine's `docker0`, which the shared daemon's containers need.
        let child = Command::new("unshare")
            .args(["--net", "dockerd"])
            .arg("--host")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--containerd")
            .arg(p.join("containerd.sock"))
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("--pidfile")
            .arg(p.join("docker.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.dockerd = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            assert!(
                Instant::now() < until,
                "the test's dockerd did not answer within 60 s; its log:\n{}",
                std::fs::read_to_string(p.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn answers(&self) -> bool {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGKILL to dockerd, as a crash or the OOM killer would end it.
    fn kill_dockerd(&mut self) {
        if let Some(mut c) = self.dockerd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Unmounts whatever the daemons left mounted under the folder.
    fn unmount_leftovers(&self) {
        let dir = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).status();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.dockerd.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.containerd.kill();
        let _ = self.containerd.wait();
        self.unmount_leftovers();
    }
}

fn docker_state(s: &Value) -> (&str, bool) {
    (
        s["collectors"]["docker"]["state"].as_str().unwrap_or(""),
        s["collectors"]["docker"]["stale"] == true,
    )
}

/// Guards recovery from a crashing daemon: dockerd (the test's own) is killed with SIGKILL
/// while the docker collector collects every 100 ms, three times; each time the section goes
/// unavailable, health keeps answering, the section comes back by itself once the daemon is
/// restarted on the same socket, and the host ends with no more threads or descriptors than
/// before.
#[test]
fn docker_section_recovers_from_a_killed_daemon_without_leaking() {
    if !root_or_skip("a Docker daemon of the test's own")
        || !command_or_skip("dockerd", "a Docker daemon of the test's own")
        || !command_or_skip("containerd", "a Docker daemon of the test's own")
        || !command_or_skip(
            "unshare",
            "a Docker daemon in a network namespace of its own",
        )
    {
        return;
    }
    let bridge = Path::new("/sys/class/net/docker0");
    let bridge_before = bridge.exists();
    let mut daemon = Daemon::start();
    let host = Host::start(&format!(
        "[collectors.docker]\nlibrary = {lib}\ninterval = \"100ms\"\ndeadline = \"2s\"\nconfig = {{ host = {sock} }}\n",
        lib = toml_path(&plugin_lib("docker")),
        sock = toml_path(&daemon.socket()),
    ));
    host.wait_for("docker ok", Duration::from_secs(30), |s| {
        docker_state(s) == ("ok", false)
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = settled_usage(host.pid());
    for cycle in 1..=3 {
        daemon.kill_dockerd();
        let snap = host.wait_for(
            &format!("docker unavailable after kill {cycle}"),
            Duration::from_secs(30),
            |s| docker_state(s).0 == "unavailable",
        );
        let reason = snap["collectors"]["docker"]["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.contains("docker.sock"), "{reason}");
        let (status, health) = host.get("/admin/monitor/health");
        assert_eq!(status, 200, "{health}");
        daemon.start_dockerd();
        host.wait_for(
            &format!("docker ok again after restart {cycle}"),
            Duration::from_secs(70),
            |s| docker_state(s) == ("ok", false) && s["sections"]["docker"]["reachable"] == true,
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_no_growth(&host, before, "three daemon kills and restarts");
    drop(daemon);
    assert_eq!(
        bridge.exists(),
        bridge_before,
        "the test's daemon changed the machine's docker0 (the shared daemon's containers need it)"
    );
}

/// A veth pair, deleted (both ends) when dropped.
struct Veth(String);

impl Veth {
    fn add(name: &str, peer: &str) -> Veth {
        let ok = Command::new("ip")
            .args(["link", "add", name, "type", "veth", "peer", "name", peer])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "`ip link add {name} type veth peer name {peer}` failed");
        let _ = Command::new("ip")
            .args(["link", "set", name, "up"])
            .status();
        Veth(name.to_owned())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

fn interface_names(s: &Value) -> Vec<String> {
    s["sections"]["network"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str().map(str::to_owned))
        .collect()
}

fn mount_points(s: &Value) -> Vec<String> {
    s["sections"]["disk"]["disks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["mount_point"].as_str().map(str::to_owned))
        .collect()
}

/// Guards devices coming and going: a veth pair created with `ip link` and an ext4 file
/// system mounted from a loop device appear in the network and disk sections, and once
/// deleted and unmounted leave no row in the sections nor a series in `/metrics`; twice over.
#[test]
fn interfaces_and_mounts_come_and_go_without_stale_rows() {
    if !root_or_skip("creating network interfaces and mounts")
        || !command_or_skip("ip", "veth pairs")
    {
        return;
    }
    let tag = std::process::id() % 100_000;
    let (a, b) = (format!("vc{tag}a"), format!("vc{tag}b"));
    let host = Host::start(&format!(
        "[collectors.network]\ninterval = \"300ms\"\n[collectors.network.config]\ninclude_interfaces = [\"vc{tag}*\"]\n\n[collectors.disk]\ninterval = \"300ms\"\n"
    ));
    host.wait_for("network and disk ok", Duration::from_secs(20), |s| {
        s["collectors"]["network"]["state"] == "ok" && s["collectors"]["disk"]["state"] == "ok"
    });
    for round in 1..=2 {
        let veth = Veth::add(&a, &b);
        let mount = match BlockMount::make() {
            Ok(m) => m,
            Err(why) => {
                skip(&format!("a loop-device file system: {why}"));
                return;
            }
        };
        let point = mount.mount_point.display().to_string();
        host.wait_for(
            &format!("round {round}: {a}, {b} and {point} listed"),
            Duration::from_secs(20),
            |s| {
                let names = interface_names(s);
                names.contains(&a) && names.contains(&b) && mount_points(s).contains(&point)
            },
        );
        assert!(host.metrics().contains(&format!("interface=\"{a}\"")));
        drop(veth);
        drop(mount);
        host.wait_for(
            &format!("round {round}: {a}, {b} and {point} gone"),
            Duration::from_secs(20),
            |s| {
                let names = interface_names(s);
                !names.contains(&a) && !names.contains(&b) && !mount_points(s).contains(&point)
            },
        );
        // The exposition is made from the same snapshot version or a newer one.
        let text = host.metrics();
        for stale in [
            format!("\"{a}\""),
            format!("\"{b}\""),
            format!("\"{point}\""),
        ] {
            assert!(!text.contains(&stale), "{stale} left in /metrics:\n{text}");
        }
    }
}

/// Config versions for the rewrite test: the memory collector's interval tells which one
/// the host runs; every third is invalid in its own way.
fn config_version(i: usize) -> String {
    match i % 6 {
        2 => "[collectors.memory]\ninterval = \"1s\"\nnot_a_key = true\n".to_owned(),
        4 => "[collectors.memory\ninterval = ".to_owned(),
        5 => format!(
            "[collectors.memory]\ninterval = \"{}ms\"\n\n[collectors.system]\ninterval = \"1s\"\n",
            1000 + i
        ),
        _ => format!(
            "[collectors.memory]\ninterval = \"{}ms\"\n\n[collectors.cpu]\ninterval = \"1s\"\n",
            1000 + i
        ),
    }
}

/// Guards config reloads under a storm: the file is rewritten 500 times in well under a
/// minute (replaced by rename, or rewritten in place, with invalid versions among them);
/// the storm ends on a valid version, which the host runs (its interval, its collectors and
/// no other); an invalid version written after it is refused and changes nothing; the host
/// holds no more threads or descriptors than at the start.
#[test]
fn the_last_valid_config_wins_after_500_rewrites() {
    let last_valid =
        "[collectors.memory]\ninterval = \"2345ms\"\n\n[collectors.cpu]\ninterval = \"1s\"\n";
    let host = Host::start(
        "[collectors.memory]\ninterval = \"1s\"\n\n[collectors.cpu]\ninterval = \"1s\"\n",
    );
    host.wait_for("memory and cpu ok", Duration::from_secs(20), |s| {
        s["collectors"]["memory"]["state"] == "ok" && s["collectors"]["cpu"]["state"] == "ok"
    });
    std::thread::sleep(Duration::from_secs(1));
    let before = settled_usage(host.pid());
    let path = host.dir.path().join("vitals.toml");
    let replace = |i: usize, text: &str| {
        if i % 2 == 0 {
            let tmp = host.dir.path().join("vitals.toml.new");
            std::fs::write(&tmp, text).expect("write config");
            std::fs::rename(&tmp, &path).expect("replace config");
        } else {
            std::fs::write(&path, text).expect("rewrite config");
        }
    };
    for i in 0..498 {
        replace(i, &config_version(i));
        std::thread::sleep(Duration::from_millis(80));
    }
    replace(498, last_valid);
    // The storm ends on the last valid version: the host converges to it.
    let snap = host.wait_for("the last valid config", Duration::from_secs(30), |s| {
        s["collectors"]["memory"]["interval_seconds"] == 2.345
            && s["collectors"]["cpu"]["state"] == "ok"
            && s["collectors"]["system"].is_null()
    });
    let names: Vec<&String> = snap["collectors"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(names, ["cpu", "memory"], "{snap}");
    // An invalid version written after it is refused and changes nothing.
    replace(499, "[collectors.memory]\ninterval = \"fast\"\n");
    let until = Instant::now() + Duration::from_secs(30);
    while !host.log().contains("string \"fast\", expected a duration") {
        assert!(
            Instant::now() < until,
            "the invalid version was not refused:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = host.get_ok("/admin/monitor/system");
    assert_eq!(
        again["collectors"]["memory"]["interval_seconds"], 2.345,
        "{again}"
    );
    assert_eq!(again["collectors"]["cpu"]["state"], "ok", "{again}");
    assert_no_growth(&host, before, "500 config rewrites");
}
