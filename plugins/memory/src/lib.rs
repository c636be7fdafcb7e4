//! Memory collector: RAM and swap totals, use and percentages (sysinfo, or `/proc/meminfo` under a host root).

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
            let m = Meminfo::from_file(path)
                .map_err(|e| Error::unavailable(format!("cannot read {}: {e}", path.display())))?;
            return Ok(from_meminfo(&m));
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
