//! The per-collect walk of `/proc`: one read of `/proc/<pid>/stat` per process, from a file
//! kept open between collects while the open-file budget allows.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use procfs_core::process::Stat;
use procfs_core::FromRead;

/// The largest `/proc/<pid>/stat` read; the kernel writes a few hundred bytes.
const STAT_BYTES: usize = 4096;

/// What one `/proc/<pid>/stat` says about a process, in the section's units.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The process id.
    pub pid: u32,
    /// The parent's process id; None for the roots (pid 1 and kthreadd have parent 0).
    pub parent_pid: Option<u32>,
    /// The kernel's `comm`: the name, at most 15 bytes, changed by `exec`. Shared: a resting
    /// process' sample is given again on every scan.
    pub comm: Arc<str>,
    /// The state letter (`R`, `S`, `D`, `Z`, `T`, `t`, `X`, `I`, `P`, `K`, `W`).
    pub state: char,
    /// CPU used since the previous scan, 100 being one logical CPU busy the whole time.
    pub cpu_percent: f32,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// Start time in clock ticks after boot (with the pid, what tells a reused pid apart).
    pub start_ticks: u64,
    /// Its threads in state `R` (running or runnable), as `top` counts them; see
    /// [`count_running_tasks`] for when the threads are read.
    pub running_threads: u32,
}

/// A process seen by the previous scan.
#[derive(Debug)]
struct Tracked {
    /// `/proc/<pid>/stat`, open while the budget allows.
    file: Option<File>,
    start_ticks: u64,
    cpu_ticks: u64,
    seen: u64,
    /// What the collector cached about this process (name, user, command line): boxed, as
    /// few processes have it and every scan walks every track.
    described: Option<Box<Described>>,
    /// CLOCK_BOOTTIME of its last read, in seconds.
    read_at: f64,
    /// Reads in a row that found it sleeping without having used CPU.
    idle_reads: u32,
    /// While it rests, the scan from which it is read again, and what scans before then show.
    rest: Option<(u64, Sample)>,
    /// A single-threaded resting process' `/proc/<pid>/schedstat`, kept open, and the time
    /// it had run (ns) when it began to rest: while that is unchanged it has not run, and its
    /// rest goes on without reading its `stat` (a fraction of the kernel's work).
    sched: Option<(File, u64)>,
}

/// Reads in a row a process must be found sleeping (`S` or `I`) without having used CPU
/// before it rests (see [`Scanner::set_rest`]).
pub const IDLE_READS: u32 = 3;

/// CPU use (percent of one CPU since its last read) under which a resting process found
/// asleep rests again at once: a runtime's timer (a Go program's, say) wakes it for a moment
/// every few seconds, which would otherwise make it read on every scan for `IDLE_READS` more.
pub const BLIP_PERCENT: f32 = 1.0;

/// How long a resting process whose run time did not move goes without its `stat` being
/// read: the kernel may reclaim a sleeping process' memory, which lowers its RSS without it
/// running.
pub const RUN_TIME_REST_SECONDS: f64 = 60.0;

/// The time a task has run, in nanoseconds: the first field of `/proc/<pid>/schedstat`.
pub fn parse_schedstat(text: &[u8]) -> Option<u64> {
    let end = text.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&text[..end]).ok()?.parse().ok()
}

/// Closes a kept `schedstat` file, if any, giving its place back to the budget.
fn close_sched(sched: &mut Option<(File, u64)>, budget: &mut usize, sched_files: &mut usize) {
    if sched.take().is_some() {
        *budget += 1;
        *sched_files -= 1;
    }
}

/// The run time in a kept `schedstat` file; None when its task is gone or it cannot be read.
fn run_time(file: &File, buf: &mut [u8]) -> Option<u64> {
    match file.read_at(buf, 0) {
        Ok(n) if n > 0 && n < buf.len() => parse_schedstat(&buf[..n]),
        _ => None,
    }
}

/// The costly fields of a reported process, cached until its `comm` changes or they age.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// The `comm` they were read under: a change means an `exec`.
    pub comm: String,
    /// The real user id.
    pub uid: Option<u32>,
    /// The formatted command line.
    pub command: String,
    /// The scan they were read at.
    pub scan: u64,
}

/// Walks `/proc` and keeps what a CPU delta needs between two walks.
#[derive(Debug)]
pub struct Scanner {
    root: PathBuf,
    tracked: HashMap<u32, Tracked>,
    /// Files that may still be kept open.
    budget: usize,
    /// The budget the scanner started with: `budget` less the files open now.
    files_allowed: usize,
    /// The pids of the last scan's samples, in its order: the tracked processes, which a
    /// scan that does not list the tree reads again.
    order: Vec<u32>,
    clock_ticks: f64,
    page_bytes: u64,
    boot_unix_seconds: u64,
    /// CLOCK_BOOTTIME of the previous scan, in seconds.
    previous: Option<f64>,
    scans: u64,
    buf: Vec<u8>,
    /// Whether `root` is the proc of this process' own pid namespace, the one whose last
    /// allocated pid `root/loadavg` shows: only then may a scan skip listing `root`.
    own_namespace: bool,
    /// Whether `root` is the proc of the initial pid namespace (pid 2 is a kernel thread:
    /// they show there alone), which lists every thread of the machine: then the threads
    /// in state `R` are the running count of `root/loadavg`, and no process' threads are read.
    every_thread: bool,
    /// The running threads at the last scan, from `root/loadavg`, when `every_thread`.
    running: Option<u32>,
    /// The last allocated pid at the previous scan, and the scan that last listed `root`.
    last_pid: Option<u32>,
    listed_at: u64,
    /// Scans that listed `root` (the others re-read the processes already tracked).
    listings: u64,
    /// A resting process is read every this many scans (1: every process every scan).
    rest_scans: u64,
    /// `schedstat` files held open (the other open files are `stat` files).
    sched_files: usize,
}

/// A scan lists `root` at least this often (in scans), whatever the last allocated pid says.
pub const LIST_EVERY: u64 = 60;

/// The last allocated pid in the reader's pid namespace: the fifth field of `/proc/loadavg`.
pub fn parse_last_pid(loadavg: &str) -> Option<u32> {
    loadavg.split_ascii_whitespace().nth(4)?.parse().ok()
}

/// The threads of the machine in state `R` (running or waiting for a CPU): the number before
/// the `/` in the fourth field of `/proc/loadavg`.
pub fn parse_running(loadavg: &str) -> Option<u32> {
    let field = loadavg.split_ascii_whitespace().nth(3)?;
    field.split_once('/')?.0.parse().ok()
}

/// The `PF_KTHREAD` flag of a `/proc/<pid>/stat`'s flags: a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;

/// Whether `root` is the proc of the initial pid namespace: its pid 2 is a kernel thread
/// (`kthreadd`), and kernel threads show in that namespace alone.
fn lists_every_thread(root: &Path) -> bool {
    std::fs::read(root.join("2/stat"))
        .ok()
        .and_then(|b| parse_stat(&b))
        .is_some_and(|s| s.flags & PF_KTHREAD != 0)
}

/// Seconds since boot, the clock `starttime` in `/proc/<pid>/stat` counts on.
fn boottime_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn sysconf(name: libc::c_int, fallback: i64) -> i64 {
    // SAFETY: sysconf reads no memory of the caller.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v
    } else {
        fallback
    }
}

/// The state letter of a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line: the first
/// character after the last `)` (a `comm` may itself hold `)` and spaces). None for anything
/// else.
pub fn parse_stat_state(stat: &[u8]) -> Option<char> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = stat.get(close + 1..)?;
    let state = *rest.strip_prefix(b" ")?.first()?;
    state.is_ascii_alphabetic().then_some(char::from(state))
}

/// The threads under `task_dir` (a `/proc/<pid>/task`) in state `R`; `buf` holds each
/// thread's stat (a longer one is skipped). None when the directory cannot be listed.
pub fn count_running_tasks(task_dir: &Path, buf: &mut [u8]) -> Option<u32> {
    let mut running = 0;
    let mut path = task_dir.to_path_buf();
    for entry in std::fs::read_dir(task_dir).ok()? {
        let Ok(entry) = entry else { continue };
        path.push(entry.file_name());
        path.push("stat");
        let n = File::open(&path).and_then(|mut f| f.read(buf)).unwrap_or(0);
        path.pop();
        path.pop();
        // One read of a task's stat returns it whole; a full buffer means something else.
        if n > 0 && n < buf.len() && parse_stat_state(&buf[..n]) == Some('R') {
            running += 1;
        }
    }
    Some(running)
}

/// Parses a `/proc/<pid>/stat` line (procfs-core's parse); None for a line it cannot read.
pub fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    // procfs-core slices around the parentheses unchecked: a line without `PID (` before
    // them and a character after them would panic it, so such a line is refused first.
    let text = String::from_utf8_lossy(bytes);
    let line = text.trim();
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let shaped = open >= 1
        && line.is_char_boundary(open - 1)
        && close > open
        && line.is_char_boundary(close + 2);
    shaped.then(|| Stat::from_read(bytes).ok()).flatten()
}

/// Parses the `btime` line of `/proc/stat`: the boot time in seconds since the Unix epoch.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// A quarter of the soft open-file limit, at most 65,536: the files a scan may keep open.
pub fn default_budget() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    (soft / 4).min(65_536) as usize
}

impl Scanner {
    /// A scanner of the proc tree at `root`, keeping at most `budget` files open.
    pub fn new(root: &Path, budget: usize) -> Self {
        let boot = std::fs::read_to_string(root.join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_btime)
            .unwrap_or(0);
        Self {
            root: root.to_owned(),
            tracked: HashMap::new(),
            budget,
            files_allowed: budget,
            order: Vec::new(),
            clock_ticks: sysconf(libc::_SC_CLK_TCK, 100) as f64,
            page_bytes: sysconf(libc::_SC_PAGESIZE, 4096) as u64,
            boot_unix_seconds: boot,
            previous: None,
            scans: 0,
            buf: vec![0; STAT_BYTES],
            own_namespace: std::fs::read_link(root.join("self"))
                .is_ok_and(|p| p.as_os_str() == std::process::id().to_string().as_str()),
            every_thread: lists_every_thread(root),
            running: None,
            last_pid: None,
            listed_at: 0,
            listings: 0,
            rest_scans: 1,
            sched_files: 0,
        }
    }

    /// Lets a process found sleeping without using CPU [`IDLE_READS`] reads in a row rest:
    /// it is read every `every` scans instead of every scan (1: never rests) until a read
    /// finds it used CPU (more than a blip, [`BLIP_PERCENT`]) or left its sleep; a
    /// single-threaded one whose `schedstat` run time did not move rests on unread. The scans
    /// between show its last read with no CPU use; one that ended meanwhile leaves at its
    /// next read, or at the next listing of the tree.
    pub fn set_rest(&mut self, every: u64) {
        self.rest_scans = every.max(1);
    }

    /// Reads the threads of the processes that used CPU to count those in state `R`, even
    /// where `loadavg` has the count (for tests of that path on this machine's proc).
    pub fn read_threads(&mut self) {
        self.every_thread = false;
    }

    /// The machine's threads in state `R` at the last scan, from `loadavg`, when the proc
    /// scanned lists every thread; `None` otherwise (each sample's `running_threads` then
    /// has them).
    pub fn running_threads(&self) -> Option<u32> {
        self.running
    }

    /// Scans that listed the proc tree; the others re-read only the processes tracked.
    pub fn listings(&self) -> u64 {
        self.listings
    }

    /// Whether this scan may re-read only the processes tracked instead of listing `root`:
    /// no pid was allocated since the previous scan (so no process or thread started), every
    /// tracked process has its file open, and the last listing is recent.
    fn may_skip_listing(&mut self) -> bool {
        let loadavg = (self.own_namespace || self.every_thread)
            .then(|| std::fs::read_to_string(self.root.join("loadavg")).ok())
            .flatten();
        self.running = self
            .every_thread
            .then(|| loadavg.as_deref().and_then(parse_running))
            .flatten();
        let last_pid = self
            .own_namespace
            .then_some(loadavg)
            .flatten()
            .as_deref()
            .and_then(parse_last_pid);
        let unchanged = last_pid.is_some() && last_pid == self.last_pid;
        self.last_pid = last_pid;
        unchanged
            && self.scans - self.listed_at < LIST_EVERY
            && self.open_files() - self.sched_files == self.tracked.len()
    }

    /// Scans done so far.
    pub fn scans(&self) -> u64 {
        self.scans
    }

    /// Files held open between scans.
    pub fn open_files(&self) -> usize {
        self.files_allowed - self.budget
    }

    /// Whether the last scan saw `pid` as a process.
    pub fn tracks(&self, pid: u32) -> bool {
        self.tracked.contains_key(&pid)
    }

    /// A start time in clock ticks after boot as seconds since the Unix epoch.
    pub fn start_unix_seconds(&self, start_ticks: u64) -> u64 {
        self.boot_unix_seconds + (start_ticks as f64 / self.clock_ticks) as u64
    }

    /// What was cached for `pid` under this start time, whatever its age.
    pub fn described(&self, pid: u32, start_ticks: u64) -> Option<&Described> {
        self.tracked
            .get(&pid)
            .filter(|t| t.start_ticks == start_ticks)
            .and_then(|t| t.described.as_deref())
    }

    /// Caches `described` for `pid`, when the scan still tracks it under this start time.
    pub fn remember(&mut self, pid: u32, start_ticks: u64, described: Described) {
        if let Some(t) = self
            .tracked
            .get_mut(&pid)
            .filter(|t| t.start_ticks == start_ticks)
        {
            t.described = Some(Box::new(described));
        }
    }

    /// Every process now, with its CPU use since the previous scan (0 on the first).
    pub fn scan(&mut self) -> io::Result<Vec<Sample>> {
        let now = boottime_seconds();
        let elapsed = self.previous.map(|p| now - p).filter(|e| *e > 0.0);
        self.scans += 1;
        let scan = self.scans;
        let mut samples = Vec::with_capacity(self.tracked.len() + 16);
        let pids: Vec<u32> = if self.may_skip_listing() {
            std::mem::take(&mut self.order)
        } else {
            self.listed_at = scan;
            self.listings += 1;
            std::fs::read_dir(&self.root)?
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        };
        for pid in pids {
            if let Some(t) = self.tracked.get_mut(&pid) {
                if let Some((until, last)) = t.rest.as_mut() {
                    // At the rest's end, a process whose run time did not move rests on: it
                    // has not run, so its state, CPU and memory are as read.
                    let resting = scan < *until
                        || (now - t.read_at < RUN_TIME_REST_SECONDS
                            && t.sched.as_ref().is_some_and(|(file, ran)| {
                                run_time(file, &mut self.buf) == Some(*ran)
                            }));
                    if resting {
                        if scan >= *until {
                            *until = scan + self.rest_scans;
                            last.cpu_percent = 0.0;
                        }
                        t.seen = scan;
                        samples.push(last.clone());
                        continue;
                    }
                }
            }
            let Some(stat) = self.read_stat(pid) else {
                continue;
            };
            let cpu_ticks = stat.utime.saturating_add(stat.stime);
            let mut read_before = None;
            let before = match self.tracked.get_mut(&pid) {
                Some(t) if t.start_ticks == stat.starttime && t.seen != 0 => {
                    let before = t.cpu_ticks;
                    t.cpu_ticks = cpu_ticks;
                    t.seen = scan;
                    read_before = Some(t.read_at);
                    t.read_at = now;
                    Some(before)
                }
                other => {
                    // New, or a reused pid: forget what the old process left.
                    if let Some(t) = other {
                        close_sched(&mut t.sched, &mut self.budget, &mut self.sched_files);
                        t.described = None;
                        t.start_ticks = stat.starttime;
                        t.cpu_ticks = cpu_ticks;
                        t.seen = scan;
                        t.read_at = now;
                        t.idle_reads = 0;
                    }
                    // Started since the previous scan: all its CPU time falls in the interval.
                    let started = stat.starttime as f64 / self.clock_ticks;
                    let fresh = self.previous.is_some_and(|p| started >= p);
                    fresh.then_some(0)
                }
            };
            // A thread in `R` shows in its process' stat only when it is the main one, so the
            // threads of a multi-threaded process are read, but only of one that used CPU
            // since the previous scan (or is new, or whose main thread runs): the threads of
            // one that used none have not been running, and reading them is most of the cost.
            let running_threads = if stat.num_threads <= 1 || self.every_thread {
                u32::from(stat.state == 'R')
            } else if stat.state == 'R' || before.is_none_or(|b| cpu_ticks > b) {
                let task_dir = self.root.join(pid.to_string()).join("task");
                count_running_tasks(&task_dir, &mut self.buf)
                    .unwrap_or(u32::from(stat.state == 'R'))
            } else {
                0
            };
            // Over the time since this process' own last read, which a rest makes longer than
            // the time since the previous scan.
            let since = read_before
                .map(|r| now - r)
                .filter(|e| *e > 0.0)
                .or(elapsed);
            let cpu_percent = match (before, since) {
                (Some(b), Some(e)) => {
                    (cpu_ticks.saturating_sub(b) as f64 / self.clock_ticks / e * 100.0) as f32
                }
                _ => 0.0,
            };
            let sample = Sample {
                pid,
                parent_pid: u32::try_from(stat.ppid).ok().filter(|p| *p != 0),
                comm: stat.comm.into(),
                state: stat.state,
                cpu_percent,
                rss_bytes: stat.rss.saturating_mul(self.page_bytes),
                start_ticks: stat.starttime,
                running_threads,
            };
            if let Some(t) = self.tracked.get_mut(&pid) {
                // A process that rested and woke only for a moment (under `BLIP_PERCENT` of
                // a CPU since its last read) rests again at once.
                let idle = matches!(stat.state, 'S' | 'I')
                    && (before == Some(cpu_ticks)
                        || (t.rest.is_some() && sample.cpu_percent < BLIP_PERCENT));
                t.idle_reads = if idle {
                    t.idle_reads.saturating_add(1)
                } else {
                    0
                };
                t.rest = (t.idle_reads >= IDLE_READS && self.rest_scans > 1)
                    .then(|| (scan + self.rest_scans, sample.clone()));
                // The run time a single-threaded process rests from (one with threads runs
                // in them too, which its own `schedstat` does not count).
                if t.rest.is_none() || stat.num_threads > 1 {
                    close_sched(&mut t.sched, &mut self.budget, &mut self.sched_files);
                } else if let Some((file, ran)) = t.sched.as_mut() {
                    match run_time(file, &mut self.buf) {
                        Some(now) => *ran = now,
                        None => close_sched(&mut t.sched, &mut self.budget, &mut self.sched_files),
                    }
                } else if self.budget > 0 {
                    let path = self.root.join(pid.to_string()).join("schedstat");
                    if let Some(opened) = File::open(path).ok().and_then(|f| {
                        let ran = run_time(&f, &mut self.buf)?;
                        Some((f, ran))
                    }) {
                        t.sched = Some(opened);
                        self.budget -= 1;
                        self.sched_files += 1;
                    }
                }
            }
            samples.push(sample);
        }
        // Processes gone since the previous scan: close their files.
        let before = self.tracked.len();
        let (mut freed, mut sched_freed) = (0, 0);
        self.tracked.retain(|_, t| {
            let keep = t.seen == scan;
            if !keep {
                freed += usize::from(t.file.is_some());
                sched_freed += usize::from(t.sched.is_some());
            }
            keep
        });
        self.budget += freed + sched_freed;
        self.sched_files -= sched_freed;
        if self.tracked.len() < before / 2 {
            self.tracked.shrink_to_fit();
        }
        self.previous = Some(now);
        self.order = samples.iter().map(|s| s.pid).collect();
        Ok(samples)
    }

    /// Reads and parses `/proc/<pid>/stat`, from the kept file when there is one; starts
    /// tracking a pid not seen before. None when the process is gone or the file is unreadable.
    fn read_stat(&mut self, pid: u32) -> Option<Stat> {
        if let Some(t) = self.tracked.get_mut(&pid) {
            if let Some(file) = &t.file {
                match file.read_at(&mut self.buf, 0) {
                    Ok(n) if n > 0 && n < STAT_BYTES => {
                        return parse_stat(&self.buf[..n]);
                    }
                    // The file belonged to an earlier process with this pid: open it again.
                    _ => {
                        t.file = None;
                        self.budget += 1;
                    }
                }
            }
        }
        let mut file = File::open(self.root.join(pid.to_string()).join("stat")).ok()?;
        let mut n = 0;
        while n < STAT_BYTES {
            match file.read(&mut self.buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        let stat = parse_stat(&self.buf[..n])?;
        let keep = self.budget > 0;
        let t = self.tracked.entry(pid).or_insert(Tracked {
            file: None,
            start_ticks: stat.starttime,
            cpu_ticks: stat.utime.saturating_add(stat.stime),
            seen: 0,
            described: None,
            read_at: 0.0,
            idle_reads: 0,
            rest: None,
            sched: None,
        });
        if keep && t.file.is_none() {
            t.file = Some(file);
            self.budget -= 1;
        }
        Some(stat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Guards the boot time read from /proc/stat.
    #[test]
    fn parses_btime() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5\nbtime 1628859739\nprocesses 7\n"),
            Some(1_628_859_739)
        );
        assert_eq!(parse_btime("cpu 1 2 3\n"), None);
    }

    /// Guards the kept files: one per process while the budget lasts, none past it, and
    /// the same figures either way.
    #[test]
    fn keeps_files_within_the_budget() {
        let mut kept = Scanner::new(Path::new("/proc"), 1 << 20);
        let mut none = Scanner::new(Path::new("/proc"), 0);
        let a = kept.scan().expect("scan");
        let b = none.scan().expect("scan");
        assert!(a.len() > 1 && b.len() > 1);
        assert_eq!(kept.open_files(), kept.tracked.len());
        assert_eq!(none.open_files(), 0);
        let me = std::process::id();
        for s in [&a, &b] {
            let mine = s.iter().find(|p| p.pid == me).expect("this process");
            assert!(mine.rss_bytes > 0, "{mine:?}");
            assert_eq!(mine.parent_pid, Some(std::os::unix::process::parent_id()));
        }
        // The second scan reads from the kept files.
        let again = kept.scan().expect("scan");
        assert!(again.iter().any(|p| p.pid == me));
        let mut small = Scanner::new(Path::new("/proc"), 2);
        small.scan().expect("scan");
        assert_eq!(small.open_files(), 2);
    }

    /// A proc tree of this process' own namespace (its `self` names this process) whose
    /// `loadavg` says `last_pid`, with one sleeping process per pid in `pids`.
    fn own_root(dir: &Path, last_pid: u32, pids: &[u32]) {
        let _ = std::fs::remove_file(dir.join("self"));
        std::os::unix::fs::symlink(std::process::id().to_string(), dir.join("self")).unwrap();
        std::fs::write(
            dir.join("loadavg"),
            format!("0.00 0.01 0.05 1/90 {last_pid}\n"),
        )
        .unwrap();
        for pid in pids {
            write_stat(dir, *pid, 'S', 1);
        }
    }

    /// Guards the listing skipped while no pid was allocated: a scan re-reads the tracked
    /// processes only, and lists the tree again once the last pid moves, or after
    /// `LIST_EVERY` scans.
    #[test]
    fn lists_the_tree_only_when_a_pid_was_allocated() {
        assert_eq!(parse_last_pid("0.41 0.30 0.25 2/611 48213\n"), Some(48_213));
        assert_eq!(parse_last_pid("0.41 0.30"), None);
        let dir = tempfile::tempdir().unwrap();
        own_root(dir.path(), 100, &[1000]);
        let mut s = Scanner::new(dir.path(), 1 << 10);
        let pids = |v: Vec<Sample>| v.iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(s.scan().unwrap()), [1000]);
        // A process whose pid was allocated without the last pid moving cannot exist; this
        // one shows that the scan did not list the tree.
        own_root(dir.path(), 100, &[2000]);
        assert_eq!(pids(s.scan().unwrap()), [1000]);
        assert_eq!(s.listings(), 1);
        own_root(dir.path(), 101, &[]);
        assert_eq!(pids(s.scan().unwrap()), [1000, 2000]);
        assert_eq!(s.listings(), 2);
        own_root(dir.path(), 101, &[3000]);
        for _ in 0..LIST_EVERY - 1 {
            assert_eq!(pids(s.scan().unwrap()), [1000, 2000]);
        }
        assert_eq!(pids(s.scan().unwrap()), [1000, 2000, 3000]);
        assert_eq!(s.listings(), 3);
        // A tree of another namespace is listed every time.
        std::fs::remove_file(dir.path().join("self")).unwrap();
        let mut other = Scanner::new(dir.path(), 1 << 10);
        for _ in 0..3 {
            other.scan().unwrap();
        }
        assert_eq!(other.listings(), 3);
    }

    /// Writes `pid`'s stat under `dir` with this state letter and user time.
    fn write_stat(dir: &Path, pid: u32, state: char, utime: u64) {
        write_stat_threads(dir, pid, state, utime, 1);
    }

    /// [`write_stat`] of a process with this many threads.
    fn write_stat_threads(dir: &Path, pid: u32, state: char, utime: u64, threads: u32) {
        write_proc_file(dir, pid, "stat", format!("{pid} (p{pid}) {state} 1 {pid} {pid} 0 -1 0 0 0 0 0 {utime} 1 0 0 20 0 {threads} 0 500 1000 10 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"));
    }

    /// Writes the file `name` of `pid` under `dir`.
    fn write_proc_file(dir: &Path, pid: u32, name: &str, text: String) {
        std::fs::create_dir_all(dir.join(pid.to_string())).unwrap();
        std::fs::write(dir.join(pid.to_string()).join(name), text).unwrap();
    }

    /// Guards the rest of idle processes: one found sleeping without using CPU `IDLE_READS`
    /// reads in a row is read every `every` scans, the scans between showing its last read;
    /// one in `R` never rests; with `every` 1 nothing rests.
    #[test]
    fn an_idle_process_rests_until_it_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        own_root(dir.path(), 100, &[]);
        write_stat(dir.path(), 1000, 'S', 1);
        write_stat(dir.path(), 2000, 'R', 1);
        let mut s = Scanner::new(dir.path(), 1 << 10);
        s.set_rest(4);
        let mut never = Scanner::new(dir.path(), 1 << 10);
        let cpu = |v: &[Sample], pid: u32| {
            v.iter()
                .find(|p| p.pid == pid)
                .map(|p| p.cpu_percent)
                .unwrap()
        };
        // The first scan has no delta; `IDLE_READS` more find both without CPU used.
        for _ in 0..=IDLE_READS {
            s.scan().unwrap();
            never.scan().unwrap();
        }
        write_stat(dir.path(), 1000, 'S', 1 + 100);
        write_stat(dir.path(), 2000, 'R', 1 + 100);
        for i in 1..4 {
            let v = s.scan().unwrap();
            assert_eq!(
                cpu(&v, 1000),
                0.0,
                "scan {i} of the rest shows the last read"
            );
            assert!(
                cpu(&v, 2000) > 0.0 || i > 1,
                "a running process is read every scan"
            );
            assert_eq!(v.len(), 2);
            if i == 1 {
                assert!(cpu(&never.scan().unwrap(), 1000) > 0.0, "every 1: no rest");
            }
        }
        let v = s.scan().unwrap();
        assert!(cpu(&v, 1000) > 0.0, "read again after the rest: {v:?}");
        write_stat(dir.path(), 1000, 'S', 1 + 200);
        assert!(
            cpu(&s.scan().unwrap(), 1000) > 0.0,
            "awake: read every scan"
        );
    }

    /// Guards the blip: a resting process found asleep having used under `BLIP_PERCENT` of a
    /// CPU since its last read rests again at once; more and it is read on every scan. The
    /// rest lasts 1.2 s of real time here, as the use is counted over it.
    #[test]
    fn a_resting_process_woken_for_a_moment_rests_again() {
        for (ticks, rests_again) in [(1, true), (3, false)] {
            let dir = tempfile::tempdir().unwrap();
            own_root(dir.path(), 100, &[]);
            write_stat(dir.path(), 1000, 'S', 1);
            let mut s = Scanner::new(dir.path(), 1 << 10);
            s.set_rest(4);
            let cpu = |v: &[Sample]| v.iter().find(|p| p.pid == 1000).unwrap().cpu_percent;
            for _ in 0..=IDLE_READS {
                s.scan().unwrap();
            }
            write_stat(dir.path(), 1000, 'S', 1 + ticks);
            for _ in 1..4 {
                assert_eq!(cpu(&s.scan().unwrap()), 0.0, "resting");
            }
            std::thread::sleep(Duration::from_millis(1200));
            let woke = cpu(&s.scan().unwrap());
            assert!(woke > 0.0, "read after the rest");
            write_stat(dir.path(), 1000, 'S', 1 + ticks + 100);
            let next = cpu(&s.scan().unwrap());
            assert_eq!(
                next == woke,
                rests_again,
                "{ticks} ticks in 1.2 s: rests again {rests_again} ({woke} then {next})"
            );
        }
    }

    /// Writes `pid`'s schedstat under `dir` with this run time.
    fn write_schedstat(dir: &Path, pid: u32, ran_ns: u64) {
        write_proc_file(dir, pid, "schedstat", format!("{ran_ns} 0 1\n"));
    }

    /// Guards the run time check: at the end of its rest, a single-threaded process whose
    /// `schedstat` run time did not move rests on without its `stat` being read (a changed
    /// `stat` stays unseen), showing no CPU use; once the run time moves it is read. A
    /// process with threads (which its own `schedstat` does not count) is read at each
    /// rest's end, and its file is not kept.
    #[test]
    fn a_resting_process_whose_run_time_did_not_move_rests_on() {
        let dir = tempfile::tempdir().unwrap();
        own_root(dir.path(), 100, &[]);
        write_stat(dir.path(), 1000, 'S', 1);
        write_schedstat(dir.path(), 1000, 5_000);
        write_stat_threads(dir.path(), 2000, 'S', 1, 2);
        write_schedstat(dir.path(), 2000, 7_000);
        let mut s = Scanner::new(dir.path(), 1 << 10);
        s.set_rest(4);
        let cpu = |v: &[Sample], pid: u32| v.iter().find(|p| p.pid == pid).unwrap().cpu_percent;
        for _ in 0..=IDLE_READS {
            s.scan().unwrap();
        }
        assert_eq!(s.open_files(), 3, "two stat files and one schedstat");
        let listings = s.listings();
        write_stat(dir.path(), 1000, 'S', 1 + 100);
        write_stat_threads(dir.path(), 2000, 'S', 1 + 100, 2);
        for i in 1..=8 {
            let v = s.scan().unwrap();
            assert_eq!(cpu(&v, 1000), 0.0, "scan {i}: run time unchanged, rests on");
            if i == 4 {
                assert!(cpu(&v, 2000) > 0.0, "threads: read at the rest's end");
            }
        }
        assert_eq!(
            s.listings(),
            listings,
            "a kept schedstat is no reason to list"
        );
        write_schedstat(dir.path(), 1000, 9_000);
        let read = (1..=4).any(|_| cpu(&s.scan().unwrap(), 1000) > 0.0);
        assert!(read, "run time moved: read at the rest's end");
        // Idle again, it rests from the new run time; once its last read is older than
        // `RUN_TIME_REST_SECONDS` it is read at the rest's end all the same.
        for _ in 0..=IDLE_READS {
            s.scan().unwrap();
        }
        write_stat(dir.path(), 1000, 'S', 1 + 200);
        for i in 1..=8 {
            let v = s.scan().unwrap();
            assert_eq!(cpu(&v, 1000), 0.0, "scan {i}: resting again");
        }
        s.tracked.get_mut(&1000).unwrap().read_at -= RUN_TIME_REST_SECONDS;
        let read = (1..=4).any(|_| cpu(&s.scan().unwrap(), 1000) > 0.0);
        assert!(read, "last read aged: read at the rest's end");
    }

    /// Guards exits seen without a listing: a process that ended (and was reaped, which
    /// allocates no pid) is gone from the next scan, listed or not.
    #[test]
    fn an_ended_process_leaves_the_next_scan() {
        let mut s = Scanner::new(Path::new("/proc"), 1 << 20);
        for _ in 0..5 {
            let mut child = std::process::Command::new("sleep")
                .arg("100")
                .spawn()
                .unwrap();
            assert!(s.scan().unwrap().iter().any(|p| p.pid == child.id()));
            child.kill().unwrap();
            child.wait().unwrap();
            assert!(!s.scan().unwrap().iter().any(|p| p.pid == child.id()));
        }
    }

    /// The fixture proc tree: process 1000 has four threads, two of them in `R` (one under a
    /// `comm` that holds `) S (`), one in `D` and a mangled stat; 2000 is one running thread;
    /// 3000 and 4000 sleep.
    fn fixture_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc")
    }

    /// Guards the lines procfs-core's stat parse panics on (found by the property tests):
    /// no `PID ` before the `(`, a `)` before it or last, a multi-byte character beside them.
    #[test]
    fn malformed_stat_lines_are_refused() {
        for bad in [
            &b"()"[..],
            b"(a) R 1",
            b"1 )a( R",
            b"1 (a)",
            b"\xc3\xa9(a) R 1",
            b"1 (a)\xc3\xa9 1",
        ] {
            assert!(
                parse_stat(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let stat = parse_stat(b"7 (a) b) R 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 99 0 5 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0")
            .expect("a comm with `) ` inside");
        assert_eq!((stat.pid, stat.comm.as_str(), stat.state), (7, "a) b", 'R'));
    }

    /// Guards the scan against counters whose sum or bytes overflow 64 bits (panics found by
    /// the property tests): the process is reported with saturated figures.
    #[test]
    fn overflowing_counters_saturate() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("9")).expect("mkdir");
        let max = u64::MAX;
        std::fs::write(
            root.path().join("9/stat"),
            format!("9 (big) S 1 1 1 0 -1 0 0 0 0 0 {max} {max} 0 0 20 0 1 0 5 0 {max} 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
        )
        .expect("write");
        let samples = Scanner::new(root.path(), 1).scan().expect("scan");
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert_eq!(samples[0].rss_bytes, u64::MAX);
    }

    /// Guards the state letter: after the last `)`, whatever the `comm` holds; nothing from
    /// a mangled line.
    #[test]
    fn parses_the_state_letter() {
        assert_eq!(parse_stat_state(b"12 (a) R 1 2 3"), Some('R'));
        assert_eq!(parse_stat_state(b"12 (a) S (b) R 1"), Some('R'));
        assert_eq!(parse_stat_state(b"12 (x) R (y) S 1 2"), Some('S'));
        for bad in [
            &b""[..],
            b"12 (a)",
            b"12 (a)R 1",
            b"12 (a) 5 1",
            b"no paren R",
            b")",
        ] {
            assert_eq!(
                parse_stat_state(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Guards the running count from the threads: a multi-threaded process counts each of
    /// its threads in `R` (as `top` does), not its main thread's state.
    #[test]
    fn counts_running_threads_from_fixtures() {
        let root = fixture_root();
        let mut buf = vec![0; STAT_BYTES];
        assert_eq!(
            count_running_tasks(&root.join("1000/task"), &mut buf),
            Some(2)
        );
        assert_eq!(
            count_running_tasks(&root.join("4000/task"), &mut buf),
            Some(0)
        );
        assert_eq!(count_running_tasks(&root.join("3000/task"), &mut buf), None);

        let running = |samples: &[Sample]| {
            let mut v: Vec<(u32, u32)> =
                samples.iter().map(|p| (p.pid, p.running_threads)).collect();
            v.sort_unstable();
            v
        };
        // On a first scan no CPU delta is known yet, so every multi-threaded process' threads
        // are read.
        let mut s = Scanner::new(&root, 0);
        let first = s.scan().expect("scan");
        assert_eq!(
            running(&first),
            [(1000, 2), (2000, 1), (3000, 0), (4000, 0)]
        );
        // Later scans read only the threads of processes that used CPU since: the fixture's
        // do not change, so 1000's sleeping main thread is all that is known of it.
        let later = s.scan().expect("scan");
        assert_eq!(
            running(&later),
            [(1000, 0), (2000, 1), (3000, 0), (4000, 0)]
        );
    }

    /// Guards the case the count exists for: a process whose main thread sleeps while three
    /// of its threads spin counts at least those three.
    #[test]
    fn counts_spinning_threads_of_this_process() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..3)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let mut s = Scanner::new(Path::new("/proc"), 16);
        s.read_threads();
        let mut machine = Scanner::new(Path::new("/proc"), 16);
        s.scan().expect("scan");
        // Long enough for the spinners to be charged CPU ticks even on a loaded machine: the
        // threads of a process that used none since the previous scan are not read.
        std::thread::sleep(std::time::Duration::from_secs(1));
        let me = std::process::id();
        let mine = s
            .scan()
            .expect("scan")
            .into_iter()
            .find(|p| p.pid == me)
            .expect("this process");
        machine.scan().expect("scan");
        stop.store(true, Ordering::Relaxed);
        for t in spinners {
            t.join().expect("spinner");
        }
        // Other tests' threads of this process may be running too.
        assert!(mine.running_threads >= 3, "{mine:?}");
        // Where this proc lists every thread of the machine, its `loadavg` counts them.
        assert_eq!(s.running_threads(), None, "threads read: no loadavg count");
        if lists_every_thread(Path::new("/proc")) {
            let running = machine.running_threads().expect("loadavg's count");
            assert!(running >= 3, "{running}");
        } else {
            assert_eq!(machine.running_threads(), None);
        }
    }

    /// Guards the start time: this process started before now and after boot.
    #[test]
    fn start_time_is_in_unix_seconds() {
        let mut s = Scanner::new(Path::new("/proc"), 16);
        let me = std::process::id();
        let mine = s
            .scan()
            .expect("scan")
            .into_iter()
            .find(|p| p.pid == me)
            .expect("this process");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let started = s.start_unix_seconds(mine.start_ticks);
        assert!(started <= now && started + 600 > now, "{started} vs {now}");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// The fields of a generated `/proc/<pid>/stat` line the scan reads.
    #[derive(Debug, Clone)]
    struct Line {
        pid: u32,
        comm: String,
        state: char,
        ppid: u32,
        utime: u64,
        stime: u64,
        threads: u32,
        starttime: u64,
        rss: u64,
    }

    fn line(values: impl Strategy<Value = u64> + Clone) -> impl Strategy<Value = Line> {
        (
            1u32..=i32::MAX as u32,
            // A comm of up to 15 bytes may hold spaces and parentheses.
            "[a-zA-Z0-9 ()/:._-]{0,15}",
            prop::sample::select(vec!['R', 'S', 'D', 'Z', 'T', 't', 'X', 'I']),
            0u32..=i32::MAX as u32,
            (
                values.clone(),
                values.clone(),
                1u32..64,
                values.clone(),
                values,
            ),
        )
            .prop_map(
                |(pid, comm, state, ppid, (utime, stime, threads, starttime, rss))| Line {
                    pid,
                    comm,
                    state,
                    ppid,
                    utime,
                    stime,
                    threads,
                    starttime,
                    rss,
                },
            )
    }

    /// The line as the kernel prints it (`do_task_stat`: 52 fields).
    fn print(l: &Line) -> String {
        format!(
            "{} ({}) {} {} 42 42 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 {} 0 {} 12345678 {} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
            l.pid, l.comm, l.state, l.ppid, l.utime, l.stime, l.threads, l.starttime, l.rss
        )
    }

    proptest! {
        /// Guards that no bytes panic the stat parse (procfs-core's) or the state reader,
        /// and no text the boot-time reader.
        #[test]
        fn arbitrary_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_stat(&bytes);
            let _ = parse_stat_state(&bytes);
            let _ = parse_btime(&String::from_utf8_lossy(&bytes));
        }

        /// Guards the stat round trip: pid, comm (spaces and parentheses inside), state,
        /// parent, CPU ticks, threads, start and RSS come back, and the state reader agrees.
        #[test]
        fn kernel_formatted_stat_round_trips(l in line(any::<u64>())) {
            let text = print(&l);
            let stat = parse_stat(text.as_bytes()).ok_or_else(|| TestCaseError::fail("not parsed"))?;
            prop_assert_eq!(stat.pid, l.pid as i32);
            prop_assert_eq!(&stat.comm, &l.comm);
            prop_assert_eq!(stat.state, l.state);
            prop_assert_eq!(stat.ppid, l.ppid as i32);
            prop_assert_eq!((stat.utime, stat.stime), (l.utime, l.stime));
            prop_assert_eq!(stat.num_threads, i64::from(l.threads));
            prop_assert_eq!((stat.starttime, stat.rss), (l.starttime, l.rss));
            prop_assert_eq!(parse_stat_state(text.as_bytes()), Some(l.state));
        }

        /// Guards that a `PID (comm)` head over any tokens (numbers past every integer type,
        /// signs, letters, any characters) never panics the stat parse.
        #[test]
        fn hostile_stat_lines_never_panic(
            head in "[0-9]{0,6} ?\\(?[a-z )(]{0,6}\\)?",
            tokens in prop::collection::vec("[0-9]{1,21}|-[0-9]{1,20}|[A-Za-z]|\\PC{0,3}", 0..60),
        ) {
            let text = format!("{head} {}", tokens.join(" "));
            let _ = parse_stat(text.as_bytes());
            let _ = parse_stat_state(text.as_bytes());
        }

        /// Guards the boot-time round trip among the other lines of `/proc/stat`.
        #[test]
        fn btime_round_trips(btime in any::<u64>()) {
            let text = format!("cpu  1 2 3 4 5 6 7 0 0 0\ncpu0 1 2 3 4 5 6 7 0 0 0\nintr 5 0\nctxt 9\nbtime {btime}\nprocesses 7\n");
            prop_assert_eq!(parse_btime(&text), Some(btime));
        }
    }

    proptest! {
        // Each case writes a small proc tree and scans it twice.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Guards the scan over a proc tree whose stat files carry any counters (sums and
        /// byte counts past u64 included): no panic, and each process is reported.
        #[test]
        fn a_scan_of_any_counters_never_panics(lines in prop::collection::vec(line(
            prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..1 << 20]), 1..4)
        ) {
            let root = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut pids = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                let pid = 100 + i as u32;
                let dir = root.path().join(pid.to_string());
                std::fs::create_dir_all(dir.join("task")).map_err(|e| TestCaseError::fail(e.to_string()))?;
                std::fs::write(dir.join("stat"), print(&Line { pid, ..l.clone() })).map_err(|e| TestCaseError::fail(e.to_string()))?;
                pids.push(pid);
            }
            let mut scanner = Scanner::new(root.path(), 2);
            for _ in 0..2 {
                let samples = scanner.scan().map_err(|e| TestCaseError::fail(e.to_string()))?;
                let mut seen: Vec<u32> = samples.iter().map(|s| s.pid).collect();
                seen.sort_unstable();
                prop_assert_eq!(&seen, &pids);
            }
        }
    }
}
