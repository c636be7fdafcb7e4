//! Process isolation: a collector in a child `vitals collector-child` process, one JSON line per call over pipes.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use vitals_plugin_api::abi::{CollectorBox, ErrorKind, HostLog, PluginError};

use super::{host_log, run_job, Job, Outcome};

/// The longest reply line the host reads from a child: past it the child is killed, so a
/// plugin that writes without end cannot make the host buffer without bound.
pub const MAX_REPLY_BYTES: u64 = 16 << 20;

/// A request to the child.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Create { init: String },
    Collect,
}

/// The child's answer to one request, with the time the call took in the plugin.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Response {
    /// The call succeeded: the section for a collect, none for a create.
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        section: Option<Box<RawValue>>,
        micros: u64,
    },
    /// The plugin's error, as [`PluginError::error_kind`] and [`PluginError::message`].
    Err {
        kind: ErrorKind,
        message: String,
        micros: u64,
    },
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The host's side of one isolated collector: starts the child on demand and kills it on a hang.
pub struct ChildWorker {
    name: String,
    library: PathBuf,
    memory_limit: Option<u64>,
    running: Option<Running>,
}

/// Says how a child ended, naming the signal when it was killed by one.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let (name, hint) = match sig {
            libc::SIGSEGV => ("SIGSEGV", " (invalid memory access)"),
            libc::SIGABRT => (
                "SIGABRT",
                " (aborted; a memory limit breach also ends this way)",
            ),
            libc::SIGKILL => ("SIGKILL", " (killed, e.g. out of memory)"),
            libc::SIGBUS => ("SIGBUS", ""),
            libc::SIGILL => ("SIGILL", ""),
            libc::SIGFPE => ("SIGFPE", ""),
            libc::SIGTERM => ("SIGTERM", ""),
            _ => ("signal", ""),
        };
        format!("the collector's child process crashed: {name} ({sig}){hint}")
    } else {
        format!(
            "the collector's child process exited with code {}",
            status.code().unwrap_or(-1)
        )
    }
}

impl ChildWorker {
    /// A worker for collector `name` running `library` in a child (started on first call).
    pub fn new(name: &str, library: PathBuf, memory_limit: Option<u64>) -> Self {
        Self {
            name: name.to_owned(),
            library,
            memory_limit,
            running: None,
        }
    }

    fn start(&mut self) -> Result<&mut Running, String> {
        if self.running.is_none() {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find the vitals binary: {e}"))?;
            let mut cmd = Command::new(exe);
            cmd.arg("collector-child")
                .arg("--name")
                .arg(&self.name)
                .arg("--library")
                .arg(&self.library)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            if let Some(limit) = self.memory_limit {
                cmd.arg("--memory-limit").arg(limit.to_string());
            }
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start the collector's child process: {e}"))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err("the child process has no pipes".to_owned());
            };
            tracing::debug!(collector = %self.name, pid = child.id(), "child process started");
            self.running = Some(Running {
                child,
                stdin,
                stdout: BufReader::new(stdout),
            });
        }
        self.running
            .as_mut()
            .ok_or_else(|| "the child process is not running".to_owned())
    }

    /// Kills the child, if one runs, and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut r) = self.running.take() {
            let _ = r.child.start_kill();
            let _ = r.child.wait().await;
        }
    }

    async fn died(&mut self) -> String {
        match self.running.take() {
            Some(mut r) => {
                let status = tokio::time::timeout(Duration::from_secs(2), r.child.wait()).await;
                match status {
                    Ok(Ok(s)) => describe_exit(s),
                    _ => {
                        let _ = r.child.start_kill();
                        let _ = r.child.wait().await;
                        "the collector's child process stopped answering".to_owned()
                    }
                }
            }
            None => "the collector's child process is gone".to_owned(),
        }
    }

    /// Sends one job and waits at most `deadline`; a child that overruns is killed.
    pub async fn call(&mut self, job: Job, deadline: Duration) -> Outcome {
        let request = match job {
            Job::Create(init) => Request::Create { init },
            Job::Collect => Request::Collect,
        };
        let mut line = match serde_json::to_string(&request) {
            Ok(l) => l,
            Err(e) => return Outcome::Gone(format!("cannot encode the request: {e}")),
        };
        line.push('\n');
        let exchange = async {
            let r = self.start().map_err(Some)?;
            r.stdin.write_all(line.as_bytes()).await.map_err(|_| None)?;
            r.stdin.flush().await.map_err(|_| None)?;
            let mut reply = String::new();
            let n = (&mut r.stdout)
                .take(MAX_REPLY_BYTES + 1)
                .read_line(&mut reply)
                .await
                .map_err(|_| None)?;
            if n == 0 {
                return Err(None);
            }
            if !reply.ends_with('\n') && n as u64 > MAX_REPLY_BYTES {
                return Err(Some(format!(
                    "the collector's child process sent a reply over {MAX_REPLY_BYTES} bytes; it was killed"
                )));
            }
            Ok(reply)
        };
        match tokio::time::timeout(deadline, exchange).await {
            Err(_) => {
                self.kill().await;
                Outcome::TimedOut
            }
            Ok(Err(Some(why))) => {
                self.kill().await;
                Outcome::Gone(why)
            }
            Ok(Err(None)) => Outcome::Gone(self.died().await),
            Ok(Ok(reply)) => match serde_json::from_str::<Response>(&reply) {
                Ok(Response::Ok { section, micros }) => Outcome::Done((
                    Ok(section.map(|s| s.get().to_owned())),
                    Duration::from_micros(micros),
                )),
                Ok(Response::Err {
                    kind,
                    message,
                    micros,
                }) => Outcome::Done((
                    Err(PluginError::new(kind, message)),
                    Duration::from_micros(micros),
                )),
                Err(e) => {
                    self.kill().await;
                    Outcome::Gone(format!("the child process sent a garbled reply: {e}"))
                }
            },
        }
    }
}

/// Limits this process's address space (the child's memory limit).
fn limit_memory(bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit only reads the struct passed by reference.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Moves the protocol off stdout (so a plugin that prints cannot garble it) and returns it.
fn take_stdout() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: dup/dup2 on the process's own standard descriptors; the duplicate is owned by
    // the returned File alone.
    unsafe {
        // Close-on-exec: whatever the plugin spawns must not inherit the protocol's pipe.
        let proto = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if proto < 0 || libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(std::fs::File::from_raw_fd(proto))
    }
}

fn reply(out: &mut impl Write, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// The child's side: loads `library` and answers jobs from stdin until it closes.
///
/// # Errors
/// When the pipes to the host fail.
pub fn serve(name: &str, library: &Path, memory_limit: Option<u64>) -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes plain integers; the child dies with its host.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let mut out = take_stdout()?;
    if let Some(bytes) = memory_limit {
        limit_memory(bytes)?;
    }
    let plugin = crate::loader::load(library);
    let mut collector: Option<CollectorBox> = None;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(collector = name, "garbled request from the host: {e}");
                continue;
            }
        };
        let job = match request {
            Request::Create { init } => Job::Create(init),
            Request::Collect => Job::Collect,
        };
        let (result, took) = match &plugin {
            Ok(p) => run_job(p.module, HostLog { log: host_log }, &mut collector, job),
            Err(e) => (
                Err(PluginError::CollectFailed(
                    format!("cannot load plugin: {e}").into(),
                )),
                Duration::ZERO,
            ),
        };
        let micros = took.as_micros() as u64;
        let response = match result {
            Ok(section) => Response::Ok {
                section: section.and_then(|s| RawValue::from_string(s).ok()),
                micros,
            },
            Err(e) => Response::Err {
                kind: e.error_kind(),
                message: e.message().to_owned(),
                micros,
            },
        };
        reply(&mut out, &response)?;
    }
    Ok(())
}
