//! The NVML functions every supported driver generation exports, answering from the scripted boards.
//!
//! `nvmlDeviceGetMaxPcieLinkGeneration` is deliberately not exported, as with a driver that
//! predates it. Values are in NVML's own units (milliwatts, bytes, KB/s, ns, MHz).

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, CStr};
use std::sync::atomic::{AtomicU32, Ordering};

use nvml_wrapper_sys::bindings::{
    nvmlClockType_enum_NVML_CLOCK_GRAPHICS as CLOCK_GRAPHICS,
    nvmlClockType_enum_NVML_CLOCK_MEM as CLOCK_MEM, nvmlClockType_t, nvmlComputeMode_t,
    nvmlDevice_t, nvmlEccCounterType_t, nvmlEnableState_t, nvmlFieldValue_t, nvmlMemoryErrorType_t,
    nvmlMemory_t, nvmlPageRetirementCause_t, nvmlPciInfo_t, nvmlPcieUtilCounter_t,
    nvmlPerfPolicyType_t, nvmlProcessInfo_v1_t, nvmlProcessInfo_v2_t,
    nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST as ERROR_GPU_IS_LOST,
    nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE as ERROR_INSUFFICIENT_SIZE,
    nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT as ERROR_INVALID_ARGUMENT,
    nvmlReturn_enum_NVML_ERROR_NOT_FOUND as ERROR_NOT_FOUND,
    nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED as ERROR_NOT_SUPPORTED,
    nvmlReturn_enum_NVML_ERROR_UNINITIALIZED as ERROR_UNINITIALIZED,
    nvmlReturn_enum_NVML_SUCCESS as SUCCESS, nvmlReturn_t,
    nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU as TEMPERATURE_GPU, nvmlTemperatureSensors_t,
    nvmlUtilization_t, nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT as VALUE_UNSIGNED_INT,
    nvmlValue_t, nvmlViolationTime_t,
};

use crate::boards::{
    extra_processes, gpu_handle, mig_handle, resolve, scenario, Board, Handle, Proc,
};

/// `NVML_FI_DEV_MEMORY_TEMP`: the memory (HBM) temperature field.
const NVML_FI_DEV_MEMORY_TEMP: c_uint = 82;

static PROCESS_NAMES: [(c_uint, &CStr); 2] = [(4242, c"python3"), (1234, c"/usr/lib/xorg/Xorg")];

/// NVML counts `nvmlInit` calls and needs as many `nvmlShutdown`s.
static INIT_COUNT: AtomicU32 = AtomicU32::new(0);

/// True between `nvmlInit_v2` and the last `nvmlShutdown`.
pub fn initialized() -> bool {
    INIT_COUNT.load(Ordering::SeqCst) > 0
}

/// The whole GPU behind `device` (not a MIG device).
pub fn board(device: nvmlDevice_t) -> Option<(usize, &'static Board)> {
    match resolve(device)? {
        Handle::Gpu(i, b) => Some((i, b)),
        Handle::Mig(..) => None,
    }
}

/// Runs `f` with what `device` points at and a non-null `out`, or answers as NVML would.
///
/// # Safety
/// `out` must be null or valid for writes of one `T`.
pub unsafe fn with_handle<T>(
    device: nvmlDevice_t,
    out: *mut T,
    f: impl FnOnce(Handle) -> Result<T, nvmlReturn_t>,
) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    let Some(h) = resolve(device) else {
        return ERROR_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    match f(h) {
        Ok(v) => {
            // SAFETY: the caller guarantees `out` is valid for a write.
            unsafe { out.write(v) };
            SUCCESS
        }
        Err(code) => code,
    }
}

/// Like [`with_handle`] for a whole GPU; a MIG handle answers NOT_SUPPORTED.
///
/// # Safety
/// `out` must be null or valid for writes of one `T`.
pub unsafe fn with_gpu<T>(
    device: nvmlDevice_t,
    out: *mut T,
    f: impl FnOnce(&'static Board) -> Result<T, nvmlReturn_t>,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_handle(device, out, |h| match h {
            Handle::Gpu(_, b) => f(b),
            Handle::Mig(..) => Err(ERROR_NOT_SUPPORTED),
        })
    }
}

/// Copies `text` with its NUL into a caller buffer of `length` bytes, as NVML's string getters do.
///
/// # Safety
/// `buf` must be null or valid for writes of `length` bytes.
pub unsafe fn copy_str(text: &CStr, buf: *mut c_char, length: c_uint) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    if buf.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    let bytes = text.to_bytes_with_nul();
    if bytes.len() > length as usize {
        return ERROR_INSUFFICIENT_SIZE;
    }
    // SAFETY: `buf` holds at least `length` >= `bytes.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len()) };
    SUCCESS
}

/// The compute or graphics list of a GPU, with the test's extra processes for compute.
pub fn process_list(device: nvmlDevice_t, graphics: bool) -> Option<Vec<Proc>> {
    let (index, b) = board(device)?;
    Some(if graphics {
        b.graphics_processes.clone()
    } else {
        let mut list = b.compute_processes.clone();
        list.extend(extra_processes(index));
        list
    })
}

/// Fills a caller's process array the way NVML does (count in, count out, INSUFFICIENT_SIZE).
///
/// # Safety
/// `count` must be valid; `infos` null or valid for `*count` entries.
pub unsafe fn copy_processes<T>(
    device: nvmlDevice_t,
    graphics: bool,
    count: *mut c_uint,
    infos: *mut T,
    make: impl Fn(&Proc) -> T,
) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    let Some(list) = process_list(device, graphics) else {
        return ERROR_INVALID_ARGUMENT;
    };
    if count.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: checked non-null; the caller guarantees validity.
    let capacity = unsafe { *count } as usize;
    // SAFETY: as above.
    unsafe { *count = list.len() as c_uint };
    if list.is_empty() {
        return SUCCESS;
    }
    if infos.is_null() || capacity < list.len() {
        return ERROR_INSUFFICIENT_SIZE;
    }
    for (i, p) in list.iter().enumerate() {
        // SAFETY: `i < list.len() <= capacity`.
        unsafe { infos.add(i).write(make(p)) };
    }
    SUCCESS
}

/// Starts the library (reference counted).
#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    scenario();
    INIT_COUNT.fetch_add(1, Ordering::SeqCst);
    SUCCESS
}

/// Stops the library; nvml-wrapper calls it when its `Nvml` is dropped.
#[no_mangle]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    match INIT_COUNT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => SUCCESS,
        Err(_) => ERROR_UNINITIALIZED,
    }
}

/// The driver version string.
///
/// # Safety
/// `version` must be valid for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { copy_str(c"535.104.05", version, length) }
}

/// The NVML version string.
///
/// # Safety
/// `version` must be valid for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { copy_str(c"12.535.104.05", version, length) }
}

/// The CUDA driver version as 1000 * major + 10 * minor.
///
/// # Safety
/// `version` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(version: *mut c_int) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    if version.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: checked non-null; the caller guarantees validity.
    unsafe { *version = 12020 };
    SUCCESS
}

/// The name of a process that uses a GPU.
///
/// # Safety
/// `name` must be valid for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetProcessName(
    pid: c_uint,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    match PROCESS_NAMES.iter().find(|(p, _)| *p == pid) {
        // SAFETY: forwarded caller guarantee.
        Some((_, n)) => unsafe { copy_str(n, name, length) },
        None => ERROR_NOT_FOUND,
    }
}

/// The number of GPUs.
///
/// # Safety
/// `count` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    if count.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    let s = scenario();
    // SAFETY: checked non-null; the caller guarantees validity.
    unsafe { *count = (s.boards.len() + s.lost) as c_uint };
    SUCCESS
}

/// The handle of GPU `index`.
///
/// # Safety
/// `device` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    let s = scenario();
    match s.boards.get(index as usize) {
        Some(b) if !device.is_null() => {
            // SAFETY: checked non-null; the caller guarantees validity. NVML handles are
            // opaque; ours point at the scripted board and are never written through.
            unsafe { *device = gpu_handle(b) };
            SUCCESS
        }
        None if (index as usize) < s.boards.len() + s.lost => ERROR_GPU_IS_LOST,
        _ => ERROR_INVALID_ARGUMENT,
    }
}

/// PCI identity (version 3 of `nvmlPciInfo_t`).
///
/// # Safety
/// `pci` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, pci, |g| {
            let mut info = nvmlPciInfo_t {
                busIdLegacy: [0; 16],
                domain: 0,
                bus: 0,
                device: 0,
                pciDeviceId: 0x2204_10de,
                pciSubSystemId: 0,
                busId: [0; 32],
            };
            for (dst, src) in info.busId.iter_mut().zip(g.bus_id.to_bytes()) {
                *dst = *src as c_char;
            }
            for (dst, src) in info
                .busIdLegacy
                .iter_mut()
                .take(15)
                .zip(g.bus_id.to_bytes())
            {
                *dst = *src as c_char;
            }
            Ok(info)
        })
    }
}

/// The CUDA compute capability.
///
/// # Safety
/// `major` and `minor` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCudaComputeCapability(
    device: nvmlDevice_t,
    major: *mut c_int,
    minor: *mut c_int,
) -> nvmlReturn_t {
    if minor.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, major, |g| {
            *minor = g.compute_capability.1;
            Ok(g.compute_capability.0)
        })
    }
}

/// GPU and memory-controller utilization (NOT_SUPPORTED in MIG mode and on MIG devices).
///
/// # Safety
/// `utilization` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, utilization, |g| {
            let (gpu, memory) = g.utilization.ok_or(ERROR_NOT_SUPPORTED)?;
            Ok(nvmlUtilization_t { gpu, memory })
        })
    }
}

/// The memory figures of a GPU or MIG device: total, reserved, used.
pub fn memory_of(h: &Handle) -> (u64, u64, u64) {
    match h {
        Handle::Gpu(_, g) => (g.memory_total, g.memory_reserved, g.memory_used),
        Handle::Mig(_, m) => (m.memory_total, 0, m.memory_used),
    }
}

/// Device memory, version 1: `used` includes what the driver reserves.
///
/// # Safety
/// `memory` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_handle(device, memory, |h| {
            let (total, reserved, used) = memory_of(&h);
            Ok(nvmlMemory_t {
                total,
                free: total - reserved - used,
                used: used + reserved,
            })
        })
    }
}

/// A temperature sensor's reading in °C.
///
/// # Safety
/// `temp` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor: nvmlTemperatureSensors_t,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    if sensor != TEMPERATURE_GPU {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded caller guarantee.
    unsafe { with_gpu(device, temp, |g| Ok(g.temperature_celsius)) }
}

/// The number of fans (NOT_SUPPORTED on a fanless board).
///
/// # Safety
/// `count` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetNumFans(
    device: nvmlDevice_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, count, |g| {
            g.fans_percent
                .as_ref()
                .map(|f| f.len() as c_uint)
                .ok_or(ERROR_NOT_SUPPORTED)
        })
    }
}

/// One fan's intended speed in percent.
///
/// # Safety
/// `speed` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetFanSpeed_v2(
    device: nvmlDevice_t,
    fan: c_uint,
    speed: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, speed, |g| {
            let fans = g.fans_percent.as_ref().ok_or(ERROR_NOT_SUPPORTED)?;
            fans.get(fan as usize)
                .copied()
                .ok_or(ERROR_INVALID_ARGUMENT)
        })
    }
}

/// A current clock in MHz.
///
/// # Safety
/// `clock` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: nvmlDevice_t,
    kind: nvmlClockType_t,
    clock: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, clock, |g| match kind {
            CLOCK_GRAPHICS => Ok(g.clocks_mhz.0),
            CLOCK_MEM => Ok(g.clocks_mhz.1),
            _ => Err(ERROR_NOT_SUPPORTED),
        })
    }
}

/// The current and pending MIG mode (NOT_SUPPORTED on GPUs without MIG).
///
/// # Safety
/// `current` and `pending` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> nvmlReturn_t {
    if pending.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, current, |g| {
            let (c, p) = g.mig_mode.ok_or(ERROR_NOT_SUPPORTED)?;
            *pending = p;
            Ok(c)
        })
    }
}

/// Exports `nvmlDeviceGet…(device, unsigned int *value)` getters of a whole GPU.
macro_rules! uint_getters {
    ($($(#[doc = $doc:literal])* $name:ident => |$g:ident| $value:expr;)*) => {$(
        $(#[doc = $doc])*
        ///
        /// # Safety
        /// `value` must be valid for a write.
        #[no_mangle]
        pub unsafe extern "C" fn $name(device: nvmlDevice_t, value: *mut c_uint) -> nvmlReturn_t {
            // SAFETY: forwarded caller guarantee.
            unsafe { with_gpu(device, value, |$g| $value) }
        }
    )*};
}

uint_getters! {
    /// The current PCIe link generation.
    nvmlDeviceGetCurrPcieLinkGeneration => |g| Ok(g.pcie_generation);
    /// The current PCIe link width.
    nvmlDeviceGetCurrPcieLinkWidth => |g| Ok(g.pcie_link_width);
    /// The maximum PCIe link width.
    nvmlDeviceGetMaxPcieLinkWidth => |g| Ok(g.pcie_max_link_width);
    /// Board power draw in milliwatts.
    nvmlDeviceGetPowerUsage => |g| Ok(g.power_milliwatts);
    /// The enforced power limit in milliwatts.
    nvmlDeviceGetEnforcedPowerLimit => |g| Ok(g.power_limit_milliwatts);
    /// The default power limit in milliwatts.
    nvmlDeviceGetPowerManagementDefaultLimit => |g| Ok(g.power_default_limit_milliwatts);
    /// The performance state (0 = P0).
    nvmlDeviceGetPerformanceState => |g| Ok(g.pstate);
    /// PCIe replays since the driver loaded.
    nvmlDeviceGetPcieReplayCounter => |g| Ok(g.pcie_replays);
    /// Persistence mode (1 = enabled).
    nvmlDeviceGetPersistenceMode => |g| Ok(g.persistence);
    /// Compute mode (0 = default).
    nvmlDeviceGetComputeMode => |g| Ok(g.compute_mode);
    /// Pages pending retirement (1 = yes); NOT_SUPPORTED without ECC.
    nvmlDeviceGetRetiredPagesPendingStatus => |g| g.ecc.map(|e| e.retired.2).ok_or(ERROR_NOT_SUPPORTED);
    /// How many MIG devices the GPU can hold (0 without MIG).
    nvmlDeviceGetMaxMigDeviceCount => |g| Ok(if g.mig_mode.is_some() { 7 } else { 0 });
}

// `nvmlComputeMode_t` and `nvmlEnableState_t` are C enums the size of `unsigned int`.
const _: () = assert!(std::mem::size_of::<nvmlComputeMode_t>() == 4);
const _: () = assert!(std::mem::size_of::<nvmlEnableState_t>() == 4);

/// Exports `nvmlDeviceGet…(device, char *buf, unsigned int length)` string getters.
macro_rules! string_getters {
    ($($(#[doc = $doc:literal])* $name:ident => |$h:ident| $value:expr;)*) => {$(
        $(#[doc = $doc])*
        ///
        /// # Safety
        /// `buf` must be valid for `length` bytes.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            device: nvmlDevice_t,
            buf: *mut c_char,
            length: c_uint,
        ) -> nvmlReturn_t {
            match resolve(device) {
                // SAFETY: forwarded caller guarantee.
                Some($h) => unsafe { copy_str($value, buf, length) },
                None => ERROR_INVALID_ARGUMENT,
            }
        }
    )*};
}

string_getters! {
    /// The product name (a MIG device's ends with its profile).
    nvmlDeviceGetName => |h| match h { Handle::Gpu(_, g) => &g.name, Handle::Mig(_, m) => &m.name };
    /// The GPU or MIG device UUID.
    nvmlDeviceGetUUID => |h| match h { Handle::Gpu(_, g) => &g.uuid, Handle::Mig(_, m) => &m.uuid };
    /// The VBIOS version.
    nvmlDeviceGetVbiosVersion => |h| match h { Handle::Gpu(_, g) => &g.vbios, Handle::Mig(g, _) => &g.vbios };
}

/// Compute processes, version 1 (no MIG instance ids).
///
/// # Safety
/// `count` must be valid; `infos` null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v1_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { copy_processes(device, false, count, infos, v1) }
}

/// Graphics processes, version 1.
///
/// # Safety
/// `count` must be valid; `infos` null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGraphicsRunningProcesses(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v1_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { copy_processes(device, true, count, infos, v1) }
}

/// Compute processes, version 2.
///
/// # Safety
/// `count` must be valid; `infos` null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v2(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { copy_processes(device, false, count, infos, v2) }
}

/// Graphics processes, version 2.
///
/// # Safety
/// `count` must be valid; `infos` null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGraphicsRunningProcesses_v2(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_v2_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { copy_processes(device, true, count, infos, v2) }
}

fn v1(p: &Proc) -> nvmlProcessInfo_v1_t {
    nvmlProcessInfo_v1_t {
        pid: p.pid,
        usedGpuMemory: p.memory,
    }
}

/// The version 2 (and 3) process entry.
pub fn v2(p: &Proc) -> nvmlProcessInfo_v2_t {
    nvmlProcessInfo_v2_t {
        pid: p.pid,
        usedGpuMemory: p.memory,
        gpuInstanceId: p.gi,
        computeInstanceId: p.ci,
    }
}

/// Writes a sampled engine utilization and a one-second sampling period.
///
/// # Safety
/// `utilization` and `period` must be null or valid for writes.
pub unsafe fn engine(
    device: nvmlDevice_t,
    which: usize,
    utilization: *mut c_uint,
    period: *mut c_uint,
) -> nvmlReturn_t {
    if period.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded caller guarantee; `period` checked non-null.
    unsafe {
        with_gpu(device, utilization, |g| {
            *period = 1_000_000;
            g.engines.map(|e| e[which]).ok_or(ERROR_NOT_SUPPORTED)
        })
    }
}

/// Encoder utilization.
///
/// # Safety
/// Both pointers must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEncoderUtilization(
    device: nvmlDevice_t,
    utilization: *mut c_uint,
    period: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { engine(device, 0, utilization, period) }
}

/// Decoder utilization.
///
/// # Safety
/// Both pointers must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetDecoderUtilization(
    device: nvmlDevice_t,
    utilization: *mut c_uint,
    period: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { engine(device, 1, utilization, period) }
}

/// Encoder sessions, mean FPS and latency.
///
/// # Safety
/// The three pointers must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEncoderStats(
    device: nvmlDevice_t,
    sessions: *mut c_uint,
    fps: *mut c_uint,
    latency: *mut c_uint,
) -> nvmlReturn_t {
    if fps.is_null() || latency.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded caller guarantee; pointers checked non-null.
    unsafe {
        with_gpu(device, sessions, |g| {
            *fps = 30 * g.encoder_sessions;
            *latency = 1_000;
            Ok(g.encoder_sessions)
        })
    }
}

/// PCIe throughput in KB/s (0 = TX, 1 = RX).
///
/// # Safety
/// `value` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPcieThroughput(
    device: nvmlDevice_t,
    counter: nvmlPcieUtilCounter_t,
    value: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, value, |g| match counter {
            0 => Ok(g.pcie_kbps.0),
            1 => Ok(g.pcie_kbps.1),
            _ => Err(ERROR_INVALID_ARGUMENT),
        })
    }
}

/// The range the power limit can be set in, in milliwatts.
///
/// # Safety
/// Both pointers must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerManagementLimitConstraints(
    device: nvmlDevice_t,
    min: *mut c_uint,
    max: *mut c_uint,
) -> nvmlReturn_t {
    if max.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded caller guarantee; `max` checked non-null.
    unsafe {
        with_gpu(device, min, |g| {
            *max = g.power_max_limit_milliwatts;
            Ok(g.power_default_limit_milliwatts / 2)
        })
    }
}

/// Energy since the driver loaded, in millijoules.
///
/// # Safety
/// `energy` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: nvmlDevice_t,
    energy: *mut c_ulonglong,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { with_gpu(device, energy, |g| Ok(g.energy_millijoules)) }
}

/// ECC mode now and after the next reboot (NOT_SUPPORTED without ECC).
///
/// # Safety
/// Both pointers must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetEccMode(
    device: nvmlDevice_t,
    current: *mut nvmlEnableState_t,
    pending: *mut nvmlEnableState_t,
) -> nvmlReturn_t {
    if pending.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded caller guarantee; `pending` checked non-null.
    unsafe {
        with_gpu(device, current, |g| {
            let e = g.ecc.ok_or(ERROR_NOT_SUPPORTED)?;
            *pending = e.mode.1;
            Ok(e.mode.0)
        })
    }
}

/// Total ECC errors of a type (0 corrected, 1 uncorrected) and counter (0 volatile, 1 aggregate).
///
/// # Safety
/// `count` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: nvmlDevice_t,
    error: nvmlMemoryErrorType_t,
    counter: nvmlEccCounterType_t,
    count: *mut c_ulonglong,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, count, |g| {
            let e = g.ecc.ok_or(ERROR_NOT_SUPPORTED)?;
            match (error, counter) {
                (0, 0) => Ok(e.corrected_volatile),
                (1, 0) => Ok(e.uncorrected_volatile),
                (0, 1) => Ok(e.corrected_aggregate),
                (1, 1) => Ok(e.uncorrected_aggregate),
                _ => Err(ERROR_INVALID_ARGUMENT),
            }
        })
    }
}

/// Retired page count and addresses for a cause (0 multiple single-bit, 1 double-bit).
///
/// # Safety
/// `count` must be valid; `addresses` null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetRetiredPages(
    device: nvmlDevice_t,
    cause: nvmlPageRetirementCause_t,
    count: *mut c_uint,
    addresses: *mut c_ulonglong,
) -> nvmlReturn_t {
    let Some((_, g)) = board(device).filter(|_| initialized()) else {
        return ERROR_INVALID_ARGUMENT;
    };
    let Some(e) = g.ecc else {
        return ERROR_NOT_SUPPORTED;
    };
    if count.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    let n = if cause == 0 { e.retired.0 } else { e.retired.1 };
    // SAFETY: checked non-null; the caller guarantees validity.
    let capacity = unsafe { *count };
    // SAFETY: as above.
    unsafe { *count = n };
    if n == 0 {
        return SUCCESS;
    }
    if addresses.is_null() || capacity < n {
        return ERROR_INSUFFICIENT_SIZE;
    }
    for i in 0..n as usize {
        // SAFETY: `i < n <= capacity`.
        unsafe { addresses.add(i).write(0x1000 * (i as u64 + 1)) };
    }
    SUCCESS
}

/// Remapped rows: correctable, uncorrectable, pending, failure (NOT_SUPPORTED without ECC).
///
/// # Safety
/// The four pointers must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetRemappedRows(
    device: nvmlDevice_t,
    correctable: *mut c_uint,
    uncorrectable: *mut c_uint,
    pending: *mut c_uint,
    failure: *mut c_uint,
) -> nvmlReturn_t {
    if uncorrectable.is_null() || pending.is_null() || failure.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded caller guarantee; pointers checked non-null.
    unsafe {
        with_gpu(device, correctable, |g| {
            let e = g.ecc.ok_or(ERROR_NOT_SUPPORTED)?;
            *uncorrectable = e.remapped.1;
            *pending = e.remapped.2;
            *failure = e.remapped.3;
            Ok(e.remapped.0)
        })
    }
}

/// The clock event (throttle) reasons active now, as nvml.h's bitmask.
///
/// # Safety
/// `reasons` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { with_gpu(device, reasons, |g| Ok(g.throttle_reasons)) }
}

/// Time spent held back by a policy (0 power, 1 thermal, 2 sync boost, 3 board limit), in ns.
///
/// # Safety
/// `time` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetViolationStatus(
    device: nvmlDevice_t,
    policy: nvmlPerfPolicyType_t,
    time: *mut nvmlViolationTime_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, time, |g| {
            let v = *g
                .violations_ns
                .get(policy as usize)
                .ok_or(ERROR_NOT_SUPPORTED)?;
            Ok(nvmlViolationTime_t {
                referenceTime: 1_700_000_000_000_000,
                violationTime: v,
            })
        })
    }
}

/// Field values; only the memory (HBM) temperature is scripted, the rest answer NOT_SUPPORTED.
///
/// # Safety
/// `values` must be valid for `count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(
    device: nvmlDevice_t,
    count: c_int,
    values: *mut nvmlFieldValue_t,
) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    let Some((_, g)) = board(device) else {
        return ERROR_INVALID_ARGUMENT;
    };
    if values.is_null() || count < 0 {
        return ERROR_INVALID_ARGUMENT;
    }
    for i in 0..count as usize {
        // SAFETY: `i < count`; the caller guarantees validity.
        let v = unsafe { &mut *values.add(i) };
        match (v.fieldId, g.memory_temperature_celsius) {
            (NVML_FI_DEV_MEMORY_TEMP, Some(t)) => {
                v.nvmlReturn = SUCCESS;
                v.valueType = VALUE_UNSIGNED_INT;
                v.value = nvmlValue_t { uiVal: t };
            }
            _ => v.nvmlReturn = ERROR_NOT_SUPPORTED,
        }
    }
    SUCCESS
}

/// The MIG device at `index` of a GPU in MIG mode.
///
/// # Safety
/// `mig` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: nvmlDevice_t,
    index: c_uint,
    mig: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, mig, |g| {
            if g.mig_mode.map(|m| m.0) != Some(1) {
                return Err(ERROR_NOT_SUPPORTED);
            }
            g.mig_devices
                .get(index as usize)
                .map(mig_handle)
                .ok_or(ERROR_NOT_FOUND)
        })
    }
}

/// The GPU instance id of a MIG device.
///
/// # Safety
/// `id` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_handle(device, id, |h| match h {
            Handle::Mig(_, m) => Ok(m.gi),
            Handle::Gpu(..) => Err(ERROR_INVALID_ARGUMENT),
        })
    }
}

/// The compute instance id of a MIG device.
///
/// # Safety
/// `id` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_handle(device, id, |h| match h {
            Handle::Mig(_, m) => Ok(m.ci),
            Handle::Gpu(..) => Err(ERROR_INVALID_ARGUMENT),
        })
    }
}

/// Whether the handle is a MIG device's.
///
/// # Safety
/// `is_mig` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: nvmlDevice_t,
    is_mig: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_handle(device, is_mig, |h| {
            Ok(c_uint::from(matches!(h, Handle::Mig(..))))
        })
    }
}
