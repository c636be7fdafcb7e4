//! System info collector: hostname, OS, kernel, architecture, uptime and boot time (sysinfo, uname).

use sysinfo::System;
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::SystemInfo;

/// The `[collectors.system.config]` table (no options yet).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {}

/// Reads the static facts once and the uptime on every collect.
pub struct SystemCollector {
    info: SystemInfo,
}

fn or_unknown(value: Option<String>) -> String {
    value.unwrap_or_else(|| "unknown".to_owned())
}

impl Collector for SystemCollector {
    const NAME: &'static str = "system";
    const DESCRIPTION: &'static str = "Hostname, OS and kernel version, uptime and boot time";
    type Config = Config;
    type Section = SystemInfo;

    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Self {
            info: SystemInfo {
                hostname: or_unknown(System::host_name()),
                os_name: or_unknown(System::name()),
                os_version: or_unknown(System::os_version()),
                os_long_name: or_unknown(System::long_os_version()),
                kernel_version: or_unknown(System::kernel_version()),
                architecture: System::cpu_arch(),
                uptime_seconds: 0,
                boot_time_unix_seconds: System::boot_time(),
            },
        })
    }

    fn collect(&mut self) -> Result<SystemInfo, Error> {
        // The host name can change at run time; the rest is fixed until reboot.
        if let Some(name) = System::host_name() {
            self.info.hostname = name;
        }
        self.info.uptime_seconds = System::uptime();
        Ok(self.info.clone())
    }
}

export_collector!(SystemCollector);

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the plugin contract and that uptime and boot time agree with the clock.
    #[test]
    fn honours_the_plugin_contract() {
        let report = vitals_plugin_api::testing::assert_contract::<SystemCollector>();
        let s: SystemInfo =
            serde_json::from_value(report.last_section().expect("a section").clone())
                .expect("SystemInfo");
        assert!(!s.hostname.is_empty());
        assert!(s.uptime_seconds > 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let drift = (s.boot_time_unix_seconds + s.uptime_seconds).abs_diff(now);
        assert!(drift <= 5, "boot time + uptime is {drift} s off the clock");
    }
}
