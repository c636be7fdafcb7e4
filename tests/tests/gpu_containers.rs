//! End to end: a process inside a real Docker container, reported on a GPU by the fake NVML, carries its container in the GPU section and in `/metrics`, with and without the docker collector.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vitals_e2e::docker::{daemon_or_skip, docker, Containers};
use vitals_e2e::{plugin_lib, target_dir, toml_path, vitals_bin, Host};

const GIB: u64 = 1 << 30;
const WAIT: Duration = Duration::from_secs(30);
/// GPU 0 of the fake's default boards.
const UUID: &str = "GPU-5c2b1d0e-3f4a-4b6c-8d9e-0a1b2c3d4e5f";

/// Starts the host with the gpu collector on the fake NVML (which lists the processes in
/// `processes` on GPU 0) and, when `with_docker`, the docker collector.
fn start(processes: &Path, with_docker: bool) -> Host {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = format!(
        "[collectors.gpu]\ninterval = \"300ms\"\n\n[collectors.gpu.config]\nsource = \"nvml\"\nnvml_library = {}\n",
        toml_path(&target_dir().join("libnvidia_ml.so"))
    );
    if with_docker {
        config += &format!(
            "\n[collectors.docker]\nlibrary = {}\ninterval = \"1s\"\ndeadline = \"8s\"\n",
            toml_path(&plugin_lib("docker"))
        );
    }
    let path = dir.path().join("vitals.toml");
    std::fs::write(&path, config).expect("config");
    let mut cmd = Command::new(vitals_bin());
    cmd.arg("--config")
        .arg(&path)
        .args(["--bind", "127.0.0.1:0", "--log", "info"])
        .env("VITALS_FAKE_NVML_PROCESSES", OsString::from(processes));
    Host::spawn(cmd, dir)
}

/// The GPU 0 process with `pid`, once the section lists it.
fn gpu_process(host: &Host, pid: u64) -> (Value, Value) {
    let snap = host.wait_for("the container's process on GPU 0", WAIT, |s| {
        s["sections"]["gpu"]["gpus"][0]["processes"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["pid"] == pid))
    });
    let p = snap["sections"]["gpu"]["gpus"][0]["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == pid)
        .cloned()
        .expect("the process");
    (snap, p)
}

/// Guards container attribution: the GPU plugin finds the container of a process running in
/// a real container from its cgroup (with the docker collector off, by id only), and
/// `/metrics` names the container from the docker section when that collector runs.
#[test]
fn a_gpu_process_in_a_container_shows_the_container() {
    if !daemon_or_skip() {
        return;
    }
    let containers = Containers::new("gpu-container");
    let id = containers.run("trainer", &[], &["sleep", "600"]);
    let name = containers.name("trainer");
    let pid: u64 = docker(&["inspect", "-f", "{{.State.Pid}}", &id])
        .parse()
        .expect("the container's PID");
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = dir.path().join("processes");
    std::fs::write(&processes, format!("0 {pid} {}\n", 3 * GIB)).expect("processes file");

    // Without the docker collector: the id from the cgroup, no name anywhere.
    let host = start(&processes, false);
    let (snap, p) = gpu_process(&host, pid);
    assert_eq!(p["container"]["id"], id.as_str(), "{p}");
    assert_eq!(p["container"]["runtime"], "docker", "{p}");
    assert!(snap["sections"]["docker"].is_null());
    let text = host.metrics();
    let unnamed = format!(
        "vitals_gpu_container_memory_bytes{{container=\"\",container_id=\"{id}\",gpu=\"0\",uuid=\"{UUID}\"}} {}",
        3 * GIB
    );
    assert!(text.contains(&unnamed), "missing `{unnamed}` in:\n{text}");
    // A process outside any container has none.
    assert!(
        snap["sections"]["gpu"]["gpus"][0]["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter(|q| q["pid"] != pid)
            .all(|q| q["container"].is_null()),
        "{snap}"
    );
    drop(host);

    // With the docker collector: the same id, and the name joined from the docker section.
    let host = start(&processes, true);
    host.wait_for("the container in the docker section", WAIT, |s| {
        s["sections"]["docker"]["containers"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["id"] == id.as_str() && c["name"] == name.as_str())
            })
    });
    let (_, p) = gpu_process(&host, pid);
    assert_eq!(p["container"]["id"], id.as_str(), "{p}");
    let named = format!(
        "vitals_gpu_container_memory_bytes{{container=\"{name}\",container_id=\"{id}\",gpu=\"0\",uuid=\"{UUID}\"}} {}",
        3 * GIB
    );
    let text = host.metrics();
    assert!(text.contains(&named), "missing `{named}` in:\n{text}");
}
