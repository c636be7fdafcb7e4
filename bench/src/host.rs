//! Starts the release `vitals` with a generated config on a free loopback port, and stops it.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::load::{self, Target};

/// Log lines kept for error messages.
const LOG_LINES: usize = 200;

/// Every collector that ships, in the order they are configured.
pub const COLLECTORS: [&str; 8] = [
    "cpu", "memory", "system", "disk", "network", "process", "gpu", "docker",
];

/// The release build's folder: the binary and the plugin libraries.
#[derive(Debug, Clone)]
pub struct Build {
    /// e.g. `target/release`.
    pub dir: PathBuf,
}

impl Build {
    /// Checks that `dir` holds `vitals` and every plugin the bench loads.
    ///
    /// # Errors
    /// Names each missing file and the command that builds it.
    pub fn find(dir: &Path) -> anyhow::Result<Build> {
        let mut missing = Vec::new();
        if !dir.join("vitals").is_file() {
            missing.push("vitals".to_owned());
        }
        for name in COLLECTORS.iter().chain(&["fault"]) {
            let lib = format!("libvitals_plugin_{name}.so");
            if !dir.join(&lib).is_file() {
                missing.push(lib);
            }
        }
        if !missing.is_empty() {
            bail!(
                "{} lacks {}; build them with `cargo build --release -p vitals-host -p vitals-plugin-fault -p vitals-fake-nvml {}`",
                dir.display(),
                missing.join(", "),
                COLLECTORS
                    .iter()
                    .map(|c| format!("-p vitals-plugin-{c}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        Ok(Build {
            dir: dir.to_path_buf(),
        })
    }

    /// A plugin library of this build, e.g. `fault`.
    pub fn plugin(&self, name: &str) -> PathBuf {
        self.dir.join(format!("libvitals_plugin_{name}.so"))
    }

    /// The fake NVML library, when built (it lets the gpu collector do its real work).
    pub fn fake_nvml(&self) -> Option<PathBuf> {
        Some(self.dir.join("libnvidia_ml.so")).filter(|p| p.is_file())
    }
}

/// A TOML string literal for `s` (JSON's escapes are valid in TOML basic strings).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A config with every collector that ships at `interval` (e.g. `"1s"`).
pub fn all_collectors_config(build: &Build, interval: &str) -> String {
    all_collectors_config_with(build, interval, true)
}

/// [`all_collectors_config`] with the durable history on (`persist`, the default) or off.
pub fn all_collectors_config_with(build: &Build, interval: &str, persist: bool) -> String {
    let mut out = format!("[history]\npoints = 60\npersist = {persist}\n\n");
    for name in COLLECTORS {
        out.push_str(&format!(
            "[collectors.{name}]\ninterval = {}\n",
            toml_str(interval)
        ));
        if name == "gpu" {
            if let Some(nvml) = build.fake_nvml() {
                out.push_str(&format!(
                    "[collectors.gpu.config]\nnvml_library = {}\nnvidia_smi = \"/nonexistent/nvidia-smi\"\n",
                    toml_str(&nvml.to_string_lossy())
                ));
            }
        }
        out.push('\n');
    }
    out
}

/// A running `vitals`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Vitals {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// `127.0.0.1:PORT`.
    pub addr: std::net::SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
}

impl Vitals {
    /// Starts `vitals` from `build` with `config` on a free loopback port.
    ///
    /// Must be called from the thread that lives as long as the bench (the main thread):
    /// the child gets SIGTERM when the thread that started it ends.
    ///
    /// # Errors
    /// When it cannot start or does not log its address within 30 s.
    pub fn start(build: &Build, config: &str) -> anyhow::Result<Vitals> {
        Vitals::start_with_history(build, config, None)
    }

    /// [`Vitals::start`] with the durable history kept in `history` (default: a file in the
    /// host's temporary folder, removed with it).
    ///
    /// # Errors
    /// As [`Vitals::start`].
    pub fn start_with_history(
        build: &Build,
        config: &str,
        history: Option<&Path>,
    ) -> anyhow::Result<Vitals> {
        let dir = tempfile::tempdir().context("temporary folder")?;
        let path = dir.path().join("vitals.toml");
        std::fs::write(&path, config).context("writing the config")?;
        let history = history.map_or_else(|| dir.path().join("history.db"), Path::to_path_buf);
        let mut cmd = Command::new(build.dir.join("vitals"));
        cmd.arg("--config")
            .arg(&path)
            .args(["--bind", "127.0.0.1:0", "--log", "info"])
            .env("VITALS_HISTORY_PATH", history)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // An interrupted bench leaves no host behind.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting vitals")?;
        let pid = child.id();
        let stderr = child.stderr.take().context("vitals' stderr")?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(i) = line.find("listening on http://") {
                        if let Some(t) = tx.take() {
                            let addr = line[i + "listening on http://".len()..].trim();
                            let _ = t.send(addr.trim_end_matches('/').to_owned());
                        }
                    }
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    if log.len() >= LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        let mut vitals = Vitals {
            child,
            pid,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => {
                    vitals.addr = addr
                        .parse()
                        .with_context(|| format!("vitals logged an odd address `{addr}`"))?;
                    return Ok(vitals);
                }
                Err(_) if Instant::now() >= until => bail!(
                    "vitals did not log its address within 30 s; its log:\n{}",
                    vitals.log_tail()
                ),
                Err(_) => {
                    if let Ok(Some(status)) = vitals.child.try_wait() {
                        // Let the reader thread take the last lines.
                        std::thread::sleep(Duration::from_millis(100));
                        bail!(
                            "vitals exited ({status}) before listening; its log:\n{}",
                            vitals.log_tail()
                        );
                    }
                }
            }
        }
    }

    /// The last lines vitals logged.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// A request target on this host.
    pub fn target(&self, path: &str) -> Target {
        Target {
            addr: self.addr,
            path: path.to_owned(),
        }
    }

    /// The full snapshot, parsed.
    ///
    /// # Errors
    /// When the request fails or the answer is not 200 with JSON.
    pub async fn snapshot(&self) -> anyhow::Result<Value> {
        let (status, body) = load::get(&self.target("/admin/monitor/system")).await?;
        if status != 200 {
            bail!("GET /admin/monitor/system answered {status}");
        }
        serde_json::from_slice(&body).context("the snapshot is not JSON")
    }

    /// Waits (at most `limit`) until no collector is `pending`; returns the snapshot.
    ///
    /// # Errors
    /// When collectors are still pending after `limit`, with the host's log.
    pub async fn wait_settled(&self, limit: Duration) -> anyhow::Result<Value> {
        let until = Instant::now() + limit;
        loop {
            let snap = self.snapshot().await;
            if let Ok(s) = &snap {
                let pending: Vec<&String> = s["collectors"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(_, v)| v["state"] == "pending")
                            .map(|(k, _)| k)
                            .collect()
                    })
                    .unwrap_or_default();
                if pending.is_empty() {
                    return snap;
                }
                if Instant::now() >= until {
                    bail!(
                        "collectors still pending after {limit:?}: {pending:?}; vitals' log:\n{}",
                        self.log_tail()
                    );
                }
            } else if Instant::now() >= until {
                return snap;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops vitals: SIGTERM, up to 10 s to exit, then SIGKILL.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vitals {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Each collector's state in a snapshot, for the table's header.
pub fn describe_states(snapshot: &Value) -> String {
    snapshot["collectors"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v["state"].as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Each collector's `last_duration_ms`, for the table's header.
pub fn describe_durations(snapshot: &Value) -> String {
    snapshot["collectors"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| match v["last_duration_ms"].as_f64() {
                    Some(ms) => format!("{k}={ms:.2}"),
                    None => format!("{k}=-"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the generated config: every collector at the interval, the fake NVML quoted.
    #[test]
    fn config_lists_every_collector() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("libnvidia_ml.so"), b"").expect("fake");
        let build = Build {
            dir: dir.path().to_path_buf(),
        };
        let text = all_collectors_config(&build, "1s");
        for c in COLLECTORS {
            assert!(
                text.contains(&format!("[collectors.{c}]\ninterval = \"1s\"")),
                "{c}"
            );
        }
        assert!(text.contains("nvml_library = \""), "{text}");
    }

    /// Guards the missing-build message: it names the files and the build command.
    #[test]
    fn missing_build_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let err = Build::find(dir.path()).expect_err("empty folder");
        let msg = err.to_string();
        assert!(msg.contains("vitals,"), "{msg}");
        assert!(msg.contains("libvitals_plugin_docker.so"), "{msg}");
        assert!(msg.contains("cargo build --release"), "{msg}");
    }
}
