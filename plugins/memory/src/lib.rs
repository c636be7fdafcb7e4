//! Memory collector: RAM and swap totals, use and percentages (sysinfo, or `/proc/meminfo` under a host root).

use std::io::Read as _;
use std::path::PathBuf;

use procfs_core::{FromRead as _, Meminfo};
use sysinfo::{MemoryRefreshKind, System};
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::{percent, MemoryStats};

/// The `[collectors.memory.config]` table (no options yet).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {}

/// Keeps one `System` alive between collects.
pub struct MemoryCollector {
    system: System,
    /// Under a host root: the host's `meminfo`, read instead of this system's.
    meminfo: Option<PathBuf>,
}

/// The most bytes of a `meminfo` that are read (kernels write about 1.5 KiB).
pub const MAX_MEMINFO_BYTES: u64 = 64 * 1024;

/// Parses a `meminfo` text into the section (procfs-core's parse, in bytes).
///
/// # Errors
/// A sentence naming the line procfs-core cannot read safely (a key ending in a non-ASCII
/// character, or a figure whose bytes overflow 64 bits), or procfs-core's own error (a
/// required key missing, a value that is not a number).
pub fn parse_meminfo(text: &[u8]) -> Result<MemoryStats, String> {
    // procfs-core cuts each key's last byte (a panic inside a multi-byte character) and
    // multiplies each figure by its unit unchecked (a panic in a debug build, a wrapped
    // figure otherwise): such lines are refused before it sees them.
    for (n, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(line);
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else { continue };
        let value = fields.next().and_then(|v| v.parse::<u64>().ok());
        let factor: u64 = match fields.next() {
            Some("KiB" | "kiB" | "kB" | "KB") => 1 << 10,
            Some("MiB" | "miB" | "MB" | "mB") => 1 << 20,
            Some("GiB" | "giB" | "GB" | "gB") => 1 << 30,
            _ => 1,
        };
        if !key.ends_with(|c: char| c.is_ascii())
            || value.is_some_and(|v| v.checked_mul(factor).is_none())
        {
            return Err(format!(
                "line {} is not a meminfo line: `{}`",
                n + 1,
                line.chars().take(80).collect::<String>()
            ));
        }
    }
    let m = Meminfo::from_read(text).map_err(|e| e.to_string())?;
    Ok(from_meminfo(&m))
}

/// The section from one `meminfo` (procfs-core's parse, in bytes).
pub fn from_meminfo(m: &Meminfo) -> MemoryStats {
    let total = m.mem_total;
    let available = m.mem_available.unwrap_or(m.mem_free).min(total);
    let used = total.saturating_sub(available);
    let swap_used = m.swap_total.saturating_sub(m.swap_free);
    MemoryStats {
        total_bytes: total,
        used_bytes: used,
        free_bytes: m.mem_free,
        available_bytes: available,
        used_percent: percent(used, total),
        swap_total_bytes: m.swap_total,
        swap_used_bytes: swap_used,
        swap_free_bytes: m.swap_free,
        swap_used_percent: percent(swap_used, m.swap_total),
    }
}

impl Collector for MemoryCollector {
    const NAME: &'static str = "memory";
    const DESCRIPTION: &'static str = "RAM and swap: total, used, free, available and percent";
    type Config = Config;
    type Section = MemoryStats;

    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Self {
            system: System::new(),
            meminfo: None,
        })
    }

    /// Under a host root: its `proc/meminfo`.
    fn create(config: Config, init: &InitParams) -> Result<Self, Error> {
        let mut collector = Self::new(config)?;
        if init.host_root.is_some() {
            collector.meminfo = Some(init.host_path("/proc/meminfo"));
        }
        Ok(collector)
    }

    fn collect(&mut self) -> Result<MemoryStats, Error> {
        if let Some(path) = &self.meminfo {
            let mut text = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_MEMINFO_BYTES).read_to_end(&mut text))
                .map_err(|e| Error::unavailable(format!("cannot read {}: {e}", path.display())))?;
            return parse_meminfo(&text)
                .map_err(|e| Error::unavailable(format!("cannot read {}: {e}", path.display())));
        }
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        let s = &self.system;
        let total = s.total_memory();
        if total == 0 {
            return Err(Error::unavailable("the OS reports no memory"));
        }
        let available = s.available_memory();
        let used = total.saturating_sub(available);
        let (swap_total, swap_used) = (s.total_swap(), s.used_swap());
        Ok(MemoryStats {
            total_bytes: total,
            used_bytes: used,
            free_bytes: s.free_memory(),
            available_bytes: available,
            used_percent: percent(used, total),
            swap_total_bytes: swap_total,
            swap_used_bytes: swap_used,
            swap_free_bytes: s.free_swap(),
            swap_used_percent: percent(swap_used, swap_total),
        })
    }

    fn series() -> Vec<Series> {
        vec![
            Series::new("used_percent", "/used_percent", "percent"),
            Series::new("used_bytes", "/used_bytes", "bytes"),
            Series::new("swap_used_percent", "/swap_used_percent", "percent"),
        ]
    }
}

export_collector!(MemoryCollector);

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the host-root path: under a root the section is the root's `proc/meminfo`
    /// (values in bytes), not this machine's.
    #[test]
    fn reads_meminfo_under_a_host_root() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("proc")).expect("mkdir");
        std::fs::write(
            root.path().join("proc/meminfo"),
            [
                "MemTotal: 1000 kB",
                "MemFree: 100 kB",
                "MemAvailable: 250 kB",
                "Buffers: 1 kB",
                "Cached: 1 kB",
                "SwapCached: 0 kB",
                "Active: 1 kB",
                "Inactive: 1 kB",
                "SwapTotal: 400 kB",
                "SwapFree: 300 kB",
                "Dirty: 0 kB",
                "Writeback: 0 kB",
                "Mapped: 1 kB",
                "Slab: 1 kB",
                "Committed_AS: 1 kB",
                "VmallocTotal: 1 kB",
                "VmallocUsed: 0 kB",
                "VmallocChunk: 0 kB",
            ]
            .join("\n"),
        )
        .expect("write");
        let mut init = InitParams::new("memory", serde_json::json!({}));
        init.host_root = Some(root.path().to_owned());
        let mut c = MemoryCollector::create(Config::default(), &init).expect("create");
        let m = c.collect().expect("collect");
        assert_eq!(m.total_bytes, 1000 * 1024);
        assert_eq!(m.available_bytes, 250 * 1024);
        assert_eq!(m.used_bytes, 750 * 1024);
        assert_eq!(m.free_bytes, 100 * 1024);
        assert_eq!(m.swap_used_bytes, 100 * 1024);
        assert!((m.used_percent - 75.0).abs() < 1e-9, "{}", m.used_percent);
    }

    /// Guards the lines procfs-core would panic on (found by the property tests): a key
    /// ending inside a multi-byte character, a figure whose bytes overflow 64 bits.
    #[test]
    fn lines_procfs_core_panics_on_are_refused() {
        let overflow = "MemAvailable: 613158602721625062 kB\n";
        let err = parse_meminfo(overflow.as_bytes()).expect_err("overflow");
        assert!(err.contains("line 1 is not a meminfo line"), "{err}");
        let err = parse_meminfo("MemTotal: 1 kB\né 5\n".as_bytes()).expect_err("non-ASCII key");
        assert!(err.contains("line 2"), "{err}");
        assert!(
            parse_meminfo(b"MemTotal: 18014398509481983 kB\n").is_err_and(|e| !e.contains("line"))
        );
    }

    /// Guards the host-root path against a hostile `meminfo`: "unavailable", not a panic.
    #[test]
    fn a_hostile_meminfo_under_a_host_root_is_unavailable() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("proc")).expect("mkdir");
        std::fs::write(
            root.path().join("proc/meminfo"),
            "MemTotal: 99999999999999999 kB\n",
        )
        .expect("write");
        let mut init = InitParams::new("memory", serde_json::json!({}));
        init.host_root = Some(root.path().to_owned());
        let mut c = MemoryCollector::create(Config::default(), &init).expect("create");
        let err = c.collect().expect_err("refused");
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("not a meminfo line")),
            "{err}"
        );
    }

    /// Guards the plugin contract and the basic invariants of the memory section.
    #[test]
    fn honours_the_plugin_contract() {
        let report = vitals_plugin_api::testing::assert_contract::<MemoryCollector>();
        let m: MemoryStats =
            serde_json::from_value(report.last_section().expect("a section").clone())
                .expect("MemoryStats");
        assert!(m.total_bytes > 0);
        assert!(m.used_bytes <= m.total_bytes);
        assert!(m.available_bytes <= m.total_bytes);
        assert!(m.swap_used_bytes <= m.swap_total_bytes);
        assert!((0.0..=100.0).contains(&m.used_percent));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// The keys procfs-core requires in a `meminfo`, besides the five the section reads.
    const OTHER_KEYS: &[&str] = &[
        "Buffers",
        "Cached",
        "SwapCached",
        "Active",
        "Inactive",
        "Dirty",
        "Writeback",
        "Mapped",
        "Slab",
        "Committed_AS",
        "VmallocTotal",
        "VmallocUsed",
        "VmallocChunk",
    ];

    /// The section's invariants, whatever the file said.
    fn check(m: &MemoryStats) -> Result<(), TestCaseError> {
        prop_assert!(m.used_bytes <= m.total_bytes);
        prop_assert!(m.available_bytes <= m.total_bytes);
        prop_assert!(
            (0.0..=100.0).contains(&m.used_percent),
            "{}",
            m.used_percent
        );
        prop_assert!(m.swap_used_bytes <= m.swap_total_bytes);
        Ok(())
    }

    proptest! {
        /// Guards that no bytes panic the meminfo parse or the section built from it.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(m) = parse_meminfo(&bytes) {
                check(&m)?;
            }
        }

        /// Guards that lines of any key (non-ASCII included), number and unit never panic.
        #[test]
        fn any_lines_never_panic(lines in prop::collection::vec(
            ("\\PC{1,6}:?", "[0-9]{1,20}", prop::option::of("kB|MB|GiB|B|x")), 0..24)
        ) {
            let text: String = lines
                .iter()
                .map(|(k, v, u)| format!("{k} {v} {}\n", u.as_deref().unwrap_or_default()))
                .collect();
            if let Ok(m) = parse_meminfo(text.as_bytes()) {
                check(&m)?;
            }
        }

        /// Guards that a meminfo with every key and any value (in kB, past u64 in bytes
        /// included) never panics, and the section keeps its invariants.
        #[test]
        fn any_values_never_panic(values in prop::collection::vec(any::<u64>(), 18), with_available in any::<bool>()) {
            let mut keys = vec!["MemTotal", "MemFree", "SwapTotal", "SwapFree"];
            keys.extend(OTHER_KEYS);
            if with_available {
                keys.push("MemAvailable");
            }
            let text: String = keys.iter().zip(&values).map(|(k, v)| format!("{k}: {v} kB\n")).collect();
            if let Ok(m) = parse_meminfo(text.as_bytes()) {
                check(&m)?;
            }
        }

        /// Guards the round trip: the kernel's kB figures come back in bytes, used is total
        /// less available (free without `MemAvailable`, on kernels before 3.14).
        #[test]
        fn kernel_formatted_meminfo_round_trips(
            total in 1u64..1 << 40,
            free_part in 0.0f64..=1.0,
            available_part in prop::option::of(0.0f64..=1.0),
            swap_total in 0u64..1 << 40,
            swap_free_part in 0.0f64..=1.0,
        ) {
            let free = (total as f64 * free_part) as u64;
            let available = available_part.map(|p| (total as f64 * p) as u64);
            let swap_free = (swap_total as f64 * swap_free_part) as u64;
            let mut text = format!("MemTotal:       {total:>8} kB\nMemFree:        {free:>8} kB\n");
            if let Some(a) = available {
                text += &format!("MemAvailable:   {a:>8} kB\n");
            }
            text += &format!("SwapTotal:      {swap_total:>8} kB\nSwapFree:       {swap_free:>8} kB\n");
            for k in OTHER_KEYS {
                text += &format!("{:<16}{:>8} kB\n", format!("{k}:"), 1);
            }
            text += "HugePages_Total:       0\nHugepagesize:       2048 kB\n";
            let m = parse_meminfo(text.as_bytes()).map_err(TestCaseError::fail)?;
            let avail = available.unwrap_or(free);
            prop_assert_eq!(m.total_bytes, total * 1024);
            prop_assert_eq!(m.free_bytes, free * 1024);
            prop_assert_eq!(m.available_bytes, avail * 1024);
            prop_assert_eq!(m.used_bytes, (total - avail) * 1024);
            prop_assert_eq!(m.swap_total_bytes, swap_total * 1024);
            prop_assert_eq!(m.swap_used_bytes, (swap_total - swap_free) * 1024);
            check(&m)?;
        }
    }
}
