//! Reads every GPU through NVML (nvml-wrapper), one field at a time so an unsupported field only empties itself; older calls where a driver lacks the newer ones, remembered per GPU.

pub mod events;
pub mod health;
pub mod mig;
pub mod raw;

use std::collections::VecDeque;
use std::path::PathBuf;

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::{cuda_driver_version_major, cuda_driver_version_minor, Device, Nvml};
use vitals_plugin_api::sections::{
    GpuDevice, GpuProcess, GpuProcessKind, GpuSource, GpuStats, MigMode, XidEvent, MAX_GPU_EVENTS,
};
use vitals_plugin_api::SectionEvent;

use crate::cgroup;
use events::XidWatch;

/// NVML's value for "MIG enabled" (`NVML_DEVICE_MIG_ENABLE`).
const MIG_ENABLED: u32 = 1;
/// Process names longer than this are cut by NVML; Linux's own limit on `comm` is far below.
const PROCESS_NAME_LENGTH: usize = 256;
/// Processes whose container is looked up per collect, at most (one small file read each).
pub const MAX_CONTAINER_LOOKUPS: usize = 1024;
/// What `utilization_note` says for a GPU in MIG mode.
pub const MIG_UTILIZATION_NOTE: &str = "not reported for a GPU in MIG mode: see its MIG devices";

/// One NVML reading and the fields NVML could not give.
#[derive(Debug)]
pub struct Reading {
    /// The section.
    pub stats: GpuStats,
    /// `GPU n: field: reason` (or `system: …`) for each field left empty.
    pub unsupported: Vec<String>,
    /// Things the operator must hear about (XID errors), one line each.
    pub warnings: Vec<String>,
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

/// True when the call itself is missing (an older driver, or WSL's stubs): an older call may work.
pub fn is_missing(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound
    )
}

/// Collects the fields one device gives, noting each one it does not.
pub struct Fields<'a> {
    /// `GPU n` or `system`, to say where a field is missing.
    scope: String,
    unsupported: &'a mut Vec<String>,
}

impl Fields<'_> {
    /// The value, or `None` with a note saying why.
    pub fn get<T>(&mut self, field: &str, result: Result<T, NvmlError>) -> Option<T> {
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

/// Which memory call works on a GPU: `nvmlDeviceGetMemoryInfo_v2`, else the version 1 call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MemoryApi {
    /// `nvmlDeviceGetMemoryInfo_v2` (R510 on): reserved memory apart.
    #[default]
    V2,
    /// `nvmlDeviceGetMemoryInfo`: `used` includes the reserved memory.
    V1,
}

/// Which process calls work on a GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProcessApi {
    /// `nvmlDeviceGet…RunningProcesses_v3` (R510 on).
    #[default]
    V3,
    /// The `_v2` calls (R470), with MIG instance ids.
    V2,
    /// The first calls, without MIG instance ids.
    V1,
}

/// What the collector remembers about one GPU between collects.
#[derive(Debug, Clone, Default)]
pub struct GpuMemo {
    /// The memory call that works on it.
    pub memory: MemoryApi,
    /// The process calls that work on it.
    pub processes: ProcessApi,
    /// XID errors received for it; `None` when it is not registered for them.
    pub xid_errors: Option<u64>,
    /// The last XID error received for it.
    pub last_xid: Option<XidEvent>,
}

/// Reads GPUs through one loaded NVML, remembering per GPU which calls work and counting XID errors.
pub struct NvmlReader {
    nvml: Nvml,
    memos: Vec<GpuMemo>,
    xid: Option<XidWatch>,
    /// XID registration has been tried (once, at the first reading).
    xid_tried: bool,
    recent_xids: VecDeque<SectionEvent>,
    proc_root: PathBuf,
}

impl Drop for NvmlReader {
    fn drop(&mut self) {
        if let Some(x) = &mut self.xid {
            x.free(&self.nvml);
        }
    }
}

impl NvmlReader {
    /// A reader over a loaded NVML; containers are looked up under `proc_root` (`/proc`).
    pub fn new(nvml: Nvml, proc_root: PathBuf) -> Self {
        Self {
            nvml,
            memos: Vec::new(),
            xid: None,
            xid_tried: false,
            recent_xids: VecDeque::new(),
            proc_root,
        }
    }

    /// What is remembered about GPU `index`.
    pub fn memo(&self, index: u32) -> Option<&GpuMemo> {
        self.memos.get(index as usize)
    }

    /// Reads every GPU NVML knows.
    ///
    /// # Errors
    /// [`ReadError`] when NVML cannot count the GPUs or counts none.
    pub fn read(&mut self) -> Result<Reading, ReadError> {
        let nvml = &self.nvml;
        let count = nvml
            .device_count()
            .map_err(|e| ReadError::Count(describe(&e)))?;
        if count == 0 {
            return Err(ReadError::NoGpu);
        }
        if self.memos.len() != count as usize {
            self.memos.resize(count as usize, GpuMemo::default());
        }
        let mut unsupported = Vec::new();
        let mut warnings = Vec::new();
        if !self.xid_tried {
            self.xid_tried = true;
            self.xid = register_xids(nvml, count, &mut self.memos, &mut unsupported);
        }
        if let Some(watch) = &self.xid {
            match watch.drain(nvml) {
                Ok(xids) => {
                    for (gpu, xid, time_ms) in xids {
                        if let Some(m) = self.memos.get_mut(gpu as usize) {
                            m.xid_errors = Some(m.xid_errors.unwrap_or(0) + 1);
                            m.last_xid = Some(XidEvent { gpu, xid, time_ms });
                        }
                        let text = format!("GPU {gpu}: XID {xid} ({})", events::xid_meaning(xid));
                        warnings.push(text.clone());
                        if self.recent_xids.len() == MAX_GPU_EVENTS {
                            self.recent_xids.pop_front();
                        }
                        self.recent_xids.push_back(SectionEvent {
                            time_unix_ms: i64::try_from(time_ms).unwrap_or(i64::MAX),
                            kind: "xid".to_owned(),
                            text,
                        });
                    }
                }
                Err(e) => unsupported.push(format!("system: XID events: {}", describe(&e))),
            }
        }
        let mut lookups = MAX_CONTAINER_LOOKUPS;
        let gpus = (0..count)
            .map(|index| match nvml.device_by_index(index) {
                Ok(device) => {
                    let memo = &mut self.memos[index as usize];
                    let mut gpu = read_device(nvml, &device, index, memo, &mut unsupported);
                    for p in &mut gpu.processes {
                        if lookups == 0 {
                            break;
                        }
                        lookups -= 1;
                        p.container = cgroup::container_of(&self.proc_root, p.pid);
                    }
                    gpu
                }
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
            events: self.recent_xids.iter().cloned().collect(),
        };
        Ok(Reading {
            stats,
            unsupported,
            warnings,
        })
    }
}

/// Creates the XID event set and registers every GPU that can deliver XID errors.
fn register_xids(
    nvml: &Nvml,
    count: u32,
    memos: &mut [GpuMemo],
    unsupported: &mut Vec<String>,
) -> Option<XidWatch> {
    let mut watch = match XidWatch::new(nvml) {
        Ok(w) => w,
        Err(e) => {
            unsupported.push(format!("system: XID events: {}", describe(&e)));
            return None;
        }
    };
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        match watch.register(nvml, &device, index) {
            Ok(()) => memos[index as usize].xid_errors = Some(0),
            Err(e) => unsupported.push(format!("GPU {index}: XID events: {}", describe(&e))),
        }
    }
    if watch.is_empty() {
        watch.free(nvml);
        return None;
    }
    Some(watch)
}

/// Memory through the call that works on this GPU, stepping down once to the version 1 call:
/// `(total, used, free, reserved)`.
fn read_memory(
    nvml: &Nvml,
    device: &Device<'_>,
    api: &mut MemoryApi,
    f: &mut Fields<'_>,
) -> Option<(u64, u64, u64, Option<u64>)> {
    if *api == MemoryApi::V2 {
        match device.memory_info() {
            Ok(m) => return Some((m.total, m.used, m.free, Some(m.reserved))),
            Err(e) if is_missing(&e) => *api = MemoryApi::V1,
            Err(e) => return f.get("memory", Err(e)),
        }
    }
    f.get("memory", raw::memory_v1(nvml, device))
        .map(|(total, used, free)| (total, used, free, None))
}

/// `(total, used)` of a device (a MIG device) through whichever memory call works.
pub fn memory_any(nvml: &Nvml, device: &Device<'_>) -> Option<(u64, u64)> {
    match device.memory_info() {
        Ok(m) => Some((m.total, m.used)),
        Err(e) if is_missing(&e) => raw::memory_v1(nvml, device).ok().map(|m| (m.0, m.1)),
        Err(_) => None,
    }
}

/// A process list through the calls that work on this GPU, stepping down as they are missing.
fn read_processes(
    nvml: &Nvml,
    device: &Device<'_>,
    api: &mut ProcessApi,
    graphics: bool,
) -> Result<Vec<ProcessInfo>, NvmlError> {
    loop {
        let result = match (*api, graphics) {
            (ProcessApi::V3, false) => device.running_compute_processes(),
            (ProcessApi::V3, true) => device.running_graphics_processes(),
            (ProcessApi::V2, false) => device.running_compute_processes_v2(),
            (ProcessApi::V2, true) => device.running_graphics_processes_v2(),
            (ProcessApi::V1, _) => raw::processes_v1(nvml, device, graphics),
        };
        match result {
            Err(e) if is_missing(&e) && *api != ProcessApi::V1 => {
                *api = match *api {
                    ProcessApi::V3 => ProcessApi::V2,
                    _ => ProcessApi::V1,
                };
            }
            other => return other,
        }
    }
}

fn read_device(
    nvml: &Nvml,
    device: &Device<'_>,
    index: u32,
    memo: &mut GpuMemo,
    unsupported: &mut Vec<String>,
) -> GpuDevice {
    let mut f = Fields {
        scope: format!("GPU {index}"),
        unsupported,
    };
    let utilization = f.get("utilization", device.utilization_rates());
    let memory = read_memory(nvml, device, &mut memo.memory, &mut f);
    let fan_speeds_percent = read_fans(device, &mut f);
    let mig_mode = f.get("mig_mode", device.mig_mode()).map(|m| MigMode {
        enabled: m.current == MIG_ENABLED,
        pending_enabled: m.pending == MIG_ENABLED,
    });
    let in_mig = mig_mode.is_some_and(|m| m.enabled);
    let compute = read_processes(nvml, device, &mut memo.processes, false);
    let graphics = read_processes(nvml, device, &mut memo.processes, true);
    let mut gpu = GpuDevice {
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
        memory_total_bytes: memory.map(|m| m.0),
        memory_used_bytes: memory.map(|m| m.1),
        memory_free_bytes: memory.map(|m| m.2),
        memory_reserved_bytes: memory.and_then(|m| m.3),
        memory_used_percent: memory
            .filter(|m| m.0 > 0)
            .map(|m| m.1 as f64 * 100.0 / m.0 as f64),
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
            f.get("compute_processes", compute).unwrap_or_default(),
            f.get("graphics_processes", graphics).unwrap_or_default(),
            |pid| process_name(nvml, pid),
        ),
        xid_errors: memo.xid_errors,
        last_xid: memo.last_xid.clone(),
        ..GpuDevice::default()
    };
    health::read(nvml, device, &mut f, &mut gpu);
    if in_mig {
        gpu.mig_devices = mig::read(nvml, device, index, &mut f);
        if gpu.utilization_percent.is_none() {
            gpu.utilization_note = Some(MIG_UTILIZATION_NOTE.to_owned());
        }
    }
    gpu
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
                gpu_instance_id: info.gpu_instance_id,
                compute_instance_id: info.compute_instance_id,
                container: None,
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

    fn process(
        pid: u32,
        name: Option<&str>,
        used: Option<u64>,
        kind: GpuProcessKind,
    ) -> GpuProcess {
        GpuProcess {
            pid,
            name: name.map(str::to_owned),
            used_memory_bytes: used,
            kind,
            gpu_instance_id: None,
            compute_instance_id: None,
            container: None,
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
                process(10, Some("p10"), Some(5), GpuProcessKind::ComputeGraphics),
                process(20, Some("p20"), Some(100), GpuProcessKind::Compute),
                process(30, None, None, GpuProcessKind::Graphics),
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
