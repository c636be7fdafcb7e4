//! Docker helpers for the end-to-end tests: the CLI, the daemon check, labelled containers
//! removed after each test, and a forwarding proxy in front of the daemon's socket.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The image `scripts/test-deps.d/20-docker.sh` imports from busybox-static.
pub const IMAGE: &str = "vitals-test/busybox:latest";
/// The daemon's socket the tests reach through their own proxy.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Runs the docker CLI; returns stdout, panicking with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`docker {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Why Docker cannot be used here (no daemon answers, or the test image is missing), or
/// `None` when it can.
pub fn daemon_problem() -> Option<String> {
    let answer = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match &answer {
        Ok(out) if out.status.success() => {
            let image = Command::new("docker")
                .args(["image", "inspect", IMAGE])
                .output();
            if image.is_ok_and(|o| o.status.success()) {
                None
            } else {
                Some(format!("the test image {IMAGE} is missing"))
            }
        }
        Ok(out) => Some(format!(
            "`docker info` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `docker`: {e}")),
    }
}

/// True when a daemon answers and the test image is there; otherwise the calling test is
/// skipped loudly ([`crate::skip`]), which under CI is a failure, since `make test`
/// installs and starts both (scripts/test-deps.sh).
#[track_caller]
pub fn daemon_or_skip() -> bool {
    match daemon_problem() {
        None => true,
        Some(why) => {
            crate::skip(&format!(
                "{why} (`make test-deps` installs and starts Docker)"
            ));
            false
        }
    }
}

/// This test's containers, removed (and only they) when dropped, even after a failure.
pub struct Containers {
    /// The label every container of this test carries (`key=value`).
    pub label: String,
    prefix: String,
}

impl Containers {
    /// The containers of test `test`.
    pub fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let run = format!("{}-{nanos}", std::process::id());
        Containers {
            label: format!("vitals-e2e={test}-{run}"),
            prefix: format!("vt-e2e-{run}"),
        }
    }

    /// The full name of this test's container `short`.
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// `docker run -d` with this test's label and name; returns the container id.
    pub fn run(&self, short: &str, options: &[&str], command: &[&str]) -> String {
        let name = self.name(short);
        let mut args = vec!["run", "-d", "--label", &self.label, "--name", &name];
        args.extend_from_slice(options);
        args.push(IMAGE);
        args.extend_from_slice(command);
        docker(&args)
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}

/// A Unix socket that forwards every connection to the real daemon until stopped: lets a
/// test take "the daemon" away and bring it back without touching the shared daemon, and
/// count the requests that went through.
pub struct Proxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub served: Arc<AtomicUsize>,
    /// Container list requests (`GET …/containers/json`) forwarded so far.
    pub lists: Arc<AtomicUsize>,
    /// When the latest list requests were forwarded, oldest first (at most [`LIST_TIMES_KEPT`]).
    list_times: Arc<Mutex<Vec<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens at `path` (replacing what is there) and forwards to [`DOCKER_SOCKET`].
    pub fn start(path: &Path) -> Proxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind proxy socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let lists = Arc::new(AtomicUsize::new(0));
        let list_times = Arc::new(Mutex::new(Vec::new()));
        let (s, n, l, t) = (
            stop.clone(),
            served.clone(),
            lists.clone(),
            list_times.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        n.fetch_add(1, Ordering::SeqCst);
                        let _ = client.set_nonblocking(false);
                        if let Ok(daemon) = UnixStream::connect(DOCKER_SOCKET) {
                            pipe(client, daemon, l.clone(), t.clone());
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Proxy {
            path: path.to_path_buf(),
            stop,
            served,
            lists,
            list_times,
            thread: Some(thread),
        }
    }

    /// When the list requests forwarded so far were sent, oldest first (the latest
    /// [`LIST_TIMES_KEPT`]).
    pub fn list_times(&self) -> Vec<Instant> {
        self.list_times
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Waits for the next list request, up to `timeout`; returns when it came.
    pub fn next_list(&self, timeout: Duration) -> Option<Instant> {
        let seen = self.lists.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.lists.load(Ordering::SeqCst) > seen {
                return self.list_times().last().copied();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Stops accepting and removes the socket (open connections stay until they close).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many list request times a [`Proxy`] keeps.
pub const LIST_TIMES_KEPT: usize = 1000;

/// Copies both ways between `client` and `daemon`, counting the list requests the client
/// sends and noting when.
fn pipe(
    client: UnixStream,
    daemon: UnixStream,
    lists: Arc<AtomicUsize>,
    times: Arc<Mutex<Vec<Instant>>>,
) {
    let (Ok(client2), Ok(daemon2)) = (client.try_clone(), daemon.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let (mut from, mut to) = (client, daemon2);
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            let found = text
                .lines()
                .filter(|l| l.starts_with("GET ") && l.contains("/containers/json"))
                .count();
            if found > 0 {
                if let Ok(mut t) = times.lock() {
                    t.extend(std::iter::repeat_n(Instant::now(), found));
                    let over = t.len().saturating_sub(LIST_TIMES_KEPT);
                    t.drain(..over);
                }
            }
            lists.fetch_add(found, Ordering::SeqCst);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let (mut from, mut to) = (daemon, client2);
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}
