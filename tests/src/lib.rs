//! Harness for the end-to-end tests: starts the built `vitals` with a config and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

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
        let mut child = Command::new(vitals_bin())
            .arg("--config")
            .arg(&path)
            .args(["--bind", "127.0.0.1:0", "--log", "info"])
            .args(args)
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
