//! CPU time, resident memory and load average of process trees, read from `/proc`.

use std::collections::HashMap;
use std::time::Duration;

/// One process's fields from `/proc/PID/stat` that the bench uses.
#[derive(Debug, Clone)]
struct Stat {
    comm: String,
    ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
}

/// Parses `/proc/PID/stat` text; `None` when it is not in the kernel's format.
fn parse_stat(text: &str) -> Option<Stat> {
    // The command name is in parentheses and may itself hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the comm: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks = num(11)? + num(12)? + num(13)? + num(14)?;
    Some(Stat { comm, ppid, ticks })
}

fn all_stats() -> HashMap<u32, Stat> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            out.insert(pid, stat);
        }
    }
    out
}

/// `root` and every live descendant of it.
pub fn tree(root: u32) -> Vec<u32> {
    tree_in(&all_stats(), root)
}

fn tree_in(stats: &HashMap<u32, Stat>, root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    // Bounded by the number of processes: each is added at most once.
    while i < out.len() && out.len() <= stats.len() {
        let parent = out[i];
        out.extend(
            stats
                .iter()
                .filter(|(pid, s)| s.ppid == parent && **pid != parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    out
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
}

/// CPU time (user + system, including reaped children) of `root` and its live descendants.
///
/// A child that exits in a window moves from its own counters to its parent's `cutime`, so
/// the difference of two readings counts it once.
pub fn tree_cpu(root: u32) -> Duration {
    let stats = all_stats();
    let ticks = tree_in(&stats, root)
        .iter()
        .filter_map(|p| stats.get(p))
        .map(|s| s.ticks)
        .sum();
    ticks_to_duration(ticks)
}

/// CPU time of every process whose command name matches `pred` (e.g. the Docker daemons).
pub fn cpu_by_name(pred: impl Fn(&str) -> bool) -> Duration {
    let ticks = all_stats()
        .values()
        .filter(|s| pred(&s.comm))
        .map(|s| s.ticks)
        .sum();
    ticks_to_duration(ticks)
}

/// How many processes have this command name.
pub fn count_by_name(name: &str) -> usize {
    all_stats().values().filter(|s| s.comm == name).count()
}

/// True for the Docker daemon side: dockerd, containerd and the per-container shims.
pub fn is_docker_daemon(comm: &str) -> bool {
    comm == "dockerd" || comm == "containerd" || comm.starts_with("containerd-shim")
}

/// `VmRSS` of one process in bytes, `None` when it is gone or has no memory (a kernel thread).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&text)
}

/// `VmRSS` of one process in bytes, or why it could not be read.
///
/// # Errors
/// When `/proc/PID/status` cannot be read or has no `VmRSS` line in kB.
pub fn read_rss(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_vm_rss(&text).ok_or_else(|| format!("{path} has no VmRSS line in kB"))
}

/// The `VmRSS:` line of `/proc/PID/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// Summed `VmRSS` of `root` and its live descendants, in bytes.
pub fn tree_rss_bytes(root: u32) -> u64 {
    tree(root).into_iter().filter_map(rss_bytes).sum()
}

/// The 1-minute load average and the whole `/proc/loadavg` line.
pub fn load_average() -> (f64, String) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one = text
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    (one, text.trim().to_owned())
}

/// True while a process with this id exists.
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the stat parser against command names with spaces and parentheses.
    #[test]
    fn stat_with_odd_comm_parses() {
        let text = "42 (a (b) c) S 7 42 42 0 -1 4194304 100 0 0 0 11 22 3 4 20 0 5 0 100 1000 50";
        let s = parse_stat(text).expect("parses");
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.ppid, 7);
        assert_eq!(s.ticks, 11 + 22 + 3 + 4);
    }

    /// Guards bad input: truncated stat text is refused, not misread.
    #[test]
    fn truncated_stat_is_refused() {
        assert!(parse_stat("42 (x) S 7 42").is_none());
        assert!(parse_stat("garbage").is_none());
    }

    /// Guards the RSS unit conversion.
    #[test]
    fn vm_rss_is_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthread\n"), None);
    }

    /// Guards the tree walk on this very process: it finds itself and a child it starts.
    #[test]
    fn tree_finds_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let me = std::process::id();
        let found = tree(me);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found[0], me);
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(rss_bytes(me).is_some_and(|r| r > 0));
    }
}
