//! Reads every GPU through NVML (nvml-wrapper), one field at a time so an unsupported field only empties itself.

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::{cuda_driver_version_major, cuda_driver_version_minor, Device, Nvml};
use vitals_plugin_api::sections::{
    GpuDevice, GpuProcess, GpuProcessKind, GpuSource, GpuStats, MigMode,
};

/// NVML's value for "MIG enabled" (`NVML_DEVICE_MIG_ENABLE`).
const MIG_ENABLED: u32 = 1;
/// Process names longer than this are cut by NVML; Linux's own limit on `comm` is far below.
const PROCESS_NAME_LENGTH: usize = 256;

/// One NVML reading and the fields NVML could not give.
#[derive(Debug)]
pub struct Reading {
    /// The section.
    pub stats: GpuStats,
    /// `GPU n: field: reason` (or `system: …`) for each field left empty.
    pub unsupported: Vec<String>,
}

/// Why the whole NVML reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// NVML could not count the GPUs.
    #[error("NVML cannot count the GPUs: {0}")]
    Count(String),
    /// NVML counts no GPU.
    #[error("NVML reports no GPU")]
    NoGpu,
}

impl ReadError {
    /// No GPU is a normal state ("unavailable"); anything else is a failure.
    pub fn into_error(self) -> vitals_plugin_api::Error {
        match self {
            ReadError::NoGpu => vitals_plugin_api::Error::unavailable(self),
            ReadError::Count(_) => vitals_plugin_api::Error::failed(self),
        }
    }
}

/// A readable reason for an NVML error (nvml-wrapper's own text, with the symbol for a missing one).
pub fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::FailedToLoadSymbol(s) => format!("the driver's NVML lacks a function ({s})"),
        NvmlError::NotSupported => "not supported by this GPU".to_owned(),
        // dlerror's text already names the file and the cause.
        NvmlError::LibloadingError(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// Collects the fields one device gives, noting each one it does not.
struct Fields<'a> {
    /// `GPU n` or `system`, to say where a field is missing.
    scope: String,
    unsupported: &'a mut Vec<String>,
}

impl Fields<'_> {
    fn get<T>(&mut self, field: &str, result: Result<T, NvmlError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.unsupported
                    .push(format!("{}: {field}: {}", self.scope, describe(&e)));
                None
            }
        }
    }
}

/// Reads every GPU NVML knows.
///
/// # Errors
/// [`ReadError`] when NVML cannot count the GPUs or counts none.
pub fn read(nvml: &Nvml) -> Result<Reading, ReadError> {
    let count = nvml
        .device_count()
        .map_err(|e| ReadError::Count(describe(&e)))?;
    if count == 0 {
        return Err(ReadError::NoGpu);
    }
    let mut unsupported = Vec::new();
    let gpus = (0..count)
        .map(|index| match nvml.device_by_index(index) {
            Ok(device) => read_device(nvml, &device, index, &mut unsupported),
            Err(e) => GpuDevice {
                index,
                error: Some(format!("NVML cannot open the GPU: {}", describe(&e))),
                ..GpuDevice::default()
            },
        })
        .collect();
    let mut system = Fields {
        scope: "system".to_owned(),
        unsupported: &mut unsupported,
    };
    let stats = GpuStats {
        source: GpuSource::Nvml,
        driver_version: system.get("driver_version", nvml.sys_driver_version()),
        nvml_version: system.get("nvml_version", nvml.sys_nvml_version()),
        cuda_driver_version: system
            .get("cuda_driver_version", nvml.sys_cuda_driver_version())
            .map(|v| {
                format!(
                    "{}.{}",
                    cuda_driver_version_major(v),
                    cuda_driver_version_minor(v)
                )
            }),
        gpus,
    };
    Ok(Reading { stats, unsupported })
}

fn read_device(
    nvml: &Nvml,
    device: &Device<'_>,
    index: u32,
    unsupported: &mut Vec<String>,
) -> GpuDevice {
    let mut f = Fields {
        scope: format!("GPU {index}"),
        unsupported,
    };
    let utilization = f.get("utilization", device.utilization_rates());
    let memory = f.get("memory", device.memory_info());
    let fan_speeds_percent = read_fans(device, &mut f);
    let mig_mode = f.get("mig_mode", device.mig_mode()).map(|m| MigMode {
        enabled: m.current == MIG_ENABLED,
        pending_enabled: m.pending == MIG_ENABLED,
    });
    GpuDevice {
        index,
        name: f.get("name", device.name()),
        uuid: f.get("uuid", device.uuid()),
        pci_bus_id: f.get("pci_bus_id", device.pci_info()).map(|p| p.bus_id),
        compute_capability: f
            .get("compute_capability", device.cuda_compute_capability())
            .map(|c| format!("{}.{}", c.major, c.minor)),
        pcie_generation: f.get("pcie_generation", device.current_pcie_link_gen()),
        pcie_max_generation: f.get("pcie_max_generation", device.max_pcie_link_gen()),
        pcie_link_width: f.get("pcie_link_width", device.current_pcie_link_width()),
        pcie_max_link_width: f.get("pcie_max_link_width", device.max_pcie_link_width()),
        utilization_percent: utilization.as_ref().map(|u| u.gpu),
        memory_utilization_percent: utilization.as_ref().map(|u| u.memory),
        memory_total_bytes: memory.as_ref().map(|m| m.total),
        memory_used_bytes: memory.as_ref().map(|m| m.used),
        memory_free_bytes: memory.as_ref().map(|m| m.free),
        memory_used_percent: memory
            .as_ref()
            .filter(|m| m.total > 0)
            .map(|m| m.used as f64 * 100.0 / m.total as f64),
        temperature_celsius: f.get("temperature", device.temperature(TemperatureSensor::Gpu)),
        power_draw_watts: f
            .get("power_draw", device.power_usage())
            .map(milliwatts_to_watts),
        power_limit_watts: f
            .get("power_limit", device.enforced_power_limit())
            .map(milliwatts_to_watts),
        fan_speed_percent: mean(&fan_speeds_percent),
        fan_speeds_percent,
        graphics_clock_mhz: f.get("graphics_clock", device.clock_info(Clock::Graphics)),
        memory_clock_mhz: f.get("memory_clock", device.clock_info(Clock::Memory)),
        performance_state: f
            .get("performance_state", device.performance_state())
            .map(|p| p.as_c())
            .filter(|p| *p < 16)
            .map(|p| format!("P{p}")),
        mig_mode,
        processes: merge_processes(
            f.get("compute_processes", device.running_compute_processes())
                .unwrap_or_default(),
            f.get("graphics_processes", device.running_graphics_processes())
                .unwrap_or_default(),
            |pid| process_name(nvml, pid),
        ),
        error: None,
    }
}

/// Each fan's speed; a board without fans (or a driver without the fan count) gives none.
fn read_fans(device: &Device<'_>, f: &mut Fields<'_>) -> Vec<u32> {
    match device.num_fans() {
        Ok(n) => (0..n)
            .filter_map(|i| f.get("fan_speed", device.fan_speed(i)))
            .collect(),
        // Drivers before the fan count still answer for fan 0.
        Err(NvmlError::FailedToLoadSymbol(_)) => f
            .get("fan_speed", device.fan_speed(0))
            .into_iter()
            .collect(),
        Err(e) => {
            f.get::<u32>("fan_speed", Err(e));
            Vec::new()
        }
    }
}

/// NVML reports power in milliwatts.
pub fn milliwatts_to_watts(milliwatts: u32) -> f64 {
    f64::from(milliwatts) / 1000.0
}

/// The rounded mean, `None` for no values.
pub fn mean(values: &[u32]) -> Option<u32> {
    if values.is_empty() {
        return None;
    }
    let sum: u64 = values.iter().map(|v| u64::from(*v)).sum();
    let n = values.len() as u64;
    Some(((sum + n / 2) / n) as u32)
}

/// NVML's name for the process, else the kernel's.
fn process_name(nvml: &Nvml, pid: u32) -> Option<String> {
    nvml.sys_process_name(pid, PROCESS_NAME_LENGTH)
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|s| s.trim_end().to_owned())
        })
}

/// One entry per PID: a process in both lists is `compute+graphics`.
pub fn merge_processes(
    compute: Vec<ProcessInfo>,
    graphics: Vec<ProcessInfo>,
    mut name: impl FnMut(u32) -> Option<String>,
) -> Vec<GpuProcess> {
    let mut out: Vec<GpuProcess> = Vec::new();
    let tagged = compute
        .into_iter()
        .map(|p| (p, GpuProcessKind::Compute))
        .chain(graphics.into_iter().map(|p| (p, GpuProcessKind::Graphics)));
    for (info, kind) in tagged {
        let used = match info.used_gpu_memory {
            UsedGpuMemory::Used(bytes) => Some(bytes),
            UsedGpuMemory::Unavailable => None,
        };
        if let Some(existing) = out.iter_mut().find(|p| p.pid == info.pid) {
            if existing.kind != kind {
                existing.kind = GpuProcessKind::ComputeGraphics;
            }
            existing.used_memory_bytes = existing.used_memory_bytes.max(used);
        } else {
            out.push(GpuProcess {
                pid: info.pid,
                name: name(info.pid),
                used_memory_bytes: used,
                kind,
            });
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32, used: UsedGpuMemory) -> ProcessInfo {
        ProcessInfo {
            pid,
            used_gpu_memory: used,
            gpu_instance_id: None,
            compute_instance_id: None,
        }
    }

    /// Guards the mW -> W conversion.
    #[test]
    fn converts_milliwatts() {
        assert_eq!(milliwatts_to_watts(287_450), 287.45);
        assert_eq!(milliwatts_to_watts(0), 0.0);
    }

    /// Guards the fan mean: rounded, none without fans.
    #[test]
    fn averages_fans() {
        assert_eq!(mean(&[54, 60]), Some(57));
        assert_eq!(mean(&[50, 51]), Some(51));
        assert_eq!(mean(&[]), None);
    }

    /// Guards the process merge: one entry per PID, kinds joined, unknown memory kept empty.
    #[test]
    fn merges_compute_and_graphics_processes() {
        let merged = merge_processes(
            vec![
                info(20, UsedGpuMemory::Used(100)),
                info(10, UsedGpuMemory::Used(5)),
            ],
            vec![
                info(10, UsedGpuMemory::Unavailable),
                info(30, UsedGpuMemory::Unavailable),
            ],
            |pid| (pid != 30).then(|| format!("p{pid}")),
        );
        assert_eq!(
            merged,
            vec![
                GpuProcess {
                    pid: 10,
                    name: Some("p10".into()),
                    used_memory_bytes: Some(5),
                    kind: GpuProcessKind::ComputeGraphics
                },
                GpuProcess {
                    pid: 20,
                    name: Some("p20".into()),
                    used_memory_bytes: Some(100),
                    kind: GpuProcessKind::Compute
                },
                GpuProcess {
                    pid: 30,
                    name: None,
                    used_memory_bytes: None,
                    kind: GpuProcessKind::Graphics
                },
            ]
        );
    }

    /// Guards the wording of NVML errors that reach the operator.
    #[test]
    fn describes_nvml_errors() {
        assert_eq!(
            describe(&NvmlError::NotSupported),
            "not supported by this GPU"
        );
        let missing = describe(&NvmlError::FailedToLoadSymbol(
            "nvmlDeviceGetMigMode".into(),
        ));
        assert!(missing.contains("nvmlDeviceGetMigMode"), "{missing}");
    }
}
