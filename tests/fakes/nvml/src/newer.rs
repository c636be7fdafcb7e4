//! The NVML functions drivers before R510 (and R525 for JPEG/OFA) lack: left out of the legacy build.

use std::ffi::c_uint;

use nvml_wrapper_sys::bindings::{
    nvmlDevice_t, nvmlMemory_v2_t, nvmlProcessInfo_t,
    nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH as ERROR_ARGUMENT_VERSION_MISMATCH,
    nvmlReturn_enum_NVML_ERROR_FUNCTION_NOT_FOUND as ERROR_FUNCTION_NOT_FOUND, nvmlReturn_t,
};

use crate::core::{copy_processes, memory_of, v2, with_handle};

/// Device memory (version 2 of `nvmlMemory_t`, which checks the caller's struct version).
/// With `VITALS_FAKE_NVML_WSL` set it answers FUNCTION_NOT_FOUND, as under WSL.
///
/// # Safety
/// `memory` must be valid for a read and a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    if std::env::var_os("VITALS_FAKE_NVML_WSL").is_some() {
        return ERROR_FUNCTION_NOT_FOUND;
    }
    let expected = (std::mem::size_of::<nvmlMemory_v2_t>() | (2 << 24)) as c_uint;
    // SAFETY: read only when non-null; the caller guarantees validity.
    if !memory.is_null() && unsafe { (*memory).version } != expected {
        return ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    // SAFETY: forwarded caller guarantee.
    unsafe {
        with_handle(device, memory, |h| {
            let (total, reserved, used) = memory_of(&h);
            Ok(nvmlMemory_v2_t {
                version: expected,
                total,
                reserved,
                free: total - reserved - used,
                used,
            })
        })
    }
}

/// Compute processes, version 3.
///
/// # Safety
/// `count` must be valid; `infos` null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { copy_processes(device, false, count, infos, v2) }
}

/// Graphics processes, version 3.
///
/// # Safety
/// `count` must be valid; `infos` null or valid for `*count` entries.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGraphicsRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { copy_processes(device, true, count, infos, v2) }
}

/// JPEG decoder utilization.
///
/// # Safety
/// Both pointers must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetJpgUtilization(
    device: nvmlDevice_t,
    utilization: *mut c_uint,
    period: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { crate::core::engine(device, 2, utilization, period) }
}

/// Optical flow accelerator utilization.
///
/// # Safety
/// Both pointers must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetOfaUtilization(
    device: nvmlDevice_t,
    utilization: *mut c_uint,
    period: *mut c_uint,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { crate::core::engine(device, 3, utilization, period) }
}
