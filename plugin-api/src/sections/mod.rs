//! Typed sections of the built-in collectors, shared by plugins, host and tests.
//!
//! Every quantity carries its unit in the field name, in base units (bytes, seconds, MHz as
//! reported by the kernel). Conversion to MB/GB is the dashboard's job.

use serde::{Deserialize, Serialize};

mod disk;
mod docker;
mod gpu;
mod network;
mod process;

#[allow(unused_imports)] // empty until that collector lands
pub use disk::*;
#[allow(unused_imports)] // empty until that collector lands
pub use docker::*;
#[allow(unused_imports)] // empty until that collector lands
pub use gpu::*;
#[allow(unused_imports)] // empty until that collector lands
pub use network::*;
#[allow(unused_imports)] // empty until that collector lands
pub use process::*;

/// The `cpu` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    /// The CPU model name (brand string).
    pub model: String,
    /// The CPU vendor id.
    pub vendor: String,
    /// Physical cores, when the OS reports them.
    pub physical_cores: Option<u32>,
    /// Logical CPUs (hardware threads).
    pub logical_cores: u32,
    /// Mean current frequency over all logical CPUs.
    pub frequency_mhz: u64,
    /// The highest frequency the CPU can run at, when the kernel reports it.
    pub max_frequency_mhz: Option<u64>,
    /// Total usage over all logical CPUs since the previous collect.
    pub usage_percent: f32,
    /// Usage per logical CPU.
    pub cores: Vec<CoreStats>,
    /// Temperature sensors of the CPU (coretemp, k10temp, …); empty when none exist.
    pub temperatures: Vec<Temperature>,
    /// The package (or hottest) CPU temperature, when a sensor exists.
    pub temperature_celsius: Option<f32>,
    /// Load average over 1, 5 and 15 minutes.
    pub load_average: LoadAverage,
}

/// One logical CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreStats {
    /// The logical CPU number.
    pub index: u32,
    /// Usage since the previous collect.
    pub usage_percent: f32,
    /// Current frequency.
    pub frequency_mhz: u64,
}

/// One temperature sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// The sensor label, e.g. `coretemp Package id 0`.
    pub label: String,
    /// The current reading.
    pub temperature_celsius: f32,
    /// The critical threshold, when known.
    pub critical_celsius: Option<f32>,
}

/// System load average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    /// Over one minute.
    pub one: f64,
    /// Over five minutes.
    pub five: f64,
    /// Over fifteen minutes.
    pub fifteen: f64,
}

/// The `memory` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Installed RAM.
    pub total_bytes: u64,
    /// RAM in use (total minus available).
    pub used_bytes: u64,
    /// RAM not used for anything.
    pub free_bytes: u64,
    /// RAM available to start new work without swapping.
    pub available_bytes: u64,
    /// `used_bytes` as a share of `total_bytes`.
    pub used_percent: f64,
    /// Swap space.
    pub swap_total_bytes: u64,
    /// Swap in use.
    pub swap_used_bytes: u64,
    /// Swap not in use.
    pub swap_free_bytes: u64,
    /// `swap_used_bytes` as a share of `swap_total_bytes` (0 without swap).
    pub swap_used_percent: f64,
}

/// The `system` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// The host name.
    pub hostname: String,
    /// The OS name, e.g. `Debian GNU/Linux`.
    pub os_name: String,
    /// The OS version, e.g. `12`.
    pub os_version: String,
    /// The long OS description, e.g. `Linux 12 Debian GNU/Linux`.
    pub os_long_name: String,
    /// The kernel release.
    pub kernel_version: String,
    /// The CPU architecture, e.g. `x86_64`.
    pub architecture: String,
    /// Seconds since boot.
    pub uptime_seconds: u64,
    /// Boot time as seconds since the Unix epoch.
    pub boot_time_unix_seconds: u64,
}

/// Percentage of `part` in `whole`, 0 when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
