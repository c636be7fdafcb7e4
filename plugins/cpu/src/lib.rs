//! CPU collector: model, cores, frequency, usage per core, temperatures and load average (sysinfo, /sys).

use std::path::{Path, PathBuf};

use sysinfo::{Components, CpuRefreshKind, System};
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::{CoreStats, CpuStats, LoadAverage, Temperature};

/// The `[collectors.cpu.config]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Read temperature sensors (hwmon); turn off where reading them is slow.
    pub temperatures: Option<bool>,
    /// Root of the sysfs tree to read `cpufreq` from (test-only; default `/sys`).
    pub sys_root: Option<PathBuf>,
}

/// Keeps one `System` alive so CPU usage is a real delta between collects.
pub struct CpuCollector {
    system: System,
    components: Option<Components>,
    physical_cores: Option<u32>,
    max_frequency_mhz: Option<u64>,
    /// Whether the kernel reports the current frequency (`cpufreq`); without it the
    /// frequency is the nominal one from `/proc/cpuinfo`, read once.
    frequency_changes: bool,
    collects: u64,
}

/// Collects after which the sensor list is scanned again (sensors come and go rarely);
/// in between only the known sensors are read.
pub const SENSOR_SCAN_EVERY: u64 = 60;

/// Sensor chips that measure the CPU package or cores.
const CPU_SENSOR_CHIPS: &[&str] = &[
    "coretemp",
    "k10temp",
    "k8temp",
    "zenpower",
    "cpu_thermal",
    "cpu-thermal",
];

/// True when a sensor label belongs to a CPU temperature chip.
pub fn is_cpu_sensor(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    CPU_SENSOR_CHIPS.iter().any(|chip| lower.starts_with(chip))
}

/// Parses a `cpuinfo_max_freq` file (kHz) into MHz.
pub fn parse_max_freq_khz(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|k| *k > 0)
        .map(|khz| khz / 1000)
}

fn read_max_frequency(sys_root: &Path, logical: usize) -> Option<u64> {
    (0..logical.max(1))
        .filter_map(|i| {
            let path = sys_root.join(format!(
                "devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq"
            ));
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| parse_max_freq_khz(&t))
        })
        .max()
}

impl Collector for CpuCollector {
    const NAME: &'static str = "cpu";
    const DESCRIPTION: &'static str =
        "CPU model, cores, frequency, usage, temperatures and load average";
    type Config = Config;
    type Section = CpuStats;

    fn new(config: Config) -> Result<Self, Error> {
        let mut system = System::new();
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage().with_frequency());
        let sys_root = config.sys_root.unwrap_or_else(|| PathBuf::from("/sys"));
        let logical = system.cpus().len();
        let frequency_changes = sys_root
            .join("devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
            .exists();
        let components = config
            .temperatures
            .unwrap_or(true)
            .then(Components::new_with_refreshed_list);
        Ok(Self {
            max_frequency_mhz: read_max_frequency(&sys_root, logical),
            physical_cores: System::physical_core_count().map(|n| n as u32),
            system,
            components,
            frequency_changes,
            collects: 0,
        })
    }

    /// Under a host root: `cpufreq` from its `sys`. Usage, cores and load come from
    /// `/proc/stat`, `/proc/cpuinfo` and `/proc/loadavg`, which the kernel reports for the
    /// whole machine in every namespace.
    fn create(mut config: Config, init: &InitParams) -> Result<Self, Error> {
        if init.host_root.is_some() {
            let sys = config
                .sys_root
                .take()
                .unwrap_or_else(|| PathBuf::from("/sys"));
            config.sys_root = Some(init.host_path(sys));
        }
        Self::new(config)
    }

    fn collect(&mut self) -> Result<CpuStats, Error> {
        self.collects += 1;
        let temperatures = self.read_temperatures();
        let kind = CpuRefreshKind::nothing().with_cpu_usage();
        self.system
            .refresh_cpu_specifics(if self.frequency_changes {
                kind.with_frequency()
            } else {
                kind
            });
        let cpus = self.system.cpus();
        if cpus.is_empty() {
            return Err(Error::unavailable("the OS reports no CPUs"));
        }
        let cores: Vec<CoreStats> = cpus
            .iter()
            .enumerate()
            .map(|(i, c)| CoreStats {
                index: i as u32,
                usage_percent: c.cpu_usage(),
                frequency_mhz: c.frequency(),
            })
            .collect();
        let frequency_mhz = cores.iter().map(|c| c.frequency_mhz).sum::<u64>() / cores.len() as u64;
        let temperature_celsius = temperatures
            .iter()
            .find(|t| t.label.to_ascii_lowercase().contains("package") || t.label.contains("Tctl"))
            .or_else(|| {
                temperatures
                    .iter()
                    .max_by(|a, b| a.temperature_celsius.total_cmp(&b.temperature_celsius))
            })
            .map(|t| t.temperature_celsius);
        let load = System::load_average();
        Ok(CpuStats {
            model: cpus[0].brand().trim().to_owned(),
            vendor: cpus[0].vendor_id().to_owned(),
            physical_cores: self.physical_cores,
            logical_cores: cpus.len() as u32,
            frequency_mhz,
            max_frequency_mhz: self.max_frequency_mhz,
            usage_percent: self.system.global_cpu_usage(),
            cores,
            temperatures,
            temperature_celsius,
            load_average: LoadAverage {
                one: load.one,
                five: load.five,
                fifteen: load.fifteen,
            },
        })
    }

    fn series() -> Vec<Series> {
        vec![
            Series::new("usage_percent", "/usage_percent", "percent"),
            Series::new("temperature_celsius", "/temperature_celsius", "celsius"),
            Series::new("load_average_1m", "/load_average/one", "load"),
        ]
    }
}

impl CpuCollector {
    fn read_temperatures(&mut self) -> Vec<Temperature> {
        let Some(components) = self.components.as_mut() else {
            return Vec::new();
        };
        if self.collects % SENSOR_SCAN_EVERY == 0 {
            components.refresh(true);
        } else {
            components.iter_mut().for_each(|c| c.refresh());
        }
        components
            .iter()
            .filter(|c| is_cpu_sensor(c.label()))
            .filter_map(|c| {
                Some(Temperature {
                    label: c.label().to_owned(),
                    temperature_celsius: c.temperature().filter(|t| t.is_finite())?,
                    critical_celsius: c.critical().filter(|t| t.is_finite()),
                })
            })
            .collect()
    }
}

export_collector!(CpuCollector);

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the plugin contract: default config, unknown keys refused, collect never panics.
    #[test]
    fn honours_the_plugin_contract() {
        let report = vitals_plugin_api::testing::assert_contract::<CpuCollector>();
        let section: CpuStats =
            serde_json::from_value(report.last_section().expect("a section").clone())
                .expect("CpuStats");
        assert!(section.logical_cores >= 1);
        assert_eq!(section.cores.len(), section.logical_cores as usize);
        assert!((0.0..=100.0).contains(&section.usage_percent));
    }

    /// Guards the sensor filter: only CPU chips count as CPU temperatures.
    #[test]
    fn recognises_cpu_sensor_chips() {
        assert!(is_cpu_sensor("coretemp Package id 0"));
        assert!(is_cpu_sensor("k10temp Tctl"));
        assert!(!is_cpu_sensor("nvme Composite"));
        assert!(!is_cpu_sensor("acpitz temp1"));
    }

    /// Guards the kHz -> MHz conversion of cpufreq files.
    #[test]
    fn parses_cpufreq_max() {
        assert_eq!(parse_max_freq_khz("3600000\n"), Some(3600));
        assert_eq!(parse_max_freq_khz("0"), None);
        assert_eq!(parse_max_freq_khz("garbage"), None);
    }

    /// Guards reading max frequency from a fixture sysfs root.
    #[test]
    fn reads_max_frequency_from_a_sys_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (cpu, khz) in [(0, "2400000"), (1, "3100000")] {
            let d = dir
                .path()
                .join(format!("devices/system/cpu/cpu{cpu}/cpufreq"));
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("cpuinfo_max_freq"), khz).expect("write");
        }
        assert_eq!(read_max_frequency(dir.path(), 2), Some(3100));
        assert_eq!(read_max_frequency(&dir.path().join("none"), 2), None);
    }

    /// Guards the host-root path: `cpufreq` is read from the root's `sys`.
    #[test]
    fn reads_cpufreq_under_a_host_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = root.path().join("sys/devices/system/cpu/cpu0/cpufreq");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("cpuinfo_max_freq"), "4321000").expect("write");
        let mut init = InitParams::new("cpu", serde_json::json!({}));
        init.host_root = Some(root.path().to_owned());
        let config = Config {
            temperatures: Some(false),
            sys_root: None,
        };
        let c = CpuCollector::create(config, &init).expect("create");
        assert_eq!(c.max_frequency_mhz, Some(4321));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no text panics the cpufreq parser or the sensor filter.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,60}|[0-9]{1,22}") {
            let _ = parse_max_freq_khz(&text);
            let _ = is_cpu_sensor(&text);
        }

        /// Guards the round trip: a sysfs kHz figure comes back in whole MHz.
        #[test]
        fn cpufreq_round_trips(khz in 1u64..u64::MAX, newline in any::<bool>()) {
            let text = format!("{khz}{}", if newline { "\n" } else { "" });
            prop_assert_eq!(parse_max_freq_khz(&text), Some(khz / 1000));
        }
    }
}
