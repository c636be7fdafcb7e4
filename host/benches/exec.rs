//! Host CPU per collect: an exec collector run once per collect (fork/exec), an exec daemon's round trip, and a native plugin's collect, measured with getrusage.
//!
//! `cargo bench -p vitals-host --bench exec` (build the plugins of the same profile first:
//! `cargo build --release -p vitals-plugin-memory`). A measured loop rather than criterion:
//! the figure is the CPU time this process (the host side) spends per collect, with the
//! program's own CPU reported apart, not the wall time of one call.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use vitals_host::config;
use vitals_host::worker::exec::ExecSpec;
use vitals_host::worker::{host_log, ExecWorker, Job, Outcome, ThreadWorker};
use vitals_plugin_api::abi::HostLog;
use vitals_plugin_api::InitParams;

/// CPU time of this process and of its reaped children.
fn cpu() -> (Duration, Duration) {
    let usage = |who| {
        // SAFETY: getrusage fills the zeroed struct passed by pointer.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    (usage(libc::RUSAGE_SELF), usage(libc::RUSAGE_CHILDREN))
}

/// Runs `n` collects through `collect` and prints the CPU per collect.
fn measure(what: &str, n: u32, mut collect: impl FnMut()) {
    collect(); // warm up
    let (self0, kids0) = cpu();
    let wall = Instant::now();
    for _ in 0..n {
        collect();
    }
    let wall = wall.elapsed();
    let (self1, kids1) = cpu();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "{what:<34} host CPU {:>8.1} us/collect   program CPU {:>8.1} us/collect   wall {:>8.1} us/collect   ({n} collects)",
        per(self1 - self0),
        per(kids1 - kids0),
        per(wall)
    );
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn exec_worker(program: &Path, mode: &str) -> ExecWorker {
    let text = format!(
        "[collectors.bench]\ncommand = [{:?}]\nmode = \"{mode}\"\n",
        program.display().to_string()
    );
    let config = config::parse(&text, Path::new("bench.toml"), Path::new("/")).expect("config");
    let spec = ExecSpec::from_config(&config, &config.collectors["bench"]).expect("spec");
    ExecWorker::new("bench", spec, &json!({}), Duration::from_secs(1))
}

fn ok(outcome: Outcome) {
    match outcome {
        Outcome::Done((Ok(Some(_)), _)) => {}
        other => panic!("collect failed: {other:?}"),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = Duration::from_secs(10);
    let dir = tempfile::tempdir().expect("tempdir");

    // The smallest program: a static binary would be cheaper still; /bin/true-like sh is typical.
    let oneshot = script(dir.path(), "oneshot.sh", "#!/bin/sh\necho '{\"a\": 1}'\n");
    let mut w = exec_worker(&oneshot, "oneshot");
    measure("exec oneshot (sh, fork/exec)", 300, || {
        ok(runtime.block_on(w.call(Job::Collect, deadline)));
    });

    let daemon = script(
        dir.path(),
        "daemon.sh",
        "#!/bin/sh\nread config\nwhile read request; do echo '{\"a\": 1}'; done\n",
    );
    // The daemon's own CPU counts once it is reaped: its start and end are inside the window,
    // spread over the round trips.
    let mut w = exec_worker(&daemon, "daemon");
    let mut n = 0;
    let rounds = 3000;
    measure("exec daemon round trip (sh)", rounds, || {
        if n == 0 || n == rounds {
            runtime.block_on(w.kill());
            runtime.block_on(w.call(Job::Create(String::new()), deadline));
        }
        ok(runtime.block_on(w.call(Job::Collect, deadline)));
        n += 1;
    });
    runtime.block_on(w.kill());

    if let Some(check_load) =
        Some(Path::new("/usr/lib/nagios/plugins/check_load")).filter(|p| p.exists())
    {
        let mut w = exec_worker(check_load, "nagios");
        measure("nagios check_load (fork/exec)", 300, || {
            ok(runtime.block_on(w.call(Job::Collect, deadline)));
        });
    }

    // The native memory plugin, in process, as the host runs it by default.
    let exe = std::env::current_exe().expect("exe");
    let lib = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("libvitals_plugin_memory.so"))
        .filter(|p| p.exists());
    let Some(lib) = lib else {
        println!("native memory plugin: not measured: libvitals_plugin_memory.so is not built for this profile");
        return;
    };
    let plugin = vitals_host::loader::load(&lib).expect("load the memory plugin");
    let mut t = ThreadWorker::new("memory", plugin.module, HostLog { log: host_log });
    let init = serde_json::to_string(&InitParams::new("memory", json!({}))).expect("init");
    runtime.block_on(t.call(Job::Create(init), deadline));
    measure("native plugin (memory, in-process)", 3000, || {
        ok(runtime.block_on(t.call(Job::Collect, deadline)));
    });
}
