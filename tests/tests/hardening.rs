//! End to end: the HTTP server under hostile clients (slow heads, idle sockets, partial bodies at shutdown).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use vitals_e2e::{client, rss_bytes, vitals_bin, Host};

/// Starts `vitals` with `config` under an open-file limit of `nofile` (soft and hard).
fn start_limited(config: &str, nofile: u64) -> Host {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vitals.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(vitals_bin());
    cmd.arg("--config")
        .arg(&path)
        .args(["--bind", "127.0.0.1:0", "--log", "info"]);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Host::spawn(cmd, dir)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Raises this test process's open-file limit so it can hold thousands of sockets.
fn raise_own_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = want.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

fn addr(host: &Host) -> String {
    host.base.trim_start_matches("http://").to_owned()
}

/// GET health, timing it; an error when it does not answer 200 within 10 s.
fn health(host: &Host) -> Result<Duration, String> {
    let start = Instant::now();
    let resp = client()
        .get(format!("{}/admin/monitor/health", host.base))
        .timeout(Duration::from_secs(10))
        .send()
        .map_err(|e| format!("{e:?}"))?;
    match resp.status().as_u16() {
        200 => Ok(start.elapsed()),
        s => Err(format!("status {s}")),
    }
}

/// True once the server has closed `s` (EOF or reset), waiting until `deadline` at most.
fn closed_by_server(mut s: &TcpStream, deadline: Instant) -> bool {
    let within = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(10));
    let _ = s.set_read_timeout(Some(within));
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408/503 answer before the close
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// Guards the connection limits: 1,000 clients each sending a 400 KB header that never ends and
/// 2,000 idle sockets, against a host limited to 512 open files, leave RSS and descriptors bounded,
/// health answering, the collectors working, and every socket closed by the server.
#[test]
fn slow_heads_and_idle_sockets_stay_bounded() {
    assert!(
        raise_own_limit(8192) >= 4000,
        "the test needs 4,000 sockets"
    );
    let host = start_limited(
        "[server]\nheader_read_timeout = \"3s\"\nidle_timeout = \"4s\"\n\n\
         [collectors.process]\ninterval = \"500ms\"\n\n[collectors.network]\ninterval = \"500ms\"\n",
        512,
    );
    let pid = host.pid();
    host.wait_for("a process collect", Duration::from_secs(30), |s| {
        s["collectors"]["process"]["collects_total"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    });
    let rss_before = rss_bytes(pid);
    let fds_before = open_fds(pid);
    let a = addr(&host);

    let mut heads = Vec::new();
    let chunk = vec![b'a'; 16 * 1024];
    for _ in 0..1000 {
        let Ok(mut s) = TcpStream::connect(&a) else {
            continue;
        };
        let _ = s.set_write_timeout(Some(Duration::from_millis(20)));
        let _ = s.write_all(b"GET /admin/monitor/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
        for _ in 0..25 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        heads.push(s);
    }
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(s) = TcpStream::connect(&a) {
            idle.push(s);
        }
    }
    let rss_attack = rss_bytes(pid);
    let fds_attack = open_fds(pid);
    let during = health(&host);
    let mut peak_fds = fds_attack;
    for _ in 0..5 {
        peak_fds = peak_fds.max(open_fds(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "rss {} -> {} kB, fds {fds_before} -> {fds_attack} (peak {peak_fds}), health during the attack {during:?}",
        rss_before / 1024,
        rss_attack / 1024
    );
    assert!(
        during.is_ok(),
        "health did not answer during the attack: {during:?}"
    );
    assert!(
        rss_attack < rss_before + 64 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_attack}"
    );
    // The limit is never reached: the reserve is computed from what the rest of the process
    // holds, and the process collector's kept-open files grow with the machine's process
    // count after that, so the peak can come closer to 512 than the reserve's 128 (496 seen
    // in CI); what the reserve is for is checked below (no component ran out, both ok).
    assert!(
        peak_fds < 512,
        "{peak_fds} descriptors open: the limit was reached"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let unclosed = heads
        .iter()
        .chain(idle.iter())
        .filter(|s| !closed_by_server(s, deadline))
        .count();
    assert_eq!(unclosed, 0, "sockets the server never closed");
    drop(heads);
    drop(idle);
    let after = health(&host);
    assert!(after.is_ok(), "health after the attack: {after:?}");
    let errors = host.get_ok("/admin/monitor/errors").to_string();
    assert!(
        !errors.contains("Too many open files"),
        "a component ran out of descriptors: {errors}"
    );
    let snap = host.get_ok("/admin/monitor/system");
    for c in ["process", "network"] {
        assert_eq!(
            snap["collectors"][c]["state"].as_str(),
            Some("ok"),
            "{c}: {}",
            snap["collectors"][c]
        );
    }
}

/// Guards the bounded shutdown: a client holding a partial body and one holding an unfinished
/// request head do not keep the host alive after SIGTERM.
#[test]
fn shutdown_is_bounded_with_partial_requests() {
    let mut host = Host::start(
        "[server]\nheader_read_timeout = \"10m\"\nidle_timeout = \"10m\"\nshutdown_timeout = \"2s\"\n\n\
         [collectors.memory]\ninterval = \"500ms\"\n",
    );
    let a = addr(&host);
    let mut body = TcpStream::connect(&a).expect("connect");
    body.write_all(
        b"PUT /admin/monitor/collectors/memory HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"interval\":",
    )
    .expect("write");
    let mut head = TcpStream::connect(&a).expect("connect");
    head.write_all(b"GET /admin/monitor/system HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));
    host.terminate();
    let status = host.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some(),
        "the host kept running on partial requests; log:\n{}",
        host.log()
    );
    drop((body, head));
}
