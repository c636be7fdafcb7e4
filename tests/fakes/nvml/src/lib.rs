//! A test-only stand-in for `libnvidia-ml.so`: the NVML C functions the gpu plugin calls, with scripted values for three GPUs (one lost).
//!
//! GPU 0 is an RTX 3090 with two fans and two processes; GPU 1 is an A100 whose fan query
//! answers `NVML_ERROR_NOT_SUPPORTED` (it has none) and whose MIG mode is on; GPU 2 is counted
//! but has fallen off the bus (`NVML_ERROR_GPU_IS_LOST` for its handle).
//! `nvmlDeviceGetMaxPcieLinkGeneration` is deliberately not exported, as with a driver that
//! predates it. Values are in NVML's own units (milliwatts, bytes, MHz) so the tests prove
//! the plugin converts them. The scripted values are repeated in `tests/tests/gpu.rs`.

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::sync::atomic::{AtomicU32, Ordering};

use nvml_wrapper_sys::bindings::{
    nvmlClockType_enum_NVML_CLOCK_GRAPHICS as CLOCK_GRAPHICS,
    nvmlClockType_enum_NVML_CLOCK_MEM as CLOCK_MEM, nvmlClockType_t, nvmlDevice_t, nvmlMemory_v2_t,
    nvmlPciInfo_t, nvmlProcessInfo_t, nvmlPstates_t,
    nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH as ERROR_ARGUMENT_VERSION_MISMATCH,
    nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST as ERROR_GPU_IS_LOST,
    nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE as ERROR_INSUFFICIENT_SIZE,
    nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT as ERROR_INVALID_ARGUMENT,
    nvmlReturn_enum_NVML_ERROR_NOT_FOUND as ERROR_NOT_FOUND,
    nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED as ERROR_NOT_SUPPORTED,
    nvmlReturn_enum_NVML_ERROR_UNINITIALIZED as ERROR_UNINITIALIZED,
    nvmlReturn_enum_NVML_SUCCESS as SUCCESS, nvmlReturn_t,
    nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU as TEMPERATURE_GPU, nvmlTemperatureSensors_t,
    nvmlUtilization_t,
};

/// `usedGpuMemory` when the driver cannot tell (NVML_VALUE_NOT_AVAILABLE as unsigned long long).
const MEMORY_NOT_AVAILABLE: u64 = u64::MAX;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// One scripted GPU.
struct Gpu {
    name: &'static CStr,
    uuid: &'static CStr,
    bus_id: &'static CStr,
    compute_capability: (c_int, c_int),
    pcie_generation: c_uint,
    pcie_link_width: c_uint,
    pcie_max_link_width: c_uint,
    utilization: (c_uint, c_uint),
    memory_total: u64,
    memory_reserved: u64,
    memory_used: u64,
    temperature_celsius: c_uint,
    power_milliwatts: c_uint,
    power_limit_milliwatts: c_uint,
    /// `None`: the fan query answers NOT_SUPPORTED.
    fans_percent: Option<&'static [c_uint]>,
    clocks_mhz: (c_uint, c_uint),
    pstate: nvmlPstates_t,
    /// `None`: the MIG query answers NOT_SUPPORTED.
    mig_mode: Option<(c_uint, c_uint)>,
    compute_processes: &'static [(c_uint, u64)],
    graphics_processes: &'static [(c_uint, u64)],
}

static GPUS: [Gpu; 2] = [
    Gpu {
        name: c"NVIDIA GeForce RTX 3090",
        uuid: c"GPU-5c2b1d0e-3f4a-4b6c-8d9e-0a1b2c3d4e5f",
        bus_id: c"00000000:01:00.0",
        compute_capability: (8, 6),
        pcie_generation: 4,
        pcie_link_width: 16,
        pcie_max_link_width: 16,
        utilization: (37, 21),
        memory_total: 24 * GIB,
        memory_reserved: 512 * MIB,
        memory_used: 10 * GIB,
        temperature_celsius: 64,
        power_milliwatts: 287_450,
        power_limit_milliwatts: 350_000,
        fans_percent: Some(&[54, 60]),
        clocks_mhz: (1695, 9751),
        pstate: 2,
        mig_mode: None,
        compute_processes: &[(4242, 8 * GIB)],
        graphics_processes: &[(1234, MEMORY_NOT_AVAILABLE)],
    },
    Gpu {
        name: c"NVIDIA A100-SXM4-40GB",
        uuid: c"GPU-a100a100-0000-4000-8000-000000000001",
        bus_id: c"00000000:41:00.0",
        compute_capability: (8, 0),
        pcie_generation: 3,
        pcie_link_width: 8,
        pcie_max_link_width: 16,
        utilization: (0, 0),
        memory_total: 40 * GIB,
        memory_reserved: 0,
        memory_used: GIB,
        temperature_celsius: 41,
        power_milliwatts: 61_234,
        power_limit_milliwatts: 400_000,
        fans_percent: None,
        clocks_mhz: (1410, 1215),
        pstate: 0,
        mig_mode: Some((1, 1)),
        compute_processes: &[],
        graphics_processes: &[],
    },
];

/// GPUs counted after the scripted ones whose handle NVML cannot give (they fell off the bus).
const LOST_GPUS: usize = 1;

static PROCESS_NAMES: [(c_uint, &CStr); 2] = [(4242, c"python3"), (1234, c"/usr/lib/xorg/Xorg")];

/// NVML counts `nvmlInit` calls and needs as many `nvmlShutdown`s.
static INIT_COUNT: AtomicU32 = AtomicU32::new(0);

fn initialized() -> bool {
    INIT_COUNT.load(Ordering::SeqCst) > 0
}

/// The scripted GPU behind a handle this library gave out.
fn gpu(device: nvmlDevice_t) -> Option<&'static Gpu> {
    if !initialized() {
        return None;
    }
    GPUS.iter()
        .find(|g| std::ptr::eq(*g as *const Gpu as *const _, device as *const _))
}

/// Runs `f` with the GPU behind `device` and a non-null `out`, or answers as NVML would.
///
/// # Safety
/// `out` must be null or valid for writes of one `T`.
unsafe fn with_gpu<T>(
    device: nvmlDevice_t,
    out: *mut T,
    f: impl FnOnce(&'static Gpu) -> Result<T, nvmlReturn_t>,
) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    let Some(g) = gpu(device) else {
        return ERROR_INVALID_ARGUMENT;
    };
    if out.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    match f(g) {
        Ok(v) => {
            // SAFETY: the caller guarantees `out` is valid for a write.
            unsafe { out.write(v) };
            SUCCESS
        }
        Err(code) => code,
    }
}

/// Copies `text` with its NUL into a caller buffer of `length` bytes, as NVML's string getters do.
///
/// # Safety
/// `buf` must be null or valid for writes of `length` bytes.
unsafe fn copy_str(text: &CStr, buf: *mut c_char, length: c_uint) -> nvmlReturn_t {
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

/// Fills a process list the way `nvmlDeviceGet*RunningProcesses_v3` does.
///
/// # Safety
/// `count` must be valid; `infos` null or valid for `*count` entries.
unsafe fn copy_processes(
    list: &[(c_uint, u64)],
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> nvmlReturn_t {
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
    for (i, (pid, memory)) in list.iter().enumerate() {
        let info = nvmlProcessInfo_t {
            pid: *pid,
            usedGpuMemory: *memory,
            // 0xFFFFFFFF: not in a MIG instance.
            gpuInstanceId: u32::MAX,
            computeInstanceId: u32::MAX,
        };
        // SAFETY: `i < list.len() <= capacity`.
        unsafe { infos.add(i).write(info) };
    }
    SUCCESS
}

/// Starts the library (reference counted).
#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
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
    // SAFETY: checked non-null; the caller guarantees validity.
    unsafe { *count = (GPUS.len() + LOST_GPUS) as c_uint };
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
    match GPUS.get(index as usize) {
        Some(g) if !device.is_null() => {
            // SAFETY: checked non-null; the caller guarantees validity. NVML handles are
            // opaque; ours point at the scripted GPU and are never written through.
            unsafe { *device = g as *const Gpu as nvmlDevice_t };
            SUCCESS
        }
        None if (index as usize) < GPUS.len() + LOST_GPUS => ERROR_GPU_IS_LOST,
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

/// GPU and memory-controller utilization.
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
            Ok(nvmlUtilization_t {
                gpu: g.utilization.0,
                memory: g.utilization.1,
            })
        })
    }
}

/// Device memory (version 2 of `nvmlMemory_t`, which checks the caller's struct version).
///
/// # Safety
/// `memory` must be valid for a read and a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    let expected = (std::mem::size_of::<nvmlMemory_v2_t>() | (2 << 24)) as c_uint;
    // SAFETY: read only when non-null; the caller guarantees validity.
    if !memory.is_null() && unsafe { (*memory).version } != expected {
        return ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_gpu(device, memory, |g| {
            Ok(nvmlMemory_v2_t {
                version: expected,
                total: g.memory_total,
                reserved: g.memory_reserved,
                free: g.memory_total - g.memory_reserved - g.memory_used,
                used: g.memory_used,
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
            let fans = g.fans_percent.ok_or(ERROR_NOT_SUPPORTED)?;
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

/// Exports `nvmlDeviceGet…(device, unsigned int *value)` getters that answer one scripted field.
macro_rules! uint_getters {
    ($($(#[doc = $doc:literal])* $name:ident => $field:ident;)*) => {$(
        $(#[doc = $doc])*
        ///
        /// # Safety
        /// `value` must be valid for a write.
        #[no_mangle]
        pub unsafe extern "C" fn $name(device: nvmlDevice_t, value: *mut c_uint) -> nvmlReturn_t {
            // SAFETY: forwarded caller guarantee.
            unsafe { with_gpu(device, value, |g| Ok(g.$field)) }
        }
    )*};
}

uint_getters! {
    /// The current PCIe link generation.
    nvmlDeviceGetCurrPcieLinkGeneration => pcie_generation;
    /// The current PCIe link width.
    nvmlDeviceGetCurrPcieLinkWidth => pcie_link_width;
    /// The maximum PCIe link width.
    nvmlDeviceGetMaxPcieLinkWidth => pcie_max_link_width;
    /// Board power draw in milliwatts.
    nvmlDeviceGetPowerUsage => power_milliwatts;
    /// The enforced power limit in milliwatts.
    nvmlDeviceGetEnforcedPowerLimit => power_limit_milliwatts;
    /// The performance state (0 = P0).
    nvmlDeviceGetPerformanceState => pstate;
}

/// Exports `nvmlDeviceGet…(device, char *buf, unsigned int length)` string getters.
macro_rules! string_getters {
    ($($(#[doc = $doc:literal])* $name:ident => $field:ident;)*) => {$(
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
            match gpu(device) {
                // SAFETY: forwarded caller guarantee.
                Some(g) => unsafe { copy_str(g.$field, buf, length) },
                None => ERROR_INVALID_ARGUMENT,
            }
        }
    )*};
}

string_getters! {
    /// The product name.
    nvmlDeviceGetName => name;
    /// The GPU UUID.
    nvmlDeviceGetUUID => uuid;
}

/// Exports `nvmlDeviceGet…RunningProcesses_v3(device, unsigned int *count, nvmlProcessInfo_t *infos)`.
macro_rules! process_getters {
    ($($(#[doc = $doc:literal])* $name:ident => $field:ident;)*) => {$(
        $(#[doc = $doc])*
        ///
        /// # Safety
        /// `count` must be valid; `infos` null or valid for `*count` entries.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            device: nvmlDevice_t,
            count: *mut c_uint,
            infos: *mut nvmlProcessInfo_t,
        ) -> nvmlReturn_t {
            match gpu(device) {
                // SAFETY: forwarded caller guarantee.
                Some(g) => unsafe { copy_processes(g.$field, count, infos) },
                None => ERROR_INVALID_ARGUMENT,
            }
        }
    )*};
}

process_getters! {
    /// Processes with a compute context on the GPU.
    nvmlDeviceGetComputeRunningProcesses_v3 => compute_processes;
    /// Processes with a graphics context on the GPU.
    nvmlDeviceGetGraphicsRunningProcesses_v3 => graphics_processes;
}
