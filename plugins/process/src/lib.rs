//! Process collector: totals and the top processes by CPU and memory (one read of `/proc/<pid>/stat` per process, plus `/proc/<pid>/{status,cmdline}` of the reported few).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::PathBuf;

pub mod scan;

use scan::{default_budget, Described, Sample, Scanner};
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
    /// Root of the proc tree to read (default `/proc`).
    pub proc_root: PathBuf,
    /// A process found sleeping without using CPU on 3 collects in a row is read every this
    /// many collects until it wakes (1 to 60; 1 reads every process on every collect).
    pub idle_every: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            top: 10,
            proc_root: PathBuf::from("/proc"),
            idle_every: DEFAULT_IDLE_EVERY,
        }
    }
}

/// The default `idle_every`.
pub const DEFAULT_IDLE_EVERY: u64 = 4;

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

/// The section's word for a state letter of `/proc/<pid>/stat`.
pub fn status_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk_sleep",
        'T' => "stopped",
        't' => "tracing_stop",
        'Z' => "zombie",
        'X' | 'x' => "dead",
        'I' => "idle",
        'K' => "wakekill",
        'W' => "waking",
        'P' => "parked",
        _ => "unknown",
    }
}

/// The `n` first elements of `items` in `order`, without sorting the rest.
fn top_n<'a>(
    mut items: Vec<&'a Sample>,
    n: usize,
    order: impl Fn(&&'a Sample, &&'a Sample) -> Ordering,
) -> Vec<&'a Sample> {
    if items.len() > n {
        items.select_nth_unstable_by(n, &order);
        items.truncate(n);
    }
    items.sort_unstable_by(order);
    items
}

/// Collects after which a reported process's command line and user are read again, for
/// programs that rewrite their command line (`setproctitle`) without an `exec`.
pub const DESCRIBE_EVERY: u64 = 10;

/// Installed RAM in bytes (`sysinfo(2)`), 0 when unknown.
fn total_memory() -> u64 {
    // SAFETY: an all-zero `sysinfo` struct is valid, and the call only writes to it.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable struct for the duration of the call.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return 0;
    }
    info.totalram as u64 * u64::from(info.mem_unit.max(1))
}

/// Keeps the scan between collects so CPU usage is a real delta, and the user names seen.
pub struct ProcessCollector {
    scanner: Scanner,
    top: usize,
    proc_root: PathBuf,
    users: HashMap<u32, String>,
    /// The config's `idle_every`.
    idle_every: u64,
    /// Under a host root: the host's `/etc/passwd`, which names the users instead of this
    /// system's user database.
    passwd: Option<PathBuf>,
}

/// The name of `uid` in a passwd(5) file's text.
pub fn passwd_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

impl ProcessCollector {
    /// Keeps at most `files` `/proc/<pid>/stat` files open between collects (default: a
    /// quarter of the soft open-file limit); with 0 each is opened on every collect.
    pub fn keep_files(&mut self, files: usize) {
        let every = self.idle_every;
        self.scanner = Scanner::new(&self.proc_root, files);
        self.scanner.set_rest(every);
        let _ = self.scanner.scan();
    }

    /// `/proc/<pid>/stat` files held open between collects.
    pub fn open_files(&self) -> usize {
        self.scanner.open_files()
    }

    fn user_name(&mut self, uid: u32) -> String {
        let passwd = &self.passwd;
        self.users
            .entry(uid)
            .or_insert_with(|| {
                let name = match passwd {
                    Some(path) => std::fs::read_to_string(path)
                        .ok()
                        .and_then(|text| passwd_name(&text, uid)),
                    None => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                        .ok()
                        .flatten()
                        .map(|u| u.name),
                };
                name.unwrap_or_else(|| uid.to_string())
            })
            .clone()
    }

    /// The uid and command line of `p`: cached while its `comm` is unchanged and for at most
    /// [`DESCRIBE_EVERY`] collects, else read from `/proc/<pid>/{status,cmdline}`. None when
    /// it exited since the scan.
    fn details(&mut self, p: &Sample) -> Option<Described> {
        let scan = self.scanner.scans();
        if let Some(d) = self.scanner.described(p.pid, p.start_ticks) {
            if *d.comm == *p.comm && d.scan + DESCRIBE_EVERY > scan {
                return Some(d.clone());
            }
        }
        let dir = self.proc_root.join(p.pid.to_string());
        let status = parse_status(&std::fs::read_to_string(dir.join("status")).ok()?)?;
        let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
        let d = Described {
            command: format_command(&cmdline, &p.comm),
            comm: p.comm.to_string(),
            uid: status.uid,
            scan,
        };
        self.scanner.remember(p.pid, p.start_ticks, d.clone());
        Some(d)
    }

    /// The reported fields of one process; None when it exited since the scan.
    fn describe(&mut self, p: &Sample, total_memory: u64) -> Option<ProcessInfo> {
        let d = self.details(p)?;
        let user = d.uid.map(|u| self.user_name(u));
        Some(ProcessInfo {
            pid: p.pid,
            parent_pid: p.parent_pid,
            command: d.command,
            name: p.comm.to_string(),
            user,
            cpu_percent: p.cpu_percent,
            memory_percent: percent(p.rss_bytes, total_memory),
            memory_bytes: p.rss_bytes,
            status: status_name(p.state).to_owned(),
            start_time_unix_seconds: self.scanner.start_unix_seconds(p.start_ticks),
        })
    }

    /// Describes `candidates` in order, skipping those that exited, until `n` are described.
    fn describe_first(
        &mut self,
        candidates: &[Sample],
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
        if !(1..=60).contains(&config.idle_every) {
            return Err(Error::invalid_config(format!(
                "`idle_every` must be from 1 to 60, not {}",
                config.idle_every
            )));
        }
        let mut scanner = Scanner::new(&config.proc_root, default_budget());
        scanner.set_rest(config.idle_every);
        // A first scan now, so the first collect's CPU figures are a real delta.
        scanner.scan().map_err(|e| {
            Error::unavailable(format!("cannot list {}: {e}", config.proc_root.display()))
        })?;
        Ok(Self {
            scanner,
            top: config.top,
            proc_root: config.proc_root,
            users: HashMap::new(),
            idle_every: config.idle_every,
            passwd: None,
        })
    }

    /// Under a host root: the host's processes (its `proc`) and user names (its `etc/passwd`).
    fn create(mut config: Config, init: &InitParams) -> Result<Self, Error> {
        if init.host_root.is_none() {
            return Self::new(config);
        }
        config.proc_root = init.host_path(&config.proc_root);
        let mut collector = Self::new(config)?;
        collector.passwd = Some(init.host_path("/etc/passwd"));
        Ok(collector)
    }

    fn collect(&mut self) -> Result<ProcessStats, Error> {
        let all = self
            .scanner
            .scan()
            .map_err(|e| Error::failed(format!("cannot list {}: {e}", self.proc_root.display())))?;
        if all.is_empty() {
            return Err(Error::unavailable("no processes visible in /proc"));
        }
        let count_of = |s: char| all.iter().filter(|p| p.state == s).count() as u64;
        let (process_count, zombie_count) = (all.len() as u64, count_of('Z'));
        let running_count = self.scanner.running_threads().map_or_else(
            || all.iter().map(|p| u64::from(p.running_threads)).sum(),
            u64::from,
        );
        let refs: Vec<&Sample> = all.iter().collect();
        // Some extra candidates, so a process that exits before it is described leaves no gap.
        let want = self.top + self.top / 2 + 2;
        let by_cpu: Vec<Sample> = top_n(refs.clone(), want, |a, b| {
            b.cpu_percent
                .total_cmp(&a.cpu_percent)
                .then(b.rss_bytes.cmp(&a.rss_bytes))
                .then(a.pid.cmp(&b.pid))
        })
        .into_iter()
        .cloned()
        .collect();
        let by_memory: Vec<Sample> = top_n(refs.clone(), want, |a, b| {
            b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid))
        })
        .into_iter()
        .cloned()
        .collect();
        let zombies: Vec<&Sample> = refs.into_iter().filter(|p| p.state == 'Z').collect();
        let zombies: Vec<Sample> = top_n(zombies, want, |a, b| a.pid.cmp(&b.pid))
            .into_iter()
            .cloned()
            .collect();

        let total_memory = total_memory();
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

    /// Guards user names under a host root: read from the root's passwd(5) by uid, the uid
    /// itself when it is not there, and a malformed line skipped.
    #[test]
    fn names_users_from_a_passwd_file() {
        let text =
            "root:x:0:0:root:/root:/bin/bash\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(passwd_name(text, 1000).as_deref(), Some("alice"));
        assert_eq!(passwd_name(text, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(text, 7), None);
    }

    /// Guards the host-root path: processes come from the root's `proc` (here this
    /// machine's, through a root that links to it) and names from its `etc/passwd`.
    #[test]
    fn reads_processes_and_users_under_a_host_root() {
        let root = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/proc", root.path().join("proc")).expect("link proc");
        std::fs::create_dir_all(root.path().join("etc")).expect("mkdir");
        let me = nix::unistd::getuid().as_raw();
        std::fs::write(
            root.path().join("etc/passwd"),
            format!("hostuser:x:{me}:{me}::/:/bin/sh\n"),
        )
        .expect("write");
        let mut init = InitParams::new("process", serde_json::json!({}));
        init.host_root = Some(root.path().to_owned());
        let config = Config {
            top: 1000,
            ..Config::default()
        };
        let mut c = ProcessCollector::create(config, &init).expect("create");
        let s = c.collect().expect("collect");
        assert!(s.process_count > 1, "{}", s.process_count);
        assert!(
            s.top_by_memory
                .iter()
                .chain(&s.top_by_cpu)
                .filter(|p| p.user.is_some())
                .any(|p| p.user.as_deref() == Some("hostuser")),
            "no process named by the root's passwd: {:?}",
            s.top_by_memory
        );
    }

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

    /// What this test process holds resident while a test needs it to rank high by memory.
    const HELD_BYTES: usize = 1 << 30;

    /// Makes this test process hold [`HELD_BYTES`] of touched memory (once per test binary),
    /// far more than any ordinary process on a test machine, so it belongs in a top 10.
    fn hold_memory() {
        static HELD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        std::hint::black_box(HELD.get_or_init(|| vec![0x5a; HELD_BYTES]));
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
        hold_memory();
        let report = vitals_plugin_api::testing::assert_contract::<ProcessCollector>();
        let s: ProcessStats =
            serde_json::from_value(report.last_section().expect("a section").clone())
                .expect("ProcessStats");
        assert!(s.process_count >= 1);
        assert!(s.thread_count >= s.process_count, "{s:?}");
        assert_eq!(s.top_by_memory.len(), s.process_count.min(10) as usize);
        let me = std::process::id();
        assert!(
            s.top_by_memory.iter().any(|p| p.pid == me),
            "this process, holding {HELD_BYTES} bytes, is in the top 10 by memory: {:?}",
            s.top_by_memory
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

    /// Guards the memory ranking: `top_by_memory` is sorted by resident memory, largest
    /// first, and this process, holding 1 GiB, is in it with at least that much and ahead of
    /// every listed process that holds less.
    #[test]
    fn top_by_memory_is_largest_first() {
        hold_memory();
        let me = std::process::id();
        let mut c = collector();
        let s = collect_until(&mut c, "this process in the top 10 by memory", |s| {
            s.top_by_memory.iter().any(|p| p.pid == me)
        });
        let sizes: Vec<u64> = s.top_by_memory.iter().map(|p| p.memory_bytes).collect();
        assert!(
            sizes.windows(2).all(|w| w[0] >= w[1]),
            "not largest first: {sizes:?}"
        );
        let at = s
            .top_by_memory
            .iter()
            .position(|p| p.pid == me)
            .expect("listed");
        let mine = &s.top_by_memory[at];
        assert!(mine.memory_bytes >= HELD_BYTES as u64, "{mine:?}");
        assert!(mine.memory_percent > 0.0, "{mine:?}");
        assert!(
            s.top_by_memory[at + 1..]
                .iter()
                .all(|p| p.memory_bytes <= mine.memory_bytes),
            "{:?}",
            s.top_by_memory
        );
        assert_eq!(s.top_by_memory.len(), s.process_count.min(10) as usize);
    }

    /// Guards the description cache: a process that execs another program is reported
    /// under its new name and command line at the next collect.
    #[test]
    fn an_exec_is_seen_at_the_next_collect() {
        let marker = format!("vitals-process-unit-exec-{}", std::process::id());
        let child = Reaped(
            Command::new("sh")
                .args(["-c", "read _; exec sleep 3600", &marker])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("spawn sh"),
        );
        let pid = child.0.id();
        let mut c = ProcessCollector::new(Config {
            top: 1000,
            ..Config::default()
        })
        .expect("new");
        let find = |s: &ProcessStats| s.top_by_memory.iter().find(|p| p.pid == pid).cloned();
        let before = collect_until(&mut c, "the shell", |s| find(s).is_some());
        let before = find(&before).expect("listed");
        assert!(before.command.contains(&marker), "{before:?}");
        use std::io::Write;
        let mut stdin = child.0.stdin.as_ref().expect("stdin");
        stdin.write_all(b"go\n").expect("write");
        let start = Instant::now();
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .as_deref()
            != Some("sleep\n")
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no exec within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The very next collect, not one some collects later when the cache ages.
        let after = c.collect().expect("collect");
        let after = find(&after).expect("listed");
        assert_eq!(after.name, "sleep", "{after:?}");
        assert_eq!(after.command, "sleep 3600", "{after:?}");
        assert_eq!(
            after.start_time_unix_seconds,
            before.start_time_unix_seconds
        );
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
        assert!(c.scanner.tracks(std::process::id()));
        assert!(!c.scanner.tracks(tid), "thread {tid} listed");
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
        let snap = |pid: u32| Sample {
            pid,
            parent_pid: None,
            comm: "x".into(),
            state: 'R',
            cpu_percent: 0.0,
            rss_bytes: 0,
            start_ticks: 0,
            running_threads: 1,
        };
        let mut c = collector();
        let described = c.describe_first(&[snap(gone_pid), snap(std::process::id())], 1, 1 << 30);
        assert_eq!(described.len(), 1);
        assert_eq!(described[0].pid, std::process::id());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no text panics the status, loadavg and passwd parsers, nor any bytes
        /// the command-line formatter, whose line stays within its bound.
        #[test]
        fn arbitrary_input_never_panics(text in "\\PC{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..400), uid in any::<u32>()) {
            let _ = parse_status(&text);
            let _ = parse_loadavg_threads(&text);
            let _ = passwd_name(&text, uid);
            let line = format_command(&bytes, &text);
            prop_assert!(bytes.iter().all(|b| *b == 0) || line.chars().count() <= COMMAND_CHARS);
        }

        /// Guards the status round trip: the name (spaces inside, as the kernel prints it
        /// with control characters escaped) and the real uid among the kernel's other lines.
        #[test]
        fn status_round_trips(name in "[!-~]([ -~]{0,13}[!-~])?|é[a-z ]{0,5}é", uids in any::<[u32; 4]>()) {
            let text = format!(
                "Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t1\nUid:\t{}\t{}\t{}\t{}\nGid:\t0\t0\t0\t0\n",
                uids[0], uids[1], uids[2], uids[3]
            );
            prop_assert_eq!(parse_status(&text), Some(StatusFields { name, uid: Some(uids[0]) }));
        }

        /// Guards the loadavg round trip: the running threads and the thread total of the fourth
        /// field, and the last pid of the fifth.
        #[test]
        fn loadavg_round_trips(loads in any::<[u16; 3]>(), running in any::<u32>(), total in any::<u64>(), last in any::<u32>()) {
            let text = format!("{}.{:02} {}.07 {}.19 {running}/{total} {last}\n", loads[0], loads[1] % 100, loads[1], loads[2]);
            prop_assert_eq!(parse_loadavg_threads(&text), Some(total));
            prop_assert_eq!(scan::parse_running(&text), Some(running));
            prop_assert_eq!(scan::parse_last_pid(&text), Some(last));
        }

        /// Guards the command-line round trip: arguments without NULs come back joined by
        /// spaces, cut to the bound in characters.
        #[test]
        fn command_line_round_trips(args in prop::collection::vec("[^\\x00]{1,30}", 1..8)) {
            let mut cmdline = Vec::new();
            for a in &args {
                cmdline.extend_from_slice(a.as_bytes());
                cmdline.push(0);
            }
            let want: String = args.join(" ").chars().take(COMMAND_CHARS).collect();
            prop_assert_eq!(format_command(&cmdline, "x"), want);
        }

        /// Guards the passwd round trip: each user's name by its uid, the first one listed
        /// when two share it.
        #[test]
        fn passwd_round_trips(users in prop::collection::btree_map(any::<u32>(), "[a-z_][a-z0-9_-]{0,30}", 1..10)) {
            let text: String = users
                .iter()
                .map(|(uid, name)| format!("{name}:x:{uid}:{uid}:A User,,,:/home/{name}:/bin/sh\n"))
                .collect();
            for (uid, name) in &users {
                prop_assert_eq!(passwd_name(&text, *uid), Some(name.clone()));
            }
        }
    }
}
