//! End to end: collectors that run programs (real python3 and sh, one-shot and daemon) and misbehave in every documented way.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::{request, run_vitals, toml_path, tool_or_skip, Host};

/// Writes executable programs into a folder of their own.
struct Programs {
    dir: tempfile::TempDir,
}

impl Programs {
    fn new() -> Programs {
        Programs {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Writes `body` as an executable file `name`; returns its path.
    fn add(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).expect("write program");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

/// A `[collectors.NAME]` table running `program` (a path) with extra keys; the interval
/// (200 ms) and deadline (2 s) are defaults that `extra` may set instead.
fn collector(name: &str, program: &Path, extra: &str) -> String {
    let mut table = format!("[collectors.{name}]\ncommand = [{}]\n", toml_path(program));
    for (key, default) in [("interval", "200ms"), ("deadline", "2s")] {
        if !extra.contains(&format!("{key} =")) {
            table.push_str(&format!("{key} = \"{default}\"\n"));
        }
    }
    format!("{table}{extra}\n\n")
}

fn state(s: &Value, name: &str) -> String {
    s["collectors"][name]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn reason(s: &Value, name: &str) -> String {
    s["collectors"][name]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn collects(s: &Value, name: &str) -> u64 {
    s["collectors"][name]["collects_total"]
        .as_u64()
        .unwrap_or(0)
}

fn attempts(s: &Value, name: &str) -> u64 {
    collects(s, name) + s["collectors"][name]["errors_total"].as_u64().unwrap_or(0)
}

/// True while a process with this pid exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z")
}

/// The pids and states of the processes whose parent is `pid`.
fn children(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let mut f = rest.split_whitespace();
            let state = f.next()?.to_owned();
            let parent: u32 = f.next()?.parse().ok()?;
            (parent == pid).then_some((child, state))
        })
        .collect()
}

/// The zombie children of `pid` that are still unreaped a second later: a run that has
/// just exited is a zombie for the moment before the host reaps it, a leaked one stays.
fn lasting_zombies(pid: u32) -> Vec<u32> {
    let zombies = |pid| {
        children(pid)
            .into_iter()
            .filter(|(_, s)| s == "Z")
            .map(|(p, _)| p)
            .collect::<Vec<_>>()
    };
    let first = zombies(pid);
    if first.is_empty() {
        return first;
    }
    std::thread::sleep(Duration::from_secs(1));
    let later = zombies(pid);
    first.into_iter().filter(|p| later.contains(p)).collect()
}

/// Waits for a pid the program wrote to `file`.
fn read_pid(file: &Path) -> u32 {
    let start = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} was never written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `pid` is gone (killed and reaped by someone), or panics.
fn wait_gone(pid: u32, what: &str) {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} (pid {pid}) is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Guards containment for programs: invalid JSON, 50 MB of output, a hang, a forked child
/// that hangs, exit 137, stderr only, stdout closed early, "unavailable" and a daemon that
/// dies after three answers: each shows its own reason, leaves no process behind, and a
/// native collector and a good program beside them keep collecting.
#[test]
fn misbehaving_programs_each_show_their_reason() {
    if !tool_or_skip("python3", "programs in Python") {
        return;
    }
    let p = Programs::new();
    let good = p.add("good.sh", "#!/bin/sh\necho '{\"answer_count\": 42}'\n");
    let invalid = p.add("invalid.sh", "#!/bin/sh\necho '{\"a\": 1,'\n");
    let big = p.add(
        "big.py",
        "#!/usr/bin/env python3\nimport sys\nsys.stdout.write('{\"x\": \"' + 'x' * 50_000_000 + '\"}')\n",
    );
    let hangs = p.add("hangs.sh", "#!/bin/sh\nexec sleep 1000\n");
    let fork_pid = p.path("forked.pid");
    let forks = p.add(
        "forks.sh",
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > {}\nwait\n",
            fork_pid.display()
        ),
    );
    let left_pid = p.path("left.pid");
    let leaves = p.add(
        "leaves.py",
        &format!(
            "#!/usr/bin/env python3\nimport os, sys, time\nif os.fork() == 0:\n    open({:?}, 'w').write(str(os.getpid()))\n    time.sleep(1000)\nelse:\n    print('{{\"left_a_child\": true}}')\n",
            left_pid.display().to_string()
        ),
    );
    let exits_137 = p.add("exits137.sh", "#!/bin/sh\nexit 137\n");
    let stderr_only = p.add(
        "stderr.sh",
        "#!/bin/sh\necho 'cannot open /dev/sensor0: permission denied' >&2\nexit 1\n",
    );
    let closes = p.add(
        "closes.sh",
        "#!/bin/sh\nexec 1>&-\nsleep 0.1\necho too late 2>/dev/null\nexit 0\n",
    );
    let unavailable = p.add(
        "unavailable.sh",
        "#!/bin/sh\necho 'no UPS connected'\nexit 69\n",
    );
    let daemon = p.add(
        "daemon.py",
        "#!/usr/bin/env python3\nimport json, sys\nsys.stdin.readline()\nfor n in range(1, 4):\n    sys.stdin.readline()\n    print(json.dumps({'answer': n}), flush=True)\nprint('three answers are all I give', file=sys.stderr, flush=True)\nsys.exit(3)\n",
    );
    let config = [
        "[collectors.memory]\ninterval = \"200ms\"\n\n".to_owned(),
        collector("good", &good, ""),
        collector("invalid", &invalid, ""),
        collector("big", &big, "deadline = \"10s\""),
        collector("hangs", &hangs, "deadline = \"500ms\""),
        collector("forks", &forks, "deadline = \"500ms\""),
        collector("leaves", &leaves, ""),
        collector("exits_137", &exits_137, ""),
        collector("stderr_only", &stderr_only, ""),
        collector("closes", &closes, ""),
        collector("unavailable", &unavailable, ""),
        // A generous deadline: a Python start on a loaded machine is no fault here.
        collector("daemon", &daemon, "mode = \"daemon\"\ndeadline = \"10s\""),
    ]
    .concat();
    let host = Host::start(&config);
    let first = host.wait_for("every program to show", Duration::from_secs(60), |s| {
        [
            "invalid",
            "big",
            "hangs",
            "forks",
            "exits_137",
            "stderr_only",
            "closes",
        ]
        .iter()
        .all(|n| state(s, n) == "failed")
            && state(s, "unavailable") == "unavailable"
            && state(s, "leaves") == "ok"
            && s["collectors"]["daemon"]["restarts"].as_u64().unwrap_or(0) >= 1
    });
    let expect = [
        ("invalid", "the program's output is not JSON"),
        ("big", "output over 1048576 bytes"),
        ("hangs", "timed out: the program ran longer than its deadline of 500ms and was killed with its process group"),
        ("forks", "timed out"),
        ("exits_137", "exited with code 137 (128 + 9: a shell's report of a process killed by SIGKILL"),
        ("stderr_only", "exited with code 1: cannot open /dev/sensor0: permission denied"),
        ("closes", "the program printed nothing on stdout"),
        ("unavailable", "no UPS connected"),
    ];
    for (name, text) in expect {
        assert!(
            reason(&first, name).contains(text),
            "{name}: expected `{text}` in `{}`",
            reason(&first, name)
        );
    }
    assert_eq!(first["sections"]["leaves"]["left_a_child"], true);
    // The daemon gave three answers, died with its code and last stderr line, and was restarted.
    let d = &first["collectors"]["daemon"];
    assert!(collects(&first, "daemon") >= 3, "{d}");
    let errors = host.get_ok("/admin/monitor/errors?limit=200");
    assert!(
        errors
            .to_string()
            .contains("exited with code 3: three answers are all I give"),
        "{d}\n{errors}"
    );

    // Every other collector keeps collecting beside the faults (a liveness bound with a
    // wide margin: 200 ms collects, 20 of them).
    let snap = host.wait_for(
        "memory and good to collect 20 more times",
        Duration::from_secs(60),
        |s| {
            collects(s, "memory") >= collects(&first, "memory") + 20
                && collects(s, "good") >= collects(&first, "good") + 20
        },
    );
    assert_eq!(state(&snap, "good"), "ok");
    assert_eq!(snap["sections"]["good"]["answer_count"], 42);
    assert!(
        attempts(&snap, "hangs") > attempts(&first, "hangs"),
        "a hanging program is tried again"
    );
    assert!(
        collects(&snap, "daemon") > collects(&first, "daemon"),
        "the restarted daemon answers again: {}",
        snap["collectors"]["daemon"]
    );
    // The hanging grandchild and the one left behind were killed with their process group.
    wait_gone(read_pid(&fork_pid), "the forked child that hangs");
    wait_gone(read_pid(&left_pid), "the child left behind");
    let zombies = lasting_zombies(host.pid());
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
}

/// Guards the run environment: config on stdin, the documented variables and a clean
/// environment, the working directory, no inherited descriptor but stdin, stdout and stderr.
#[test]
fn programs_get_their_config_env_and_folder_and_nothing_else() {
    if !tool_or_skip("python3", "programs in Python") {
        return;
    }
    let p = Programs::new();
    let probe = p.add(
        "probe.py",
        "#!/usr/bin/env python3\nimport json, os, sys\nconfig = json.load(sys.stdin)\nfds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\nprint(json.dumps({'config': config, 'fds': fds, 'cwd': os.getcwd(), 'env': dict(os.environ)}))\n",
    );
    let work = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{}[collectors.probe.config]\nthreshold = 3\nname = \"a b\"\n",
        collector(
            "probe",
            &probe,
            &format!("working_dir = {}", toml_path(work.path()))
        )
    );
    std::env::set_var("VITALS_E2E_SECRET", "must-not-leak");
    let host = Host::start(&config);
    let snap = host.wait_for("the probe to answer", Duration::from_secs(30), |s| {
        state(s, "probe") == "ok"
    });
    let section = &snap["sections"]["probe"];
    assert_eq!(
        section["config"],
        serde_json::json!({"threshold": 3, "name": "a b"})
    );
    // os.listdir holds one descriptor of its own while it reads the folder.
    let fds: Vec<u64> = section["fds"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert_eq!(
        &fds[..3],
        [0, 1, 2],
        "the standard three: {}",
        section["fds"]
    );
    assert!(fds.len() <= 4, "inherited descriptors: {}", section["fds"]);
    assert_eq!(
        section["cwd"].as_str(),
        work.path()
            .canonicalize()
            .ok()
            .as_deref()
            .and_then(Path::to_str)
    );
    let env = &section["env"];
    assert_eq!(env["VITALS_COLLECTOR"], "probe");
    assert_eq!(env["VITALS_MODE"], "oneshot");
    assert_eq!(env["VITALS_PROTOCOL"], "1");
    assert_eq!(env["VITALS_DEADLINE_SECONDS"], "2");
    assert_eq!(env["VITALS_INTERVAL_SECONDS"], "0.2");
    assert_eq!(env["VITALS_MAX_OUTPUT_BYTES"], "1048576");
    assert_eq!(env["LC_ALL"], "C");
    assert!(
        env.get("VITALS_E2E_SECRET").is_none(),
        "the host's environment leaked: {env}"
    );
}

/// Guards the reaping of every run: after a hundred collects of a program that forks, no
/// zombie and no leftover child of the host exists.
#[test]
fn no_zombies_after_many_runs() {
    let p = Programs::new();
    let forks = p.add(
        "forks.sh",
        "#!/bin/sh\n(sleep 0.01; true) &\necho '{\"ok\": true}'\n",
    );
    let quick = p.add("quick.sh", "#!/bin/sh\necho '{\"n\": 1}'\n");
    let config = format!(
        "{}{}",
        collector("forks", &forks, "interval = \"100ms\""),
        collector("quick", &quick, "interval = \"100ms\""),
    );
    let host = Host::start(&config);
    host.wait_for("a hundred runs each", Duration::from_secs(120), |s| {
        collects(s, "forks") >= 100 && collects(s, "quick") >= 100
    });
    let zombies = lasting_zombies(host.pid());
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
    // At most the run in flight of each collector is a child at any moment.
    let kids = children(host.pid());
    assert!(kids.len() <= 2, "children left: {kids:?}");
}

/// Guards the memory and CPU-time limits: an allocation past `memory_limit` fails in the
/// program, a busy loop past `cpu_limit` is killed by SIGXCPU.
#[test]
fn memory_and_cpu_limits_hold() {
    if !tool_or_skip("python3", "programs in Python") {
        return;
    }
    let p = Programs::new();
    let hog = p.add(
        "hog.py",
        "#!/usr/bin/env python3\nblock = bytearray(512 * 1024 * 1024)\nprint('{}')\n",
    );
    let spin = p.add("spin.sh", "#!/bin/sh\nwhile :; do :; done\n");
    let config = format!(
        "{}{}",
        collector("hog", &hog, "memory_limit = \"64MiB\"\ninterval = \"5s\""),
        collector(
            "spin",
            &spin,
            "cpu_limit = \"1s\"\ndeadline = \"20s\"\ninterval = \"30s\""
        ),
    );
    let host = Host::start(&config);
    let snap = host.wait_for("both limits to bite", Duration::from_secs(60), |s| {
        state(s, "hog") == "failed" && state(s, "spin") == "failed"
    });
    assert!(
        reason(&snap, "hog").contains("MemoryError"),
        "{}",
        reason(&snap, "hog")
    );
    assert!(
        reason(&snap, "spin").contains("SIGXCPU"),
        "{}",
        reason(&snap, "spin")
    );
}

/// Guards `user`: a host running as root runs the program as that user, with its home.
#[test]
fn user_drops_root() {
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid != "0" {
        vitals_e2e::skip(
            "the tests do not run as root, so dropping to another user is not checked",
        );
        return;
    }
    let p = Programs::new();
    let whoami = p.add(
        "whoami.sh",
        "#!/bin/sh\nprintf '{\"uid\": %s, \"gid\": %s, \"home\": \"%s\"}\\n' \"$(id -u)\" \"$(id -g)\" \"$HOME\"\n",
    );
    // Any user may run it: the folder of a tempdir is private to root.
    std::fs::set_permissions(p.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let host = Host::start(&collector("who", &whoami, "user = \"nobody\""));
    let snap = host.wait_for("the program to answer", Duration::from_secs(30), |s| {
        state(s, "who") != "pending"
    });
    assert_eq!(state(&snap, "who"), "ok", "{}", reason(&snap, "who"));
    assert_eq!(snap["sections"]["who"]["uid"], 65534);
    assert_eq!(snap["sections"]["who"]["gid"], 65534);
}

/// Guards runtime control of a program collector: disable, enable and re-interval through
/// the API, as for a library.
#[test]
fn program_collectors_are_controlled_at_run_time() {
    let p = Programs::new();
    let good = p.add("good.sh", "#!/bin/sh\necho '{\"v\": 1}'\n");
    let host = Host::start(&collector("good", &good, ""));
    host.wait_for("ok", Duration::from_secs(30), |s| state(s, "good") == "ok");
    let url = format!("{}/admin/monitor/collectors/good", host.base);
    let (status, _, _) = request("PUT", &url, &[], Some(r#"{"enabled": false}"#));
    assert_eq!(status, 200);
    host.wait_for("disabled", Duration::from_secs(10), |s| {
        state(s, "good") == "disabled"
    });
    let (status, _, _) = request(
        "PUT",
        &url,
        &[],
        Some(r#"{"enabled": true, "interval_seconds": 0.5}"#),
    );
    assert_eq!(status, 200);
    let snap = host.wait_for("ok again", Duration::from_secs(30), |s| {
        state(s, "good") == "ok"
    });
    assert_eq!(snap["collectors"]["good"]["interval_seconds"], 0.5);
    assert_eq!(snap["collectors"]["good"]["isolation"], "process");
    assert_eq!(
        snap["collectors"]["good"]["plugin"]["api_version"], "exec/1",
        "{}",
        snap["collectors"]["good"]
    );
}

/// Guards the daemon deadline: a daemon that stops answering is killed and restarted.
#[test]
fn a_daemon_that_hangs_is_killed_and_restarted() {
    let p = Programs::new();
    let pids = p.path("pids");
    let stuck = p.add(
        "stuck.sh",
        &format!(
            "#!/bin/sh\necho $$ >> {}\nread config\nread first\necho '{{\"first\": true}}'\nexec sleep 1000\n",
            pids.display()
        ),
    );
    let host = Host::start(&collector("stuck", &stuck, "mode = \"daemon\""));
    let snap = host.wait_for("two restarts", Duration::from_secs(60), |s| {
        s["collectors"]["stuck"]["restarts"].as_u64().unwrap_or(0) >= 2
    });
    assert!(
        reason(&snap, "stuck").contains("timed out")
            || snap["collectors"]["stuck"]["last_error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("timed out"),
        "{}",
        snap["collectors"]["stuck"]
    );
    assert!(
        collects(&snap, "stuck") >= 2,
        "each fresh daemon answers once"
    );
    let started: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert!(started.len() >= 2, "{started:?}");
    for pid in &started[..started.len() - 1] {
        wait_gone(*pid, "a killed daemon");
    }
}

/// Guards `vitals check-config` on a program that is missing or not executable: a config
/// error naming the path, with its line; and `vitals plugins` listing a program collector.
#[test]
fn check_config_names_a_missing_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text_file = dir.path().join("notes.txt");
    std::fs::write(&text_file, "not a program").expect("write");
    let config = dir.path().join("vitals.toml");
    std::fs::write(
        &config,
        format!(
            "[collectors.a]\ncommand = [\"/nonexistent/collector\"]\n\n[collectors.b]\ncommand = [{}]\n",
            toml_path(&text_file)
        ),
    )
    .expect("write config");
    let (ok, _, stderr) = run_vitals(&["check-config", &config.display().to_string()]);
    assert!(!ok);
    assert!(
        stderr.contains(":2:1: `collectors.a.command`: program not found: /nonexistent/collector"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            ":5:1: `collectors.b.command`: program is not executable: {}",
            text_file.display()
        )),
        "{stderr}"
    );
    // `vitals plugins` lists a program collector with its program, not as a missing library.
    std::fs::write(
        &config,
        "[collectors.sh]\ncommand = [\"/bin/sh\", \"-c\", \"true\"]\n",
    )
    .expect("write config");
    let (ok, stdout, stderr) = run_vitals(&["plugins", "--config", &config.display().to_string()]);
    assert!(ok, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("sh "))
        .unwrap_or_default();
    assert!(
        line.contains("exec/1") && line.ends_with("/bin/sh"),
        "{stdout}"
    );
}

/// Guards `vitals plugin check` on programs: the same verdict as for a library, with the
/// plugin's own table from inline TOML, in each mode; and `--plugin-config` for a library.
#[test]
fn plugin_check_takes_a_command_and_a_table() {
    if !tool_or_skip("python3", "programs in Python") {
        return;
    }
    let psi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/exec/psi.py");
    let psi = psi.display().to_string();
    let (ok, out, _) = run_vitals(&["plugin", "check", "--", &psi]);
    assert!(ok, "{out}");
    assert!(out.contains("mode:          oneshot"), "{out}");
    assert!(
        out.contains("series:        some_avg10_percent (percent), full_avg10_percent (percent)"),
        "{out}"
    );
    let (ok, out, _) = run_vitals(&[
        "plugin",
        "check",
        "--mode",
        "daemon",
        "--plugin-config",
        "resources = [\"cpu\"]",
        "--",
        &psi,
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("config:        {\"resources\":[\"cpu\"]}"),
        "{out}"
    );
    let (ok, out, _) = run_vitals(&[
        "plugin",
        "check",
        "--plugin-config",
        "bogus = 1",
        "--",
        &psi,
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("collect:  FAIL: invalid config: unknown config key(s): bogus"),
        "{out}"
    );
    let p = Programs::new();
    let garbled = p.add("garbled.sh", "#!/bin/sh\necho 'not json'\n");
    let (ok, out, _) = run_vitals(&["plugin", "check", "--", &garbled.display().to_string()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL: collect failed: the program's output is not JSON"),
        "{out}"
    );
    if let Some(dummy) =
        Some(Path::new("/usr/lib/nagios/plugins/check_dummy")).filter(|p| p.exists())
    {
        let dummy = dummy.display().to_string();
        let (ok, out, _) = run_vitals(&[
            "plugin", "check", "--mode", "nagios", "--", &dummy, "1", "warn",
        ]);
        assert!(ok, "{out}");
        assert!(
            out.contains("state warning (exit 1), 0 perfdata value(s)"),
            "{out}"
        );
    }
    let lib = vitals_e2e::plugin_lib("memory").display().to_string();
    let (ok, out, _) = run_vitals(&[
        "plugin",
        "check",
        &lib,
        "--plugin-config",
        "no_such_key = 1",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "create:      FAIL: the given config {\"no_such_key\":1} gave `invalid config"
        ),
        "{out}"
    );
}

/// Guards the output cap of a daemon: a line of exactly `max_output` bytes is an answer, one
/// byte more stops the daemon with the reason, and a fresh daemon is started.
#[test]
fn a_daemon_line_over_the_cap_stops_it() {
    let p = Programs::new();
    // `{"x": "` + N digits + `"}`: 9 + N bytes before the newline.
    let daemon = |digits: usize| {
        format!("#!/bin/sh\nread config\nwhile read request; do printf '{{\"x\": \"%0{digits}d\"}}\\n' 0; done\n")
    };
    let fits = p.add("fits.sh", &daemon(1015));
    let over = p.add("over.sh", &daemon(1016));
    let cap = "mode = \"daemon\"\nmax_output = 1024";
    let config = format!(
        "{}{}",
        collector("fits", &fits, cap),
        collector("over", &over, cap)
    );
    let host = Host::start(&config);
    let snap = host.wait_for(
        "the cap to stop a daemon twice",
        Duration::from_secs(60),
        |s| {
            s["collectors"]["over"]["restarts"].as_u64().unwrap_or(0) >= 2
                && collects(s, "fits") >= 2
        },
    );
    assert!(
        reason(&snap, "over").contains("output over 1024 bytes"),
        "{}",
        snap["collectors"]["over"]
    );
    assert_eq!(collects(&snap, "over"), 0);
    assert_eq!(
        snap["sections"]["fits"]["x"].as_str().map(str::len),
        Some(1015)
    );
}

/// Guards a collect abandoned mid-run: disabling a collector whose program (and the child
/// it forked) is still running kills the whole process group, not only the program.
#[test]
fn disabling_mid_run_kills_the_whole_group() {
    let p = Programs::new();
    let pid_file = p.path("child.pid");
    let slow = p.add(
        "slow.sh",
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > {}\nwait\n",
            pid_file.display()
        ),
    );
    let host = Host::start(&collector(
        "slow",
        &slow,
        "interval = \"1s\"\ndeadline = \"60s\"",
    ));
    let child = read_pid(&pid_file);
    assert!(alive(child), "the forked child runs");
    let url = format!("{}/admin/monitor/collectors/slow", host.base);
    let (status, _, _) = request("PUT", &url, &[], Some(r#"{"enabled": false}"#));
    assert_eq!(status, 200);
    wait_gone(
        child,
        "the child of a program whose collector was disabled mid-run",
    );
}
