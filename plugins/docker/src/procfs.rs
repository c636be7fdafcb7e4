//! The host-wide figures the docker collector needs from `/proc`: system CPU time, RAM, and a
//! container's network counters read through its init process.

use std::path::Path;

/// Clock ticks per second of `/proc/stat` (`USER_HZ`), which Linux fixes at 100 for user space.
const USER_HZ: u64 = 100;

/// The whole machine's CPU time and how many CPUs are online, from `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemCpu {
    /// CPU time of all CPUs in every state, in nanoseconds (what `docker stats` calls
    /// `system_cpu_usage`).
    pub total_ns: u64,
    /// CPUs listed as `cpuN` lines.
    pub online_cpus: u32,
}

/// Parses `/proc/stat`: the aggregate `cpu` line (user … softirq, as Docker sums it) and the
/// count of `cpuN` lines.
pub fn parse_proc_stat(text: &str) -> Option<SystemCpu> {
    let mut total_ticks = None;
    let mut online_cpus = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        if rest.starts_with(' ') {
            // Docker sums the first seven fields: user nice system idle iowait irq softirq.
            let fields: Vec<u64> = rest
                .split_whitespace()
                .take(7)
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if fields.len() < 4 {
                return None;
            }
            // Counters no kernel reaches (they would overflow in nanoseconds) are no reading.
            total_ticks = Some(fields.iter().try_fold(0u64, |sum, t| sum.checked_add(*t))?);
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            online_cpus += 1;
        }
    }
    Some(SystemCpu {
        total_ns: total_ticks?.checked_mul(1_000_000_000 / USER_HZ)?,
        online_cpus: online_cpus.max(1),
    })
}

/// Reads and parses `/proc/stat`.
pub fn read_system_cpu() -> Option<SystemCpu> {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_proc_stat(&t))
}

/// Parses `MemTotal` from `/proc/meminfo`, in bytes.
pub fn parse_mem_total(text: &str) -> Option<u64> {
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// The machine's RAM in bytes, or `u64::MAX` when `/proc/meminfo` cannot be read.
pub fn read_mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_mem_total(&t))
        .unwrap_or(u64::MAX)
}

/// Parses a `/proc/PID/net/dev` table into (received, sent) bytes over every interface but `lo`.
pub fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    let mut rx = 0u64;
    let mut tx = 0u64;
    // Two header lines, then `iface: rx_bytes packets errs drop fifo frame compressed
    // multicast tx_bytes …`.
    for line in text.lines().skip(2) {
        let (iface, counters) = line.split_once(':')?;
        if iface.trim() == "lo" {
            continue;
        }
        let mut fields = counters.split_whitespace();
        rx = rx.saturating_add(fields.next()?.parse().ok()?);
        tx = tx.saturating_add(fields.nth(7)?.parse().ok()?);
    }
    Some((rx, tx))
}

/// True when a `/proc/PID/net/dev` table lists `lo` and nothing else (a container run with
/// `--network none`).
pub fn only_loopback(text: &str) -> bool {
    text.lines().skip(2).all(|line| {
        line.split_once(':')
            .is_some_and(|(iface, _)| iface.trim() == "lo")
    })
}

/// Reads a process's network counters (its network namespace's interfaces).
///
/// # Errors
/// The I/O error when the process is gone or its files cannot be read.
pub fn read_net_dev(proc_dir: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let text = std::fs::read_to_string(proc_dir.join("net/dev"))?;
    Ok(parse_net_dev(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Guards the system CPU figure: seven fields summed, in nanoseconds, and online CPUs counted.
    #[test]
    fn parses_proc_stat() {
        let cpu = parse_proc_stat(&fixture("proc_stat")).expect("parsed");
        assert_eq!(cpu.online_cpus, 2);
        // 1000 + 20 + 300 + 50000 + 40 + 5 + 6 = 51371 ticks; steal (7) is left out.
        assert_eq!(cpu.total_ns, 51_371 * 10_000_000);
        assert_eq!(parse_proc_stat("garbage"), None);
        assert_eq!(parse_proc_stat("cpu  a b c d\n"), None);
    }

    /// Guards the RAM total used to cap unlimited containers.
    #[test]
    fn parses_mem_total() {
        assert_eq!(
            parse_mem_total("MemTotal:       24684096 kB\nMemFree: 1 kB\n"),
            Some(24_684_096 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    /// Guards the parsers against counters whose sum or nanoseconds overflow 64 bits (panics
    /// found by the property tests): no reading rather than a panic.
    #[test]
    fn overflowing_counters_are_no_reading() {
        assert_eq!(parse_proc_stat("cpu  18015000000000000 0 0 0\n"), None);
        let max = u64::MAX;
        assert_eq!(parse_proc_stat(&format!("cpu  {max} {max} 0 0\n")), None);
        assert_eq!(parse_mem_total("MemTotal: 18014398509481984 kB\n"), None);
        assert_eq!(
            parse_mem_total("MemTotal: 18014398509481983 kB\n"),
            Some(18_014_398_509_481_983 * 1024)
        );
    }

    /// Guards network counters: every interface but `lo`, received and sent columns.
    #[test]
    fn parses_net_dev() {
        assert_eq!(
            parse_net_dev(&fixture("net_dev")),
            Some((1046 + 200, 656 + 30))
        );
        assert_eq!(parse_net_dev("h1\nh2\neth0: 1 2\n"), None);
    }

    /// Guards the loopback-only test: a `--network none` table is `lo` alone; one with any
    /// other interface is not.
    #[test]
    fn tells_a_loopback_only_table() {
        let table = fixture("net_dev");
        assert!(!only_loopback(&table));
        let lo: String = table
            .lines()
            .filter(|l| !l.contains(':') || l.trim_start().starts_with("lo:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(lo.contains("lo:"), "{lo}");
        assert!(only_loopback(&lo));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no text panics the /proc/stat, meminfo and net/dev parsers.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse_proc_stat(&text);
            let _ = parse_mem_total(&text);
            let _ = parse_net_dev(&text);
        }

        /// Guards that counters of any size (past u64 included) never panic the parsers.
        #[test]
        fn huge_counters_never_panic(fields in prop::collection::vec("[0-9]{1,21}", 0..12), cpus in 0usize..4) {
            let line = fields.join(" ");
            let mut stat = format!("cpu  {line}\n");
            for n in 0..cpus {
                stat.push_str(&format!("cpu{n} {line}\n"));
            }
            let _ = parse_proc_stat(&stat);
            let _ = parse_mem_total(&format!("MemTotal: {} kB\n", fields.first().map_or("", String::as_str)));
            let _ = parse_net_dev(&format!("h\nh\neth0: {line}\n"));
        }

        /// Guards the /proc/stat round trip: the first seven of the kernel's ten counters
        /// summed in nanoseconds, and the `cpuN` lines counted.
        #[test]
        fn proc_stat_round_trips(ticks in prop::array::uniform10(0u64..1 << 37), cpus in 1u32..256) {
            let line = ticks.map(|t| t.to_string()).join(" ");
            let mut text = format!("cpu  {line}\n");
            for n in 0..cpus {
                text.push_str(&format!("cpu{n} {line}\n"));
            }
            text.push_str("intr 1 2 3\nctxt 42\nbtime 1700000000\nprocesses 7\n");
            let want = SystemCpu {
                total_ns: ticks[..7].iter().sum::<u64>() * (1_000_000_000 / USER_HZ),
                online_cpus: cpus,
            };
            prop_assert_eq!(parse_proc_stat(&text), Some(want));
        }

        /// Guards the meminfo round trip: `MemTotal` in kB comes back in bytes.
        #[test]
        fn mem_total_round_trips(kb in 0u64..u64::MAX / 1024, free in any::<u64>()) {
            let text = format!("MemTotal:       {kb:>8} kB\nMemFree:        {free:>8} kB\n");
            prop_assert_eq!(parse_mem_total(&text), Some(kb * 1024));
        }

        /// Guards the net/dev round trip: received and sent bytes summed over every
        /// interface but `lo`.
        #[test]
        fn net_dev_round_trips(interfaces in prop::collection::btree_map(
            "lo|[a-z]{1,5}[0-9]{0,2}", (any::<u64>(), any::<u64>()), 0..6)
        ) {
            let mut text = "Inter-|   Receive |  Transmit\n face |bytes    packets|bytes\n".to_owned();
            let (mut rx, mut tx) = (0u64, 0u64);
            for (name, (r, t)) in &interfaces {
                text.push_str(&format!("{name:>6}:{r:8} 1 0 0 0 0 0 0 {t:8} 1 0 0 0 0 0 0\n"));
                if name != "lo" {
                    (rx, tx) = (rx.saturating_add(*r), tx.saturating_add(*t));
                }
            }
            prop_assert_eq!(parse_net_dev(&text), Some((rx, tx)));
        }
    }
}
