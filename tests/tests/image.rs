//! End to end: the container image (`scripts/image.sh`, as `make image` runs it, from the debug build) on the real Docker daemon, watching its host through `/host` beside a vitals on the host.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::docker::{daemon_or_skip, docker, Containers, DOCKER_SOCKET};
use vitals_e2e::{client, target_dir, Host};

/// The image the tests build (its own name, so a user's `vitals:latest` is left alone).
const IMAGE: &str = "vitals-e2e/vitals:test";
/// The collectors the image's default config enables.
const COLLECTORS: [&str; 8] = [
    "cpu", "memory", "system", "gpu", "disk", "network", "process", "docker",
];

/// Builds the image from the debug build, once for every test here.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new("bash")
            .arg(repo.join("scripts/image.sh"))
            .env("VITALS_BUILD_DIR", target_dir())
            .env("VITALS_IMAGE", IMAGE)
            .output()
            .expect("run scripts/image.sh");
        assert!(
            out.status.success(),
            "scripts/image.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    IMAGE
}

/// Starts the image in the background with `options` on the host's network, listening on a
/// free port of the host's loopback; returns its base URL once it logs it.
fn run_image(containers: &Containers, short: &str, options: &[&str]) -> String {
    let name = containers.name(short);
    let mut args = vec![
        "run",
        "-d",
        "--label",
        &containers.label,
        "--name",
        &name,
        "--network=host",
    ];
    args.extend_from_slice(options);
    args.extend_from_slice(&[image(), "--config", "/etc/vitals/vitals.toml"]);
    args.extend_from_slice(&["--bind", "127.0.0.1:0"]);
    docker(&args);
    let start = Instant::now();
    loop {
        let out = Command::new("docker")
            .args(["logs", &name])
            .output()
            .expect("docker logs");
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(i) = log.find("listening on http://") {
            let rest = &log[i + "listening on ".len()..];
            return rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the container did not listen within 30 s; its log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn system(base: &str) -> Value {
    client()
        .get(format!("{base}/admin/monitor/system"))
        .send()
        .and_then(|r| r.json())
        .expect("/admin/monitor/system")
}

/// Polls `base` until every collector has reported and `ready` holds.
fn wait(base: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let snap = system(base);
        let reported = COLLECTORS.iter().all(|c| {
            snap["collectors"][c]["state"]
                .as_str()
                .is_some_and(|s| s != "pending")
        });
        if reported && ready(&snap) {
            return snap;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {snap:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The interface of the default route, from the kernel's routing table.
fn default_interface() -> String {
    let routes = std::fs::read_to_string("/proc/net/route").expect("/proc/net/route");
    routes
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000"))
                .then(|| f[0].to_owned())
        })
        .expect("a default route")
}

fn interface<'a>(snap: &'a Value, name: &str) -> &'a Value {
    snap["sections"]["network"]["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no interface {name}: {}", snap["sections"]["network"]))
}

fn root_fs(snap: &Value) -> &Value {
    snap["sections"]["disk"]["disks"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["mount_point"] == "/"))
        .unwrap_or_else(|| panic!("no / file system: {}", snap["sections"]["disk"]))
}

fn container_names(snap: &Value) -> BTreeSet<String> {
    snap["sections"]["docker"]["containers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Guards the image watching its host: run with `-v /:/host:ro --pid=host --network=host` and
/// the Docker socket, as a non-root user, its snapshot says `host_root` is in use and matches
/// a vitals on the host taken at the same moment: hostname, OS, kernel, cores, memory total,
/// the root file system's size and type, the default interface's addresses and MAC, the
/// process count within a few, and the containers (itself among them).
#[test]
fn the_image_reports_its_host_like_a_vitals_on_the_host() {
    if !daemon_or_skip() {
        return;
    }
    let user = docker(&["image", "inspect", "-f", "{{.Config.User}}", image()]);
    assert_eq!(user, "10001:10001", "the image runs as root");

    let containers = Containers::new("image-host");
    let socket_group = std::fs::metadata(DOCKER_SOCKET)
        .expect("docker socket")
        .gid()
        .to_string();
    let socket = format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}:ro");
    let base = run_image(
        &containers,
        "watcher",
        &[
            "--pid=host",
            "-v",
            "/:/host:ro",
            "-v",
            &socket,
            "--group-add",
            &socket_group,
        ],
    );
    let on_host = Host::start(
        &COLLECTORS
            .iter()
            .map(|c| format!("[collectors.{c}]\ninterval = \"1s\"\n"))
            .collect::<String>(),
    );
    let me = containers.name("watcher");
    let lists_me = |s: &Value| container_names(s).contains(&me);
    wait(
        &on_host.base,
        "the host's vitals to list the container",
        lists_me,
    );
    wait(&base, "the container to list itself", lists_me);
    // Both snapshots at the same moment, taken again while a container started or stopped
    // by someone else between the two reads makes their lists differ.
    let start = Instant::now();
    let (inside, outside) = loop {
        let (inside, outside) = (system(&base), system(&on_host.base));
        if container_names(&inside) == container_names(&outside) {
            break (inside, outside);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the containers listed differ: {:?} inside, {:?} on the host",
            container_names(&inside),
            container_names(&outside)
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    assert_eq!(
        inside["host_root"]["view"], "host",
        "{}",
        inside["host_root"]
    );
    assert_eq!(inside["host_root"]["path"], "/host");
    for name in COLLECTORS {
        assert_eq!(
            inside["collectors"][name]["state"], outside["collectors"][name]["state"],
            "{name}: {} inside, {} on the host",
            inside["collectors"][name], outside["collectors"][name]
        );
    }
    let (si, so) = (&inside["sections"], &outside["sections"]);
    for key in [
        "hostname",
        "os_name",
        "os_version",
        "kernel_version",
        "architecture",
    ] {
        assert_eq!(si["system"][key], so["system"][key], "system.{key}");
    }
    assert_eq!(si["cpu"]["logical_cores"], so["cpu"]["logical_cores"]);
    assert_eq!(si["cpu"]["physical_cores"], so["cpu"]["physical_cores"]);
    assert_eq!(si["memory"]["total_bytes"], so["memory"]["total_bytes"]);
    let (ri, ro) = (root_fs(&inside), root_fs(&outside));
    for key in ["fs_type", "total_bytes", "device"] {
        assert_eq!(ri[key], ro[key], "/ {key}: {ri} inside, {ro} on the host");
    }
    let dev = default_interface();
    let (ii, io) = (interface(&inside, &dev), interface(&outside, &dev));
    for key in ["mac_address", "ipv4", "ipv6"] {
        assert_eq!(ii[key], io[key], "{dev} {key}");
    }
    assert!(ii["ipv4"].as_array().is_some_and(|a| !a.is_empty()), "{ii}");
    let count = |s: &Value| s["process"]["process_count"].as_i64().unwrap_or(-1);
    let (pi, po) = (count(si), count(so));
    assert!(po > 10, "{po} processes on the host");
    assert!(
        (pi - po).abs() <= 10,
        "{pi} processes seen inside, {po} on the host"
    );
    assert!(container_names(&inside).contains(&me));
}

/// Guards the fallback: without the host's file system mounted the image reports its own
/// view (its own processes) and says so in `/admin/monitor/system` (`host_root`).
#[test]
fn without_the_mounts_the_image_reports_its_own_view_and_says_so() {
    if !daemon_or_skip() {
        return;
    }
    let containers = Containers::new("image-own");
    let base = run_image(&containers, "alone", &[]);
    let snap = wait(&base, "a process section", |s| {
        s["sections"]["process"].is_object()
    });
    let root = &snap["host_root"];
    assert_eq!(root["view"], "own", "{root}");
    assert_eq!(root["requested"], "/host", "{root}");
    assert_eq!(root["path"], Value::Null, "{root}");
    assert!(
        root["reason"]
            .as_str()
            .is_some_and(|r| r.contains("own view")),
        "{root}"
    );
    let processes = snap["sections"]["process"]["process_count"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (1..=3).contains(&processes),
        "{processes} processes: not the container's own"
    );
}
