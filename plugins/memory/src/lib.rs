//! Memory collector: RAM and swap totals, use and percentages (sysinfo, /proc/meminfo).

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
}

impl Collector for MemoryCollector {
    const NAME: &'static str = "memory";
    const DESCRIPTION: &'static str = "RAM and swap: total, used, free, available and percent";
    type Config = Config;
    type Section = MemoryStats;

    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Self {
            system: System::new(),
        })
    }

    fn collect(&mut self) -> Result<MemoryStats, Error> {
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
