//! Harness for the end-to-end tests: starts the built `vitals` with a config and talks to it over HTTP.

pub mod block;
pub mod docker;

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use vitals_plugin_api::testing::{in_ci, skip};

/// True when `cmd` is an executable on `PATH`; otherwise the calling test (or the part of it
/// that needs `cmd`, as `what` says) is skipped loudly, which under CI is a failure.
#[track_caller]
pub fn tool_or_skip(cmd: &str, what: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if !found {
        skip(&format!(
            "`{cmd}` is not installed, so {what} is not checked (`make test-deps` installs it)"
        ));
    }
    found
}

/// The file the dynamic loader loads for the shared library `soname` that defines `symbol`
/// (e.g. `("libm.so.6", "cos")`), on any architecture: the library is opened with `dlopen`,
/// as the host opens a plugin, and `dladdr` names the file the symbol came from. `None` when
/// the loader cannot find it.
pub fn loaded_library_path(soname: &str, symbol: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let soname = CString::new(soname).ok()?;
    let symbol = CString::new(symbol).ok()?;
    // SAFETY: both names are NUL-terminated; a system library's constructors are safe to run
    // (the process has usually loaded it already), and it is never closed, so the symbol
    // address and the file name `dladdr` points into stay valid while they are read.
    unsafe {
        let handle = libc::dlopen(soname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return None;
        }
        let address = libc::dlsym(handle, symbol.as_ptr());
        if address.is_null() {
            return None;
        }
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(address, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(info.dli_fname).to_bytes();
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(name)))
    }
}

/// The cargo target folder holding the built binary and plugins (`target/debug`).
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("VITALS_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // The test binary lives in target/debug/deps.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The built `vitals` binary.
pub fn vitals_bin() -> PathBuf {
    let bin = target_dir().join("vitals");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` (make test does) before the e2e tests",
        bin.display()
    );
    bin
}

/// A built plugin library by crate suffix, e.g. `cpu` -> `libvitals_plugin_cpu.so`.
pub fn plugin_lib(name: &str) -> PathBuf {
    let lib = target_dir().join(format!("libvitals_plugin_{name}.so"));
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build --workspace`",
        lib.display()
    );
    lib
}

/// A running `vitals` host, killed when dropped.
pub struct Host {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
    /// The folder holding the host's config.
    pub dir: tempfile::TempDir,
}

impl Host {
    /// Starts `vitals` with `config` (TOML text) written to a fresh folder, on a free port.
    pub fn start(config: &str) -> Host {
        Self::start_with(config, &[])
    }

    /// Like [`Host::start`] with extra command-line arguments.
    pub fn start_with(config: &str, args: &[&str]) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vitals.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = Command::new(vitals_bin());
        cmd.arg("--config")
            .arg(&path)
            .args(if args.contains(&"--bind") {
                &[][..]
            } else {
                &["--bind", "127.0.0.1:0"][..]
            })
            .args(["--log", "info"])
            .args(args);
        Self::spawn(cmd, dir)
    }

    /// Starts a prepared command that runs `vitals` (possibly through a wrapper that execs
    /// it) and waits for its "listening on" log line; `dir` is kept as [`Host::dir`].
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Host {
        // Each host keeps its durable history in its own folder (unless the test chose a path).
        if !cmd.get_envs().any(|(k, _)| k == "VITALS_HISTORY_PATH") {
            cmd.env("VITALS_HISTORY_PATH", dir.path().join("history.db"));
        }
        let mut child = cmd
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vitals");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(i) = line.find("listening on http://") {
                        if let Some(t) = tx.take() {
                            let _ = t.send(line[i + "listening on ".len()..].trim().to_owned());
                        }
                    }
                    log.lock().expect("log").push(line);
                }
            });
        }
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "vitals did not start listening within 30 s; its log:\n{}",
                    log.lock().expect("log").join("\n")
                );
            }
        };
        Host {
            child,
            base,
            log,
            dir,
        }
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// GET a path; returns the status and the body parsed as JSON (Null when not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let resp = client()
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nhost log:\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET a path that must answer 200 with JSON.
    pub fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(
            status,
            200,
            "GET {path} gave {status}: {body}\nhost log:\n{}",
            self.log()
        );
        body
    }

    /// `GET /metrics` as text (the Prometheus exposition).
    pub fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.base))
            .send()
            .and_then(|r| r.text())
            .expect("GET /metrics")
    }

    /// GET a path with a bearer token; it must answer 200 with JSON.
    pub fn get_with_token(&self, path: &str, token: &str) -> Value {
        let resp = client()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {path} with a token");
        resp.json().unwrap_or(Value::Null)
    }

    /// Polls `/admin/monitor/system` until `pred` holds, or panics after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let snap = self.get_ok("/admin/monitor/system");
            if pred(&snap) {
                return snap;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; last snapshot: {snap:#}\nhost log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True while the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, as a service manager would.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Sends SIGHUP (config reload).
    pub fn hangup(&self) {
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `within` for the process to end; its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() >= within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client with a short timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Asserts that `promtool check metrics` accepts `text` as a Prometheus exposition.
pub fn assert_promtool_accepts(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `vitals hash-token` with `token` on its standard input: the printed `sha256:` hash.
pub fn hash_token(token: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(vitals_bin())
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hash-token");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{token}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && hash.starts_with("sha256:"),
        "hash-token printed `{hash}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hash
}

/// Runs `vitals` with `args` to completion; returns exit success, stdout and stderr.
pub fn run_vitals(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(vitals_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run vitals");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` lines, joined.
    pub data: String,
    /// The `retry:` field.
    pub retry: Option<u64>,
}

/// Reads Server-Sent Events from a streaming response on a thread of its own.
pub struct SseReader {
    rx: std::sync::mpsc::Receiver<SseEvent>,
    /// The response status.
    pub status: u16,
    /// The response content type.
    pub content_type: String,
}

impl SseReader {
    /// Opens `path` on `base` with extra headers.
    pub fn open(base: &str, path: &str, headers: &[(&str, &str)]) -> SseReader {
        let client = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .expect("client");
        let mut req = client
            .get(format!("{base}{path}"))
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().expect("open stream");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ev = SseEvent::default();
            let mut seen = false;
            for line in BufReader::new(resp).lines() {
                let Ok(line) = line else { break };
                if line.is_empty() {
                    if seen && tx.send(std::mem::take(&mut ev)).is_err() {
                        break;
                    }
                    seen = false;
                    continue;
                }
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line
                    .split_once(':')
                    .map_or((line.as_str(), ""), |(f, v)| (f, v.trim_start()));
                seen = true;
                match field {
                    "event" => ev.event = Some(value.to_owned()),
                    "id" => ev.id = Some(value.to_owned()),
                    "retry" => ev.retry = value.parse().ok(),
                    "data" => {
                        if !ev.data.is_empty() {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(value);
                    }
                    _ => {}
                }
            }
        });
        SseReader {
            rx,
            status,
            content_type,
        }
    }

    /// The next event, or `None` after `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<SseEvent> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event that carries data, or `None` after `timeout`.
    pub fn next_data(&self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let ev = self.next(left)?;
            if !ev.data.is_empty() {
                return Some(ev);
            }
        }
    }
}

/// Resident memory of a process in bytes (from /proc).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Threads of a process (from /proc).
pub fn thread_count(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sends a request with a method, headers and a body; returns status, headers and JSON body.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the loader lookup: libm is found where the loader mapped it into this process,
    /// as an absolute path to an existing file, and a name the loader cannot find is `None`.
    #[test]
    fn the_loader_names_the_file_it_loaded() {
        let libm = loaded_library_path("libm.so.6", "cos").expect("the loader finds libm.so.6");
        assert!(libm.is_absolute() && libm.is_file(), "{}", libm.display());
        let real = std::fs::canonicalize(&libm).expect("canonical path");
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        assert!(
            maps.lines().any(|l| l.ends_with(&*real.to_string_lossy())),
            "{} is not mapped into this process",
            real.display()
        );
        assert_eq!(loaded_library_path("libno-such-library.so.9", "cos"), None);
        assert_eq!(
            loaded_library_path("libm.so.6", "no_such_symbol_here"),
            None
        );
    }
}
