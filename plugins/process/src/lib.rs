//! Process collector: totals and the top processes by CPU and memory (sysinfo over `/proc`, plus `/proc/<pid>/{status,cmdline}` of the reported few).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::PathBuf;

use sysinfo::{
    MemoryRefreshKind, Pid, Process, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System,
};
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::{percent, ProcessInfo, ProcessStats};

/// The longest command line reported, in characters.
pub const COMMAND_CHARS: usize = 100;

/// The `[collectors.process.config]` table.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How many processes each top list holds (1 to 1000).
    pub top: usize,
    /// Root of the proc tree to read `loadavg` and per-process `status`/`cmdline` from
    /// (test-only; default `/proc`; the process scan itself always reads `/proc`).
    pub proc_root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            top: 10,
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// What `/proc/<pid>/status` says about a process that the section needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusFields {
    /// The current name (`comm`), updated on exec.
    pub name: String,
    /// The real user id.
    pub uid: Option<u32>,
}

/// Parses the `Name:` and `Uid:` lines of `/proc/<pid>/status`; None without a `Name:` line.
pub fn parse_status(text: &str) -> Option<StatusFields> {
    let mut name = None;
    let mut uid = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Uid:") {
            uid = v
                .split_ascii_whitespace()
                .next()
                .and_then(|u| u.parse().ok());
            break;
        }
    }
    Some(StatusFields { name: name?, uid })
}

/// Turns the NUL-separated `/proc/<pid>/cmdline` into one line cut to [`COMMAND_CHARS`]
/// characters; `[name]` when it is empty (kernel threads, zombies), as `ps` shows it.
pub fn format_command(cmdline: &[u8], name: &str) -> String {
    let joined = String::from_utf8_lossy(cmdline)
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if joined.is_empty() {
        return format!("[{name}]");
    }
    joined.chars().take(COMMAND_CHARS).collect()
}

/// Parses the total thread count, the denominator of the 4th field of `/proc/loadavg` (`1/234`).
pub fn parse_loadavg_threads(text: &str) -> Option<u64> {
    text.split_ascii_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The section's word for a process state.
pub fn status_name(status: ProcessStatus) -> &'static str {
    match status {
        ProcessStatus::Run => "running",
        ProcessStatus::Sleep => "sleeping",
        ProcessStatus::UninterruptibleDiskSleep => "disk_sleep",
        ProcessStatus::Stop => "stopped",
        ProcessStatus::Tracing => "tracing_stop",
        ProcessStatus::Zombie => "zombie",
        ProcessStatus::Dead => "dead",
        ProcessStatus::Idle => "idle",
        ProcessStatus::Wakekill => "wakekill",
        ProcessStatus::Waking => "waking",
        ProcessStatus::Parked => "parked",
        ProcessStatus::LockBlocked => "locked",
        _ => "unknown",
    }
}

/// The `n` first elements of `items` in `order`, without sorting the rest.
fn top_n<'a>(
    mut items: Vec<&'a Process>,
    n: usize,
    order: impl Fn(&&'a Process, &&'a Process) -> Ordering,
) -> Vec<&'a Process> {
    if items.len() > n {
        items.select_nth_unstable_by(n, &order);
        items.truncate(n);
    }
    items.sort_unstable_by(order);
    items
}

/// Keeps one `System` between collects so CPU usage is a real delta, and the user names seen.
pub struct ProcessCollector {
    system: System,
    top: usize,
    proc_root: PathBuf,
    users: HashMap<u32, String>,
}

impl ProcessCollector {
    /// Only what the section needs for every process: CPU times and memory. Names, users and
    /// command lines are read for the reported few only, so they are current after an exec.
    /// `nothing()` still walks every thread (`tasks`); without it threads are not listed as
    /// processes and `/proc/<pid>/task` is never read.
    fn refresh_kind() -> ProcessRefreshKind {
        ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .without_tasks()
    }

    fn user_name(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_else(|| uid.to_string())
            })
            .clone()
    }

    /// The reported fields of one process; None when it exited since the scan.
    fn describe(&mut self, p: &Snapshot, total_memory: u64) -> Option<ProcessInfo> {
        let dir = self.proc_root.join(p.pid.to_string());
        let status = parse_status(&std::fs::read_to_string(dir.join("status")).ok()?)?;
        let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
        let user = status.uid.map(|u| self.user_name(u));
        Some(ProcessInfo {
            pid: p.pid,
            parent_pid: p.parent_pid,
            command: format_command(&cmdline, &status.name),
            name: status.name,
            user,
            cpu_percent: p.cpu_percent,
            memory_percent: percent(p.memory_bytes, total_memory),
            memory_bytes: p.memory_bytes,
            status: status_name(p.status).to_owned(),
            start_time_unix_seconds: p.start_time,
        })
    }

    /// Describes `candidates` in order, skipping those that exited, until `n` are described.
    fn describe_first(
        &mut self,
        candidates: &[Snapshot],
        n: usize,
        total_memory: u64,
    ) -> Vec<ProcessInfo> {
        candidates
            .iter()
            .filter_map(|p| self.describe(p, total_memory))
            .take(n)
            .collect()
    }
}

/// The sysinfo figures of one process, copied so the `System` can be let go.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    pid: u32,
    parent_pid: Option<u32>,
    cpu_percent: f32,
    memory_bytes: u64,
    status: ProcessStatus,
    start_time: u64,
}

impl From<&Process> for Snapshot {
    fn from(p: &Process) -> Self {
        Self {
            pid: p.pid().as_u32(),
            parent_pid: p.parent().map(Pid::as_u32),
            cpu_percent: p.cpu_usage(),
            memory_bytes: p.memory(),
            status: p.status(),
            start_time: p.start_time(),
        }
    }
}

impl Collector for ProcessCollector {
    const NAME: &'static str = "process";
    const DESCRIPTION: &'static str = "Process totals and the top processes by CPU and by memory";
    type Config = Config;
    type Section = ProcessStats;

    fn new(config: Config) -> Result<Self, Error> {
        if !(1..=1000).contains(&config.top) {
            return Err(Error::invalid_config(format!(
                "`top` must be from 1 to 1000, not {}",
                config.top
            )));
        }
        let mut system = System::new();
        // A first scan now, so the first collect's CPU figures are a real delta.
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, Self::refresh_kind());
        Ok(Self {
            system,
            top: config.top,
            proc_root: config.proc_root,
            users: HashMap::new(),
        })
    }

    fn collect(&mut self) -> Result<ProcessStats, Error> {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, Self::refresh_kind());
        let all: Vec<&Process> = self.system.processes().values().collect();
        if all.is_empty() {
            return Err(Error::unavailable("no processes visible in /proc"));
        }
        let count_of = |s: ProcessStatus| all.iter().filter(|p| p.status() == s).count() as u64;
        let (process_count, zombie_count, running_count) = (
            all.len() as u64,
            count_of(ProcessStatus::Zombie),
            count_of(ProcessStatus::Run),
        );
        // Some extra candidates, so a process that exits before it is described leaves no gap.
        let want = self.top + self.top / 2 + 2;
        let by_cpu: Vec<Snapshot> = top_n(all.clone(), want, |a, b| {
            b.cpu_usage()
                .total_cmp(&a.cpu_usage())
                .then(b.memory().cmp(&a.memory()))
                .then(a.pid().cmp(&b.pid()))
        })
        .into_iter()
        .map(Snapshot::from)
        .collect();
        let by_memory: Vec<Snapshot> = top_n(all.clone(), want, |a, b| {
            b.memory().cmp(&a.memory()).then(a.pid().cmp(&b.pid()))
        })
        .into_iter()
        .map(Snapshot::from)
        .collect();
        let zombies: Vec<&Process> = all
            .into_iter()
            .filter(|p| p.status() == ProcessStatus::Zombie)
            .collect();
        let zombies: Vec<Snapshot> = top_n(zombies, want, |a, b| a.pid().cmp(&b.pid()))
            .into_iter()
            .map(Snapshot::from)
            .collect();

        let total_memory = self.system.total_memory();
        let n = self.top;
        let loadavg = std::fs::read_to_string(self.proc_root.join("loadavg")).ok();
        Ok(ProcessStats {
            process_count,
            thread_count: loadavg
                .as_deref()
                .and_then(parse_loadavg_threads)
                .unwrap_or(process_count),
            zombie_count,
            running_count,
            top_by_cpu: self.describe_first(&by_cpu, n, total_memory),
            top_by_memory: self.describe_first(&by_memory, n, total_memory),
            zombies: self.describe_first(&zombies, n, total_memory),
        })
    }

    fn series() -> Vec<Series> {
        vec![
            Series::new("process_count", "/process_count", "processes"),
            Series::new("thread_count", "/thread_count", "threads"),
            Series::new("zombie_count", "/zombie_count", "processes"),
        ]
    }
}

export_collector!(ProcessCollector);

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// Kills and reaps a child when the test ends, passed or not.
    struct Reaped(Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn collector() -> ProcessCollector {
        ProcessCollector::new(Config::default()).expect("new")
    }

    /// Collects until `pred` holds on a section, or panics after 20 s with the last one.
    fn collect_until(
        c: &mut ProcessCollector,
        what: &str,
        pred: impl Fn(&ProcessStats) -> bool,
    ) -> ProcessStats {
        let start = Instant::now();
        loop {
            let s = c.collect().expect("collect");
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {what} within 20 s; last section: {s:#?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Guards the plugin contract: default config, unknown keys refused, collect never panics.
    #[test]
    fn honours_the_plugin_contract() {
        let report = vitals_plugin_api::testing::assert_contract::<ProcessCollector>();
        let s: ProcessStats =
            serde_json::from_value(report.last_section().expect("a section").clone())
                .expect("ProcessStats");
        assert!(s.process_count >= 1);
        assert!(s.thread_count >= s.process_count, "{s:?}");
        assert_eq!(s.top_by_memory.len(), s.process_count.min(10) as usize);
        let me = std::process::id();
        assert!(
            s.top_by_memory.iter().any(|p| p.pid == me) || s.top_by_memory.len() == 10,
            "{s:?}"
        );
        for p in s.top_by_cpu.iter().chain(&s.top_by_memory) {
            assert!(p.command.chars().count() <= COMMAND_CHARS, "{p:?}");
            assert!(p.memory_percent <= 100.0, "{p:?}");
        }
    }

    /// Guards `top` validation: 0 and absurd sizes are refused by name.
    #[test]
    fn top_is_validated() {
        for top in [0, 1001] {
            let err = ProcessCollector::new(Config {
                top,
                ..Config::default()
            })
            .err()
            .expect("refused");
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.contains("`top`")),
                "{err}"
            );
        }
    }

    /// Guards the status parser on a captured file: the current name with its space, the real uid.
    #[test]
    fn parses_status_fixture() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/status"
        ))
        .expect("fixture");
        assert_eq!(
            parse_status(&text),
            Some(StatusFields {
                name: "tmux: server".into(),
                uid: Some(1000),
            })
        );
        assert_eq!(parse_status("Uid:\t0\n"), None);
        assert_eq!(
            parse_status("Name:\tx\nUid:\tbad\n"),
            Some(StatusFields {
                name: "x".into(),
                uid: None
            })
        );
    }

    /// Guards command lines: NUL-separated arguments joined, cut to 100 characters (not
    /// bytes), `[name]` when empty.
    #[test]
    fn formats_command_lines() {
        assert_eq!(format_command(b"sleep\x0060\x00", "sleep"), "sleep 60");
        assert_eq!(format_command(b"", "kworker/0:1"), "[kworker/0:1]");
        let long = "é".repeat(150);
        let cut = format_command(long.as_bytes(), "x");
        assert_eq!(cut.chars().count(), COMMAND_CHARS);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(format_command(b"a\xffb", "x"), "a\u{fffd}b");
    }

    /// Guards the thread total from /proc/loadavg.
    #[test]
    fn parses_loadavg_threads() {
        assert_eq!(
            parse_loadavg_threads("3.07 3.00 2.19 5/169 30480\n"),
            Some(169)
        );
        assert_eq!(parse_loadavg_threads("3.07 3.00"), None);
        assert_eq!(parse_loadavg_threads("1 2 3 x/y 4"), None);
    }

    /// Guards the CPU ranking: a child spinning the CPU shows in the top 10 by CPU with its
    /// command line, its user and status running.
    #[test]
    fn a_spinning_child_is_in_the_top_by_cpu() {
        let marker = format!("vitals-process-unit-spin-{}", std::process::id());
        let child = Reaped(
            Command::new("sh")
                .args(["-c", "while :; do :; done", &marker])
                .spawn()
                .expect("spawn sh"),
        );
        let pid = child.0.id();
        let mut c = collector();
        let s = collect_until(&mut c, "spinning child in the top 10 by CPU", |s| {
            s.top_by_cpu
                .iter()
                .any(|p| p.pid == pid && p.cpu_percent > 10.0)
        });
        let p = s.top_by_cpu.iter().find(|p| p.pid == pid).expect("child");
        assert!(p.command.contains(&marker), "{p:?}");
        assert_eq!(p.name, "sh");
        assert_eq!(p.status, "running");
        assert_eq!(p.parent_pid, Some(std::process::id()));
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name);
        assert_eq!(p.user, me);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(
            p.start_time_unix_seconds <= now && p.start_time_unix_seconds + 60 > now,
            "{p:?}"
        );
        let sorted = s
            .top_by_cpu
            .windows(2)
            .all(|w| w[0].cpu_percent >= w[1].cpu_percent);
        assert!(sorted, "{:?}", s.top_by_cpu);
    }

    /// Guards zombies: an exited, unreaped child is counted and listed with status zombie.
    #[test]
    fn an_unreaped_child_is_a_zombie() {
        let child = Reaped(Command::new("true").spawn().expect("spawn true"));
        let pid = child.0.id();
        let mut c = collector();
        let s = collect_until(&mut c, "zombie child", |s| {
            s.zombies.iter().any(|p| p.pid == pid)
        });
        let z = s.zombies.iter().find(|p| p.pid == pid).expect("zombie");
        assert_eq!(z.status, "zombie");
        assert_eq!(z.command, "[true]");
        assert!(s.zombie_count >= 1);
    }

    /// Guards the narrow refresh: threads are not counted or listed as processes.
    #[test]
    fn threads_are_not_processes() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = tx.send(nix::unistd::gettid().as_raw() as u32);
            let _ = stop_rx.recv();
        });
        let tid = rx.recv().expect("thread id");
        let mut c = collector();
        let s = c.collect().expect("collect");
        let listed = c.system.processes();
        assert!(listed.contains_key(&Pid::from_u32(std::process::id())));
        assert!(
            !listed.contains_key(&Pid::from_u32(tid)),
            "thread {tid} listed"
        );
        assert!(s.thread_count > s.process_count, "{s:?}");
        let _ = stop_tx.send(());
        thread.join().expect("join");
    }

    /// Guards the skip of a process that exits between the scan and its description.
    #[test]
    fn a_process_gone_since_the_scan_is_skipped() {
        let mut gone = Command::new("true").spawn().expect("spawn true");
        let gone_pid = gone.id();
        gone.wait().expect("reap");
        let snap = |pid: u32| Snapshot {
            pid,
            parent_pid: None,
            cpu_percent: 0.0,
            memory_bytes: 0,
            status: ProcessStatus::Run,
            start_time: 0,
        };
        let mut c = collector();
        let described = c.describe_first(&[snap(gone_pid), snap(std::process::id())], 1, 1 << 30);
        assert_eq!(described.len(), 1);
        assert_eq!(described[0].pid, std::process::id());
    }
}
