//! Process isolation: a collector in a child `vitals collector-child` process, one JSON line per call over pipes.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use vitals_plugin_api::abi::{CollectorBox, ErrorKind, HostLog, PluginError};

use super::{host_log, run_job, Job, Outcome};

/// The address-space limit of an isolated plugin's child when the config sets no
/// `memory_limit`: 512 MiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 512 << 20;

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

/// The last lines a child wrote to stderr, kept to tell why it died, and the last line that
/// names a cause (kept apart, so a backtrace printed after it cannot push it out).
#[derive(Debug, Default)]
struct Words {
    lines: VecDeque<String>,
    cause: Option<String>,
}

type LastWords = Arc<Mutex<Words>>;

/// Lines of a child's stderr kept for the reason it died, and the longest kept of each.
const LAST_WORDS: usize = 8;
const LINE_BYTES: u64 = 4096;

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The task forwarding the child's stderr to the host's log; it ends with the stream.
    stderr_task: tokio::task::JoinHandle<()>,
    last_words: LastWords,
}

/// The host's side of one isolated collector: starts the child on demand and kills it on a hang.
pub struct ChildWorker {
    name: String,
    library: PathBuf,
    memory_limit: Option<u64>,
    running: Option<Running>,
}

/// Why a child aborted, as its last words on stderr tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortCause {
    /// An allocation failed: the child reached its memory limit.
    Memory,
    /// A thread overflowed its stack.
    StackOverflow,
}

/// The cause the lines a child wrote last name, if any; the matching line comes with it.
pub fn abort_cause<'a>(
    last_words: impl IntoIterator<Item = &'a str>,
) -> Option<(AbortCause, &'a str)> {
    last_words.into_iter().find_map(|line| {
        let l = line.to_ascii_lowercase();
        if l.contains("memory allocation of")
            || l.contains("out of memory")
            || l.contains("bad_alloc")
            || l.contains("cannot allocate memory")
        {
            Some((AbortCause::Memory, line))
        } else if l.contains("overflowed its stack") || l.contains("stack overflow") {
            Some((AbortCause::StackOverflow, line))
        } else {
            None
        }
    })
}

/// Says how a child ended, naming the signal when it was killed by one, and for an abort
/// whether it ran out of memory (within `memory_limit`) or overflowed a stack, as the last
/// lines it wrote to stderr tell.
pub fn describe_death(
    status: std::process::ExitStatus,
    last_words: &[String],
    memory_limit: Option<u64>,
) -> String {
    use std::os::unix::process::ExitStatusExt;
    let cause = abort_cause(last_words.iter().rev().map(String::as_str));
    match cause {
        Some((AbortCause::Memory, line)) => {
            let limit = memory_limit.map_or_else(
                || "the machine's memory".to_owned(),
                |b| format!("its memory_limit of {} MiB", b >> 20),
            );
            return format!(
                "the collector's child process crashed: it ran out of memory (an allocation failed within {limit}; it said: {line})"
            );
        }
        Some((AbortCause::StackOverflow, line)) if status.signal().is_some() => {
            return format!(
                "the collector's child process crashed: its stack overflowed (it said: {line})"
            );
        }
        _ => {}
    }
    let text = describe_exit(status);
    match last_words.last() {
        Some(line) if status.signal().is_some() => format!("{text}; it said last: {line}"),
        _ => text,
    }
}

/// Says how a child ended, naming the signal when it was killed by one.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let (name, hint) = match sig {
            libc::SIGSEGV => ("SIGSEGV", " (invalid memory access)"),
            libc::SIGABRT => ("SIGABRT", " (aborted)"),
            libc::SIGKILL => (
                "SIGKILL",
                " (killed, e.g. by the kernel when out of memory)",
            ),
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
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            if let Some(limit) = self.memory_limit {
                cmd.arg("--memory-limit").arg(limit.to_string());
            }
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start the collector's child process: {e}"))?;
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err("the child process has no pipes".to_owned());
            };
            tracing::debug!(collector = %self.name, pid = child.id(), "child process started");
            let last_words = LastWords::default();
            self.running = Some(Running {
                child,
                stdin,
                stdout: BufReader::new(stdout),
                stderr_task: tokio::spawn(forward_stderr(stderr, last_words.clone())),
                last_words,
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
                    Ok(Ok(s)) => {
                        // Its last words may still be in the pipe, which ends now it is gone.
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), &mut r.stderr_task).await;
                        let words: Vec<String> = r
                            .last_words
                            .lock()
                            .map(|w| w.lines.iter().chain(&w.cause).cloned().collect())
                            .unwrap_or_default();
                        describe_death(s, &words, self.memory_limit)
                    }
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

/// Copies a child's stderr into the host's log line by line (each cut at [`LINE_BYTES`]),
/// keeping the last [`LAST_WORDS`] lines.
async fn forward_stderr(stderr: ChildStderr, last_words: LastWords) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(LINE_BYTES)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let fd = crate::guard::log_fd();
        // SAFETY: write(2) of a live buffer to the log's own descriptor.
        let _ = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            continue;
        }
        if let Ok(mut w) = last_words.lock() {
            if abort_cause([text.as_str()]).is_some() {
                w.cause = Some(text.clone());
            }
            if w.lines.len() == LAST_WORDS {
                w.lines.pop_front();
            }
            w.lines.push_back(text);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn words(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    /// Guards the reason of an abort: a failed allocation is named as the memory limit, a
    /// stack overflow as a stack overflow (not a memory limit), anything else as an abort
    /// with the child's last line.
    #[test]
    fn an_abort_says_whether_memory_or_the_stack_ran_out() {
        let abort = std::process::ExitStatus::from_raw(libc::SIGABRT);
        let memory = describe_death(
            abort,
            &words(&[
                "INFO collect #3",
                "memory allocation of 67108864 bytes failed",
            ]),
            Some(160 << 20),
        );
        assert!(
            memory.contains("ran out of memory") && memory.contains("memory_limit of 160 MiB"),
            "{memory}"
        );
        let stack = describe_death(
            abort,
            &words(&[
                "thread 'main' has overflowed its stack",
                "fatal runtime error: stack overflow",
            ]),
            Some(512 << 20),
        );
        assert!(
            stack.contains("stack overflow") && !stack.contains("memory"),
            "{stack}"
        );
        let plain = describe_death(abort, &words(&["assertion failed"]), Some(512 << 20));
        assert!(
            plain.contains("SIGABRT")
                && plain.contains("assertion failed")
                && !plain.contains("memory"),
            "{plain}"
        );
        let exited = describe_death(std::process::ExitStatus::from_raw(3 << 8), &[], None);
        assert_eq!(exited, "the collector's child process exited with code 3");
    }
}
