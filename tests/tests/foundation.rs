//! End to end: the built host with the built cpu, memory and system plugins, and with faulty plugins.

use std::time::Duration;

use serde_json::Value;
use vitals_e2e::{plugin_lib, run_vitals, toml_path, Host};

fn logical_cpus() -> u64 {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count() as u64
}

fn default_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/vitals.toml"
    ))
    .expect("config/vitals.toml")
}

/// The eight built-in collectors, each declared by `config/vitals.toml`.
const BUILT_IN: [&str; 8] = [
    "cpu", "disk", "docker", "gpu", "memory", "network", "process", "system",
];

/// Guards the default config end to end: every one of the eight built-in collectors reports,
/// each section with plausible values (GPU and Docker may be unavailable, with a reason, only
/// where the machine has no driver or daemon).
#[test]
fn default_config_serves_every_built_in_section() {
    let host = Host::start(&default_config());
    let snap = host.wait_for(
        "every built-in collector to report",
        Duration::from_secs(30),
        |s| {
            BUILT_IN.iter().all(|k| {
                let state = &s["collectors"][k]["state"];
                (state == "ok" && s["sections"][k].is_object()) || state == "unavailable"
            })
        },
    );
    let names: Vec<&String> = snap["collectors"]
        .as_object()
        .expect("collectors")
        .keys()
        .collect();
    assert_eq!(names, BUILT_IN, "the default config declares the eight");
    let cpu = &snap["sections"]["cpu"];
    assert_eq!(cpu["logical_cores"].as_u64(), Some(logical_cpus()), "{cpu}");
    assert_eq!(
        cpu["cores"].as_array().map(Vec::len),
        Some(logical_cpus() as usize)
    );
    let usage = cpu["usage_percent"].as_f64().expect("usage");
    assert!((0.0..=100.0).contains(&usage), "usage {usage}");
    assert!(cpu["load_average"]["one"].as_f64().expect("load") >= 0.0);

    let mem = &snap["sections"]["memory"];
    let total = mem["total_bytes"].as_u64().expect("total");
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    assert_eq!(total, kb * 1024, "memory total matches /proc/meminfo");
    assert!(mem["used_bytes"].as_u64().expect("used") <= total);
    assert!(mem["available_bytes"].as_u64().expect("avail") <= total);

    let sys = &snap["sections"]["system"];
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(sys["hostname"].as_str(), Some(hostname.trim()));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(sys["kernel_version"].as_str(), Some(release.trim()));
    assert!(sys["uptime_seconds"].as_u64().expect("uptime") > 0);

    let disk = &snap["sections"]["disk"];
    for d in disk["disks"].as_array().expect("disks") {
        let total = d["total_bytes"].as_u64().expect("total");
        assert!(
            total > 0 && d["used_bytes"].as_u64().expect("used") <= total,
            "{d}"
        );
        assert!(
            d["mount_point"]
                .as_str()
                .is_some_and(|m| m.starts_with('/')),
            "{d}"
        );
    }

    let network = &snap["sections"]["network"];
    for i in network["interfaces"].as_array().expect("interfaces") {
        assert_ne!(i["name"], "lo", "loopback is left out: {i}");
        assert!(i["rx_bytes_total"].is_u64() && i["ipv4"].is_array(), "{i}");
    }

    let process = &snap["sections"]["process"];
    let count = process["process_count"].as_u64().expect("process_count");
    let in_proc = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count() as u64;
    // Processes come and go between the collect and this count; the machine is shared.
    assert!(
        count > in_proc / 2 && count < in_proc * 2,
        "{count} vs {in_proc} in /proc"
    );
    for list in ["top_by_cpu", "top_by_memory"] {
        let len = process[list].as_array().map_or(0, Vec::len) as u64;
        assert_eq!(len, count.min(10), "{list}: {process}");
    }

    // Unavailable only where this machine really lacks the source.
    let daemon_version = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let docker_up = daemon_version.is_some();
    let docker = &snap["collectors"]["docker"];
    if let Some(version) = &daemon_version {
        assert_eq!(docker["state"], "ok", "a daemon answers here: {docker}");
        let d = &snap["sections"]["docker"];
        assert_eq!(d["server_version"], version.as_str(), "{d}");
        assert!(d["containers"].is_array(), "{d}");
    } else {
        assert_eq!(docker["state"], "unavailable", "{docker}");
        assert!(
            docker["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{docker}"
        );
    }
    let gpu = &snap["collectors"]["gpu"];
    if gpu["state"] == "ok" {
        let gpus = snap["sections"]["gpu"]["gpus"].as_array().expect("gpus");
        assert!(
            !gpus.is_empty(),
            "ok with no GPU: {}",
            snap["sections"]["gpu"]
        );
    } else {
        assert_eq!(gpu["state"], "unavailable", "{gpu}");
        assert!(
            gpu["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{gpu}"
        );
    }

    for name in BUILT_IN {
        let st = &snap["collectors"][name];
        assert!(
            st["state"] == "ok" || name == "gpu" || (name == "docker" && !docker_up),
            "{name}: {st}"
        );
        assert_eq!(st["plugin"]["api_version"], "1.0.0", "{name}: {st}");
    }
    let (status, health) = host.get("/admin/monitor/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["components"]["collector:cpu"]["state"], "ok");
}

/// Guards fault containment: a panicking, an erroring, a non-plugin and a missing library
/// each get their own reason while the healthy collectors keep updating.
#[test]
fn faulty_plugins_do_not_stop_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text_so = dir.path().join("libtext.so");
    std::fs::write(&text_so, "this is a text file, not a library\n").expect("write");
    let fault = toml_path(&plugin_lib("fault"));
    let config = format!(
        r#"
[collectors.cpu]
interval = "200ms"

[collectors.memory]
interval = "200ms"

[collectors.panics]
library = {fault}
interval = "200ms"
config = {{ behaviour = "panic", good_collects = 1 }}

[collectors.errors]
library = {fault}
interval = "200ms"
config = {{ behaviour = "error" }}

[collectors.textfile]
library = {text}
interval = "200ms"

[collectors.missing]
library = "/nonexistent/libvitals_plugin_missing.so"
"#,
        text = toml_path(&text_so),
    );
    let host = Host::start(&config);
    let first = host.wait_for(
        "the fault collectors to fail",
        Duration::from_secs(20),
        |s| {
            s["collectors"]["panics"]["state"] == "failed"
                && s["collectors"]["errors"]["state"] == "failed"
        },
    );
    let count = |s: &Value, n: &str| s["collectors"][n]["collects_total"].as_u64().unwrap_or(0);
    let (cpu0, mem0) = (count(&first, "cpu"), count(&first, "memory"));
    host.wait_for(
        "cpu and memory to keep collecting",
        Duration::from_secs(20),
        |s| count(s, "cpu") >= cpu0 + 3 && count(s, "memory") >= mem0 + 3,
    );

    let snap = host.get_ok("/admin/monitor/system");
    let c = &snap["collectors"];
    let reason = |n: &str| c[n]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason("panics").contains("panicked"),
        "{}",
        reason("panics")
    );
    assert!(
        reason("panics").contains("panic in collect"),
        "{}",
        reason("panics")
    );
    assert_eq!(
        c["panics"]["stale"], true,
        "the good collect before the panic is kept, stale"
    );
    assert_eq!(snap["sections"]["panics"]["count"], 1);
    assert!(
        reason("errors").contains("error, as configured"),
        "{}",
        reason("errors")
    );
    assert!(
        reason("textfile").contains("cannot open"),
        "{}",
        reason("textfile")
    );
    assert!(
        reason("textfile").contains("libtext.so"),
        "{}",
        reason("textfile")
    );
    assert!(
        reason("missing").contains("not found"),
        "{}",
        reason("missing")
    );
    assert_eq!(c["cpu"]["state"], "ok");

    let (status, health) = host.get("/admin/monitor/health");
    assert_eq!(status, 503, "{health}");
    let problems = health["problems"].to_string();
    for name in ["panics", "errors", "textfile", "missing"] {
        assert!(
            problems.contains(&format!("`{name}`")),
            "{name} missing from {problems}"
        );
    }
    assert_eq!(health["components"]["collector:cpu"]["state"], "ok");
}

/// Guards the "not a plugin" refusal for a real shared library that exports no root module.
#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused_by_name() {
    // Where this machine's loader finds libm, whatever the architecture's library folder.
    let libc = vitals_e2e::loaded_library_path("libm.so.6", "cos")
        .expect("the dynamic loader finds libm.so.6 on this machine");
    let host = Host::start(&format!(
        "[collectors.cpu]\n[collectors.libm]\nlibrary = {libc:?}\n"
    ));
    let snap = host.wait_for("libm to be refused", Duration::from_secs(20), |s| {
        s["collectors"]["libm"]["state"] == "failed"
    });
    let reason = snap["collectors"]["libm"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("is not a vitals plugin"), "{reason}");
}

/// Guards `vitals check-config`: a good file passes, a bad one lists every problem with line and key.
#[test]
fn check_config_reports_every_problem() {
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/vitals.toml");
    let (ok, out, err) = run_vitals(&["check-config", good]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ok"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nbind = \"nowhere\"\n\n[collectors.cpu]\ninterval = \"0s\"\ncolour = \"red\"\n\n[collectors.gone]\nlibrary = \"./libnothing.so\"\n",
    )
    .expect("write");
    let (ok, out, err) = run_vitals(&["check-config", bad.to_str().expect("utf-8")]);
    assert!(!ok, "a bad config must fail: {out}{err}");
    assert!(err.contains("bad.toml:2:1: `server.bind`"), "{err}");
    assert!(
        err.contains("bad.toml:6:1: `collectors.cpu.colour`: unknown field `colour`"),
        "{err}"
    );

    std::fs::write(&bad, "[collectors.gone]\nlibrary = \"./libnothing.so\"\n").expect("write");
    let (ok, _, err) = run_vitals(&["check-config", bad.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(
        err.contains("bad.toml:2:1: `collectors.gone.library`: plugin library not found"),
        "{err}"
    );
}

/// Guards `vitals plugins`: every built-in plugin is listed with its versions.
#[test]
fn plugins_command_lists_versions() {
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/vitals.toml");
    let (ok, out, err) = run_vitals(&["plugins", "--config", good]);
    assert!(ok, "{out}{err}");
    for name in ["cpu", "memory", "system"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{out}"));
        assert!(line.contains("1.0.0"), "{line}");
    }
}

/// Guards the JSON 404 for unknown paths and the cloud mode that hides the monitor.
#[test]
fn unknown_paths_and_cloud_mode_answer_404() {
    let host = Host::start("[collectors.memory]\n");
    let (status, body) = host.get("/admin/monitor/nope");
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    drop(host);
    let host = Host::start("[server]\nmode = \"cloud\"\n[collectors.memory]\n");
    assert_eq!(host.get("/admin/monitor/system").0, 404);
    assert_eq!(host.get("/admin/monitor/health").0, 404);
}
