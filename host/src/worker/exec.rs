//! Exec collectors: any program run by argv (one run per collect, a long-running daemon, or a Nagios check), bounded in time, output, memory and CPU.
//!
//! Each run is a process group of its own, so a deadline kills the program with every
//! child it forked. The program inherits no file descriptor but its three pipes, starts
//! with a clean environment, and is reaped before the call returns. The wire format is in
//! `docs/exec-protocol.md`.

use std::ffi::CString;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use vitals_plugin_api::abi::PluginError;
use vitals_plugin_api::Series;

use super::nagios::{self, CheckState};
use super::{Job, Outcome};
use crate::config::{CollectorConfig, Config, ExecMode, DEFAULT_MAX_OUTPUT, DEFAULT_PATH};

/// The version of the exec protocol, passed as `VITALS_PROTOCOL`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Exit code for "unavailable" (`EX_UNAVAILABLE` of sysexits.h): the first line of stdout or
/// stderr is the reason.
pub const EXIT_UNAVAILABLE: i32 = 69;
/// Exit code for "invalid config" (`EX_CONFIG` of sysexits.h).
pub const EXIT_CONFIG: i32 = 78;
/// The most stderr kept from one run for messages (the rest is read and dropped).
const STDERR_KEEP: usize = 4096;

/// Everything needed to run one exec collector's program, resolved from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecSpec {
    /// The program, resolved to a path.
    pub program: PathBuf,
    /// The arguments after the program.
    pub args: Vec<String>,
    /// How it is run and read.
    pub mode: ExecMode,
    /// Its working directory.
    pub working_dir: PathBuf,
    /// The user to run as: name, uid, gid, home.
    pub user: Option<RunAs>,
    /// The cap on one answer, in bytes.
    pub max_output: u64,
    /// The address-space limit, in bytes.
    pub memory_limit: Option<u64>,
    /// The CPU time one run may use.
    pub cpu_limit: Option<Duration>,
    /// The series declared in the config.
    pub series: Vec<Series>,
}

/// A user a program runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// As configured.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its home folder (`HOME`).
    pub home: PathBuf,
}

impl ExecSpec {
    /// The spec of collector `c` of `config`.
    ///
    /// # Errors
    /// A message when the program cannot be found or run, or the user does not exist.
    pub fn from_config(config: &Config, c: &CollectorConfig) -> Result<ExecSpec, String> {
        let program = config.resolve_command(c)?;
        let user = c.user.as_deref().map(lookup_user).transpose()?;
        if let Some(u) = &user {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if me != 0 && me != u.uid {
                return Err(format!(
                    "the host runs as uid {me}, not as root, so it cannot switch to user `{}`",
                    u.name
                ));
            }
        }
        Ok(ExecSpec {
            program,
            args: c
                .command
                .as_ref()
                .map(|a| a.iter().skip(1).cloned().collect())
                .unwrap_or_default(),
            mode: c.mode.unwrap_or_default(),
            working_dir: c
                .working_dir
                .as_ref()
                .map_or_else(|| PathBuf::from("/"), |d| config.base_dir.join(d)),
            user,
            max_output: c.max_output.map_or(DEFAULT_MAX_OUTPUT, |m| m.0),
            memory_limit: c.memory_limit.map(|m| m.0),
            cpu_limit: c.cpu_limit,
            series: c.series.clone(),
        })
    }

    /// The series known before the first run: the config's, and for a Nagios check its
    /// exit code and perfdata.
    pub fn initial_series(&self) -> Vec<Series> {
        let mut all = self.series.clone();
        if self.mode == ExecMode::Nagios {
            merge_series(&mut all, nagios::series());
        }
        all
    }

    /// The command line as one text (for status and logs).
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Adds `more` to `all`; a series of the same name replaces the earlier one.
fn merge_series(all: &mut Vec<Series>, more: Vec<Series>) {
    for s in more {
        match all.iter_mut().find(|x| x.name == s.name) {
            Some(x) => *x = s,
            None => all.push(s),
        }
    }
}

/// Looks a user up by name or numeric uid in the system's user database.
fn lookup_user(name: &str) -> Result<RunAs, String> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = if let Ok(uid) = name.parse::<u32>() {
        // SAFETY: every pointer is valid for the call; buf outlives the use of pwd's strings.
        unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) }
    } else {
        let c_name = CString::new(name).map_err(|_| format!("invalid user name `{name}`"))?;
        // SAFETY: as above; c_name is NUL-terminated.
        unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        }
    };
    if rc != 0 || found.is_null() {
        return Err(format!("no user `{name}` on this machine"));
    }
    // SAFETY: pw_dir points into buf, NUL-terminated, set by a successful lookup.
    let home = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) }
        .to_string_lossy()
        .into_owned();
    Ok(RunAs {
        name: name.to_owned(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home: PathBuf::from(home),
    })
}

/// Sets an rlimit (soft and hard) in a freshly forked child.
fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct passed by reference; async-signal-safe.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Marks every descriptor above stderr close-on-exec, so the program inherits none of the
/// host's (sockets, the config watch, other collectors' pipes).
fn close_inherited_fds() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range and fcntl are async-signal-safe syscalls on plain integers.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return;
        }
        // Kernels before 5.11: one by one, up to a bound.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(65_536) as libc::c_int
        } else {
            1024
        };
        for fd in 3..top {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// The command for one start of the program: clean environment, its own process group,
/// limits, no inherited descriptors, the user and folder asked for.
fn command(spec: &ExecSpec, name: &str, interval: Duration, deadline: Duration) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
        )
        .env("LC_ALL", "C")
        .env("VITALS_PROTOCOL", PROTOCOL_VERSION.to_string())
        .env("VITALS_COLLECTOR", name)
        .env("VITALS_MODE", mode_name(spec.mode))
        .env(
            "VITALS_INTERVAL_SECONDS",
            interval.as_secs_f64().to_string(),
        )
        .env(
            "VITALS_DEADLINE_SECONDS",
            deadline.as_secs_f64().to_string(),
        )
        .env("VITALS_MAX_OUTPUT_BYTES", spec.max_output.to_string())
        .current_dir(&spec.working_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(tz) = std::env::var_os("TZ") {
        cmd.env("TZ", tz);
    }
    match &spec.user {
        Some(u) => {
            cmd.uid(u.uid)
                .gid(u.gid)
                .env("HOME", &u.home)
                .env("USER", &u.name);
        }
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                cmd.env("HOME", home);
            }
        }
    }
    let memory = spec.memory_limit;
    let cpu = spec.cpu_limit.map(|d| d.as_secs().max(1));
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, setrlimit, close_range/fcntl); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(bytes) = memory {
                set_limit(libc::RLIMIT_AS, bytes, bytes)?;
            }
            if let Some(secs) = cpu {
                // SIGXCPU at the soft limit, SIGKILL a second later.
                set_limit(libc::RLIMIT_CPU, secs, secs + 1)?;
            }
            close_inherited_fds();
            Ok(())
        });
    }
    cmd
}

fn mode_name(mode: ExecMode) -> &'static str {
    match mode {
        ExecMode::Oneshot => "oneshot",
        ExecMode::Daemon => "daemon",
        ExecMode::Nagios => "nagios",
    }
}

/// Kills a run's process group when dropped, so a collect that is abandoned (its collector
/// stopped mid-run) leaves nothing behind either.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Kills a whole process group (the program and everything it forked).
fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid.and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: killpg takes plain integers; a group that is gone gives ESRCH, ignored.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// Says how a program ended, naming the signal when it was killed by one.
pub fn describe_status(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        return format!("the program was killed by {}", signal_name(sig));
    }
    let code = status.code().unwrap_or(-1);
    let mut text = format!("the program exited with code {code}");
    if (129..=128 + 64).contains(&code) {
        text.push_str(&format!(
            " (128 + {}: a shell's report of a process killed by {})",
            code - 128,
            signal_name(code - 128)
        ));
    }
    text
}

fn signal_name(sig: i32) -> String {
    let (name, hint) = match sig {
        libc::SIGKILL => ("SIGKILL", ", e.g. out of memory"),
        libc::SIGSEGV => ("SIGSEGV", ": invalid memory access"),
        libc::SIGABRT => ("SIGABRT", ""),
        libc::SIGXCPU => ("SIGXCPU", ": its CPU time limit was reached"),
        libc::SIGTERM => ("SIGTERM", ""),
        libc::SIGPIPE => ("SIGPIPE", ""),
        libc::SIGBUS => ("SIGBUS", ""),
        _ => ("signal", ""),
    };
    format!("{name} ({sig}){hint}")
}

/// Reads all of `r`, failing once more than `max` bytes came.
async fn read_capped(r: &mut (impl AsyncRead + Unpin), max: u64) -> Result<Vec<u8>, RunError> {
    let mut out = Vec::new();
    r.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .await
        .map_err(|e| RunError::Failed(format!("cannot read the program's output: {e}")))?;
    if out.len() as u64 > max {
        return Err(RunError::OutputOver(max));
    }
    Ok(out)
}

/// Reads all of `r`, keeping the first `keep` bytes.
async fn read_kept(r: &mut (impl AsyncRead + Unpin), keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = keep.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
    }
    kept
}

/// Reads one line of at most `max` bytes (without its newline); `None` at end of stream.
async fn read_line_capped(
    r: &mut (impl AsyncBufRead + Unpin),
    max: u64,
) -> Result<Option<Vec<u8>>, RunError> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(max.saturating_add(2))
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| RunError::Failed(format!("cannot read the program's answer: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() as u64 > max {
        return Err(RunError::OutputOver(max));
    }
    if line.len() as u64 > max {
        return Err(RunError::OutputOver(max));
    }
    Ok(Some(line))
}

/// Why a run gave no answer to interpret.
#[derive(Debug)]
enum RunError {
    /// The program could not be started.
    Spawn(String),
    /// It printed more than the cap.
    OutputOver(u64),
    /// Anything else, with its message.
    Failed(String),
}

impl RunError {
    fn message(self) -> String {
        match self {
            RunError::Spawn(m) | RunError::Failed(m) => m,
            RunError::OutputOver(n) => {
                format!("output over {n} bytes: the program was stopped (raise max_output?)")
            }
        }
    }
}

/// One finished run of a program.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// The most useful line of stderr for a message: its last non-empty one, cut short.
fn stderr_hint(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| format!(": {}", cut(l, 300)))
        .unwrap_or_default()
}

fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| cut(l, 300))
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let end = (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &s[..end])
}

/// The control part of an answer: `{"vitals": {...}, "section": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    vitals: Control,
    #[serde(default)]
    section: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    #[serde(default)]
    status: Status,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    series: Option<Vec<Series>>,
}

/// What a program says of its collect.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    #[default]
    Ok,
    Unavailable,
    Failed,
}

/// A program's answer read: the section (or the error) and the series it declared.
type Answer = (Result<String, PluginError>, Option<Vec<Series>>);

/// Reads one answer: a JSON object that is the section, or an envelope with a `vitals` key.
fn interpret(stdout: &[u8]) -> Answer {
    let failed = |m: String| (Err(PluginError::CollectFailed(m.into())), None);
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if text.is_empty() {
        return failed("the program printed nothing on stdout".to_owned());
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return failed(format!(
                "the program's output is not JSON: {e} (it begins `{}`)",
                cut(text, 80)
            ))
        }
    };
    let Value::Object(map) = value else {
        return failed(format!(
            "the program's output is {}, not a JSON object",
            kind_of(&value)
        ));
    };
    if !map.contains_key("vitals") {
        return (Ok(Value::Object(map).to_string()), None);
    }
    let envelope: Envelope = match serde_json::from_value(Value::Object(map)) {
        Ok(e) => e,
        Err(e) => return failed(format!("the program's `vitals` envelope is invalid: {e}")),
    };
    let Control {
        status,
        reason,
        series,
    } = envelope.vitals;
    let reason = reason.unwrap_or_else(|| "no reason given".to_owned());
    let result = match (status, envelope.section) {
        (Status::Ok, Some(section @ Value::Object(_))) => Ok(section.to_string()),
        (Status::Ok, Some(other)) => Err(PluginError::CollectFailed(
            format!(
                "the program's section is {}, not a JSON object",
                kind_of(&other)
            )
            .into(),
        )),
        (Status::Ok, None) => Err(PluginError::CollectFailed(
            "the program's answer has status ok but no section".into(),
        )),
        (Status::Unavailable, _) => Err(PluginError::Unavailable(reason.into())),
        (Status::Failed, _) => Err(PluginError::CollectFailed(reason.into())),
    };
    (result, series)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Maps a finished JSON-protocol run (oneshot) to a section or an error.
fn oneshot_answer(run: &Finished) -> Answer {
    let failed = |m: String| (Err(PluginError::CollectFailed(m.into())), None);
    let Some(code) = run.status.code() else {
        return failed(format!(
            "{}{}",
            describe_status(run.status),
            stderr_hint(&run.stderr)
        ));
    };
    let said = || first_line(&run.stdout).or_else(|| first_line(&run.stderr));
    match code {
        0 => interpret(&run.stdout),
        EXIT_UNAVAILABLE => (
            Err(PluginError::Unavailable(
                said()
                    .unwrap_or_else(|| "the program exited with code 69 (unavailable)".into())
                    .into(),
            )),
            None,
        ),
        EXIT_CONFIG => (
            Err(PluginError::InvalidConfig(
                said()
                    .unwrap_or_else(|| "the program exited with code 78 (config)".into())
                    .into(),
            )),
            None,
        ),
        _ => failed(format!(
            "{}{}",
            describe_status(run.status),
            stderr_hint(&run.stderr)
        )),
    }
}

/// Maps a finished Nagios check to its section, or an error for codes outside 0 to 3.
fn nagios_answer(run: &Finished) -> Answer {
    let state = run.status.code().and_then(CheckState::from_exit_code);
    match (state, run.status.code()) {
        (Some(state), Some(code)) => {
            let stdout = String::from_utf8_lossy(&run.stdout);
            (Ok(nagios::section(state, code, &stdout).to_string()), None)
        }
        _ => {
            let said = first_line(&run.stdout)
                .map(|l| format!(": {l}"))
                .unwrap_or_else(|| stderr_hint(&run.stderr));
            let mut message = describe_status(run.status);
            if run.status.code().is_some() {
                message.push_str(", not a check state 0 to 3");
            }
            (
                Err(PluginError::CollectFailed(
                    format!("{message}{said}").into(),
                )),
                None,
            )
        }
    }
}

/// A running daemon: its pipes, and the last line it wrote to stderr.
struct Daemon {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    last_stderr: Arc<Mutex<String>>,
    /// The task logging its stderr; it ends when the stream does.
    stderr_task: tokio::task::JoinHandle<()>,
    sequence: u64,
}

/// The host's side of one exec collector.
pub struct ExecWorker {
    name: String,
    spec: ExecSpec,
    /// The config table, sent as JSON.
    config: String,
    interval: Duration,
    daemon: Option<Daemon>,
    /// Series the program declared in its last answer, not yet handed to the store.
    declared: Option<Vec<Series>>,
    series: Vec<Series>,
}

impl ExecWorker {
    /// A worker for collector `name` running `spec` with the config table `config`.
    pub fn new(name: &str, spec: ExecSpec, config: &Value, interval: Duration) -> Self {
        Self {
            name: name.to_owned(),
            series: spec.initial_series(),
            spec,
            config: config.to_string(),
            interval,
            daemon: None,
            declared: None,
        }
    }

    /// The series known so far: the config's, a check's, and those the program declared.
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// True for a daemon, whose hang or death means a restart.
    pub fn is_daemon(&self) -> bool {
        self.spec.mode == ExecMode::Daemon
    }

    /// The full series list when the program declared new series since the last call.
    pub fn take_series(&mut self) -> Option<Vec<Series>> {
        let declared = self.declared.take()?;
        let mut all = self.series.clone();
        merge_series(&mut all, declared);
        if all == self.series {
            return None;
        }
        self.series = all.clone();
        Some(all)
    }

    /// Runs one job within `deadline`.
    pub async fn call(&mut self, job: Job, deadline: Duration) -> Outcome {
        let started = Instant::now();
        match (job, self.spec.mode) {
            (Job::Create(_), ExecMode::Daemon) => match self.start_daemon(deadline).await {
                Ok(()) => Outcome::Done((Ok(None), started.elapsed())),
                Err(e) => Outcome::Gone(e.message()),
            },
            (Job::Create(_), _) => Outcome::Done((Ok(None), started.elapsed())),
            (Job::Collect, ExecMode::Daemon) => self.ask_daemon(deadline).await,
            (Job::Collect, mode) => {
                let input = (mode == ExecMode::Oneshot).then(|| self.config.clone());
                let (result, series) = match self.run_once(input, deadline).await {
                    Ok(run) if mode == ExecMode::Nagios => nagios_answer(&run),
                    Ok(run) => oneshot_answer(&run),
                    Err(e) => (Err(PluginError::CollectFailed(e.message().into())), None),
                };
                if series.is_some() {
                    self.declared = series;
                }
                Outcome::Done((result.map(Some), started.elapsed()))
            }
        }
    }

    /// Runs the program once to its end, within `deadline`, and reaps it.
    async fn run_once(
        &mut self,
        input: Option<String>,
        deadline: Duration,
    ) -> Result<Finished, RunError> {
        let mut cmd = command(&self.spec, &self.name, self.interval, deadline);
        if input.is_none() {
            cmd.stdin(Stdio::null());
        }
        let mut child = cmd.spawn().map_err(|e| {
            RunError::Spawn(format!("cannot start {}: {e}", self.spec.program.display()))
        })?;
        let pgid = child.id();
        let _group = GroupGuard(pgid);
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(mut stdout), Some(mut stderr)) = (stdout, stderr) else {
            kill_group(pgid);
            let _ = child.wait().await;
            return Err(RunError::Spawn("the program has no pipes".to_owned()));
        };
        let max = self.spec.max_output;
        let result = tokio::time::timeout(deadline, async {
            let write = async {
                if let (Some(mut pipe), Some(text)) = (stdin, input) {
                    // A program that does not read its config closes the pipe: not an error.
                    let _ = pipe.write_all(text.as_bytes()).await;
                }
                Ok::<_, RunError>(())
            };
            let wait = async {
                let status = child
                    .wait()
                    .await
                    .map_err(|e| RunError::Failed(format!("cannot wait for the program: {e}")));
                // What it forked and left behind goes with it, and lets its pipes close.
                kill_group(pgid);
                status
            };
            let err = async { Ok::<_, RunError>(read_kept(&mut stderr, STDERR_KEEP).await) };
            tokio::try_join!(write, read_capped(&mut stdout, max), err, wait)
        })
        .await;
        kill_group(pgid);
        let _ = child.wait().await;
        match result {
            Err(_) => Err(RunError::Failed(format!(
                "timed out: the program ran longer than its deadline of {} and was killed with its process group",
                humantime::format_duration(deadline)
            ))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(((), stdout, stderr, status))) => Ok(Finished {
                status,
                stdout,
                stderr,
            }),
        }
    }

    async fn start_daemon(&mut self, deadline: Duration) -> Result<(), RunError> {
        self.kill().await;
        let mut child = command(&self.spec, &self.name, self.interval, deadline)
            .spawn()
            .map_err(|e| {
                RunError::Spawn(format!("cannot start {}: {e}", self.spec.program.display()))
            })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill_group(child.id());
            let _ = child.wait().await;
            return Err(RunError::Spawn("the program has no pipes".to_owned()));
        };
        let last_stderr = Arc::new(Mutex::new(String::new()));
        let stderr_task = tokio::spawn(forward_stderr(
            self.name.clone(),
            stderr,
            last_stderr.clone(),
        ));
        tracing::debug!(collector = %self.name, pid = child.id(), "exec daemon started");
        let mut line = self.config.clone();
        line.push('\n');
        // A daemon that exits at once shows on the first collect, with its exit status.
        let _ = tokio::time::timeout(deadline, stdin.write_all(line.as_bytes())).await;
        self.daemon = Some(Daemon {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            last_stderr,
            stderr_task,
            sequence: 0,
        });
        Ok(())
    }

    async fn ask_daemon(&mut self, deadline: Duration) -> Outcome {
        let started = Instant::now();
        let max = self.spec.max_output;
        let Some(d) = self.daemon.as_mut() else {
            return Outcome::Gone("the program is not running".to_owned());
        };
        d.sequence += 1;
        let request = format!("{{\"op\":\"collect\",\"seq\":{}}}\n", d.sequence);
        let exchange = async {
            d.stdin
                .write_all(request.as_bytes())
                .await
                .map_err(|e| RunError::Failed(e.to_string()))?;
            d.stdin
                .flush()
                .await
                .map_err(|e| RunError::Failed(e.to_string()))?;
            read_line_capped(&mut d.stdout, max).await
        };
        match tokio::time::timeout(deadline, exchange).await {
            Err(_) => {
                self.kill().await;
                Outcome::TimedOut
            }
            Ok(Ok(Some(line))) => {
                let (result, series) = interpret(&line);
                if series.is_some() {
                    self.declared = series;
                }
                Outcome::Done((result.map(Some), started.elapsed()))
            }
            Ok(Err(RunError::OutputOver(n))) => {
                self.kill().await;
                Outcome::Gone(RunError::OutputOver(n).message())
            }
            Ok(Ok(None) | Err(_)) => Outcome::Gone(self.died().await),
        }
    }

    /// Reaps a daemon that closed its pipe or broke it, and says how it ended.
    async fn died(&mut self) -> String {
        let Some(mut d) = self.daemon.take() else {
            return "the program is not running".to_owned();
        };
        let pgid = d.child.id();
        let status = tokio::time::timeout(Duration::from_secs(2), d.child.wait()).await;
        kill_group(pgid);
        let message = match status {
            Ok(Ok(s)) => describe_status(s),
            _ => {
                let _ = d.child.wait().await;
                "the program closed its stdout without exiting and was killed".to_owned()
            }
        };
        // Its last words may still be in the pipe: the stream ends now that the group is gone.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut d.stderr_task).await;
        let said = d.last_stderr.lock().map(|s| s.clone()).unwrap_or_default();
        if said.is_empty() {
            message
        } else {
            format!("{message}: {said}")
        }
    }

    /// Kills a running daemon with its process group and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            kill_group(d.child.id());
            let _ = d.child.start_kill();
            let _ = d.child.wait().await;
        }
    }
}

/// Logs a daemon's stderr line by line (each cut at 4 KiB) and keeps the last one.
async fn forward_stderr(
    name: String,
    stderr: tokio::process::ChildStderr,
    last: Arc<Mutex<String>>,
) {
    let mut reader = BufReader::new(stderr);
    loop {
        match read_line_capped(&mut reader, STDERR_KEEP as u64).await {
            Ok(Some(line)) => {
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                if line.is_empty() {
                    continue;
                }
                tracing::info!(target: "vitals::exec", collector = %name, "{line}");
                if let Ok(mut l) = last.lock() {
                    *l = cut(&line, 300);
                }
            }
            Ok(None) => return,
            // A line over the bound: skip to the next one.
            Err(_) => {
                let mut rest = Vec::new();
                if (&mut reader)
                    .take(1 << 20)
                    .read_until(b'\n', &mut rest)
                    .await
                    .unwrap_or(0)
                    == 0
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn finished(code: i32, stdout: &str, stderr: &str) -> Finished {
        Finished {
            status: exited(code),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    /// Guards the answer forms: a bare section, an envelope with series, unavailable, failed.
    #[test]
    fn answers_and_envelopes() {
        let (r, s) = interpret(br#"{"a": 1}"#);
        assert_eq!(r, Ok(r#"{"a":1}"#.to_owned()));
        assert!(s.is_none());
        let (r, s) = interpret(
            br#"{"vitals": {"series": [{"name": "a", "pointer": "/a", "unit": "percent"}]}, "section": {"a": 2}}"#,
        );
        assert_eq!(r, Ok(r#"{"a":2}"#.to_owned()));
        assert_eq!(s.map(|s| s.len()), Some(1));
        let (r, _) = interpret(br#"{"vitals": {"status": "unavailable", "reason": "no PSI"}}"#);
        assert_eq!(r, Err(PluginError::Unavailable("no PSI".into())));
        let (r, _) = interpret(br#"{"vitals": {"status": "failed", "reason": "boom"}}"#);
        assert_eq!(r, Err(PluginError::CollectFailed("boom".into())));
        let (r, _) = interpret(br#"{"vitals": {"state": "ok"}}"#);
        assert!(
            r.as_ref()
                .is_err_and(|e| e.message().contains("unknown field `state`")),
            "{r:?}"
        );
    }

    /// Guards the failures of a bad answer: nothing, not JSON, not an object.
    #[test]
    fn bad_answers_say_why() {
        let msg = |b: &[u8]| {
            interpret(b)
                .0
                .err()
                .map(|e| e.message().to_owned())
                .unwrap_or_default()
        };
        assert!(msg(b"  \n").contains("printed nothing"));
        assert!(
            msg(b"{not json").contains("is not JSON"),
            "{}",
            msg(b"{not json")
        );
        assert!(msg(b"[1,2]").contains("an array, not a JSON object"));
    }

    /// Guards the exit-code protocol: 69 unavailable, 78 invalid config, others failed with stderr.
    #[test]
    fn exit_codes() {
        let (r, _) = oneshot_answer(&finished(69, "", "no such sensor\n"));
        assert_eq!(r, Err(PluginError::Unavailable("no such sensor".into())));
        let (r, _) = oneshot_answer(&finished(78, "bad key `x`\n", ""));
        assert_eq!(r, Err(PluginError::InvalidConfig("bad key `x`".into())));
        let (r, _) = oneshot_answer(&finished(137, "", "oops\n"));
        let m = r.err().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(
            m.contains("exited with code 137 (128 + 9") && m.ends_with(": oops"),
            "{m}"
        );
        let (r, _) = oneshot_answer(&Finished {
            status: ExitStatus::from_raw(libc::SIGXCPU),
            stdout: Vec::new(),
            stderr: Vec::new(),
        });
        let m = r.err().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(m.contains("SIGXCPU") && m.contains("CPU time limit"), "{m}");
    }

    /// Guards the Nagios mapping of codes outside 0 to 3.
    #[test]
    fn nagios_codes_outside_the_states_fail() {
        let (r, _) = nagios_answer(&finished(2, "CRITICAL: x|a=1\n", ""));
        assert!(r.is_ok_and(|s| s.contains("\"critical\"")));
        let (r, _) = nagios_answer(&finished(127, "", "sh: not found\n"));
        let m = r.err().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(
            m.contains("code 127, not a check state 0 to 3: sh: not found"),
            "{m}"
        );
    }

    /// Guards the output bounds at the bound and one past it: a whole answer, and a daemon's line.
    #[test]
    fn output_bounds_hold_one_past_the_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let ten = [b'x'; 10];
            assert_eq!(
                read_capped(&mut &ten[..], 10).await.map(|v| v.len()).ok(),
                Some(10)
            );
            assert!(matches!(
                read_capped(&mut &ten[..], 9).await,
                Err(RunError::OutputOver(9))
            ));
            let mut lines = &b"0123456789\nabc"[..];
            let line = read_line_capped(&mut lines, 10).await.ok().flatten();
            assert_eq!(line.as_deref(), Some(&b"0123456789"[..]));
            assert_eq!(
                read_line_capped(&mut lines, 10)
                    .await
                    .ok()
                    .flatten()
                    .as_deref(),
                Some(&b"abc"[..])
            );
            assert!(matches!(read_line_capped(&mut lines, 10).await, Ok(None)));
            let mut long = &b"0123456789a\n"[..];
            assert!(matches!(
                read_line_capped(&mut long, 10).await,
                Err(RunError::OutputOver(10))
            ));
        });
    }

    /// Guards the user lookup: root by name and by uid, an unknown name refused.
    #[test]
    fn users_are_looked_up() {
        let root = lookup_user("root").expect("root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup_user("0").map(|u| u.uid), Ok(0));
        assert!(lookup_user("no-such-user-here")
            .unwrap_err()
            .contains("no user `no-such-user-here`"));
    }
}
