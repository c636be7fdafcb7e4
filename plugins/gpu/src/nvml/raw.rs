//! NVML calls nvml-wrapper does not make (or makes only in their newest version): the legacy memory and process calls, remapped rows, JPEG/OFA utilization, field values, MIG instance ids.

use std::ffi::c_uint;
use std::mem;

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_MEMORY_TEMP;
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{
    nvmlDevice_t, nvmlFieldValue_t, nvmlMemory_t, nvmlProcessInfo_v1_t,
    nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE as ERROR_INSUFFICIENT_SIZE,
    nvmlReturn_enum_NVML_SUCCESS as SUCCESS, nvmlReturn_t,
    nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT as VALUE_UNSIGNED_INT,
    nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_LONG as VALUE_UNSIGNED_LONG,
    nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_LONG_LONG as VALUE_UNSIGNED_LONG_LONG,
};

/// At most this many processes are read from one GPU's list (a bound on what the driver fills).
pub const MAX_PROCESSES: c_uint = 4096;

/// The handle nvml-wrapper holds for `device`.
fn handle(device: &Device<'_>) -> nvmlDevice_t {
    // SAFETY: the handle is only passed back to the NVML library it came from, while
    // `device` (and so the library) is alive.
    unsafe { device.handle() }
}

/// Memory figures of the version 1 call: `(total, used, free)`, `used` including what the
/// driver reserves (which version 1 cannot tell apart).
///
/// # Errors
/// The NVML error, `FailedToLoadSymbol` when the library lacks the function.
pub fn memory_v1(nvml: &Nvml, device: &Device<'_>) -> Result<(u64, u64, u64), NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetMemoryInfo.as_ref())?;
    // SAFETY: `m` is a valid nvmlMemory_t to write; the handle is live.
    unsafe {
        let mut m: nvmlMemory_t = mem::zeroed();
        nvml_try(sym(handle(device), &mut m))?;
        Ok((m.total, m.used, m.free))
    }
}

/// A process list through a version 1 call (`nvmlDeviceGet…RunningProcesses`), which knows
/// no MIG instances.
///
/// # Errors
/// The NVML error, `FailedToLoadSymbol` when the library lacks the function.
pub fn processes_v1(
    nvml: &Nvml,
    device: &Device<'_>,
    graphics: bool,
) -> Result<Vec<ProcessInfo>, NvmlError> {
    let lib = nvml.lib();
    let sym = nvml_sym(if graphics {
        lib.nvmlDeviceGetGraphicsRunningProcesses.as_ref()
    } else {
        lib.nvmlDeviceGetComputeRunningProcesses.as_ref()
    })?;
    let h = handle(device);
    let mut count: c_uint = 0;
    // SAFETY: a count query with a null array, as NVML documents it.
    let rc = unsafe { sym(h, &mut count, std::ptr::null_mut()) };
    if rc != SUCCESS && rc != ERROR_INSUFFICIENT_SIZE {
        nvml_try(rc)?;
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    // Room for processes started between the two calls, within the bound.
    let mut capacity = (count + 8).min(MAX_PROCESSES);
    // SAFETY: an all-zero nvmlProcessInfo_v1_t is a valid value.
    let mut infos: Vec<nvmlProcessInfo_v1_t> = vec![unsafe { mem::zeroed() }; capacity as usize];
    // SAFETY: `infos` holds `capacity` entries.
    nvml_try(unsafe { sym(h, &mut capacity, infos.as_mut_ptr()) })?;
    infos.truncate(capacity as usize);
    Ok(infos
        .into_iter()
        .map(|p| ProcessInfo {
            pid: p.pid,
            used_gpu_memory: used_memory(p.usedGpuMemory),
            gpu_instance_id: None,
            compute_instance_id: None,
        })
        .collect())
}

/// NVML's "not available" memory value (NVML_VALUE_NOT_AVAILABLE as unsigned long long).
fn used_memory(bytes: u64) -> UsedGpuMemory {
    if bytes == u64::MAX {
        UsedGpuMemory::Unavailable
    } else {
        UsedGpuMemory::Used(bytes)
    }
}

/// Remapped rows: `(correctable, uncorrectable, pending, failure)`.
///
/// # Errors
/// The NVML error (NOT_SUPPORTED before Ampere or without ECC).
pub fn remapped_rows(
    nvml: &Nvml,
    device: &Device<'_>,
) -> Result<(u32, u32, bool, bool), NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetRemappedRows.as_ref())?;
    let (mut corr, mut unc, mut pending, mut failure) = (0, 0, 0, 0);
    // SAFETY: four valid unsigned ints to write; the handle is live.
    nvml_try(unsafe {
        sym(
            handle(device),
            &mut corr,
            &mut unc,
            &mut pending,
            &mut failure,
        )
    })?;
    Ok((corr, unc, pending != 0, failure != 0))
}

/// The number of retired pages for a cause (0: multiple single-bit errors, 1: double-bit).
///
/// # Errors
/// The NVML error (NOT_SUPPORTED without ECC or from Ampere on, which remaps rows instead).
pub fn retired_page_count(
    nvml: &Nvml,
    device: &Device<'_>,
    cause: c_uint,
) -> Result<u64, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetRetiredPages.as_ref())?;
    let mut count: c_uint = 0;
    // SAFETY: a count query with a null array, as NVML documents it.
    let rc = unsafe { sym(handle(device), cause, &mut count, std::ptr::null_mut()) };
    if rc != SUCCESS && rc != ERROR_INSUFFICIENT_SIZE {
        nvml_try(rc)?;
    }
    Ok(u64::from(count))
}

/// JPEG (`ofa = false`) or optical flow accelerator (`ofa = true`) utilization in percent.
///
/// # Errors
/// The NVML error; `FailedToLoadSymbol` before R525.
pub fn engine_utilization(nvml: &Nvml, device: &Device<'_>, ofa: bool) -> Result<u32, NvmlError> {
    let lib = nvml.lib();
    let sym = nvml_sym(if ofa {
        lib.nvmlDeviceGetOfaUtilization.as_ref()
    } else {
        lib.nvmlDeviceGetJpgUtilization.as_ref()
    })?;
    let (mut value, mut period) = (0, 0);
    // SAFETY: two valid unsigned ints to write; the handle is live.
    nvml_try(unsafe { sym(handle(device), &mut value, &mut period) })?;
    Ok(value)
}

/// The memory (HBM) temperature in °C, through the field values call.
///
/// # Errors
/// The NVML error of the call or of the field (NOT_SUPPORTED on GDDR boards).
pub fn memory_temperature(nvml: &Nvml, device: &Device<'_>) -> Result<u32, NvmlError> {
    let sym = nvml_sym(nvml.lib().nvmlDeviceGetFieldValues.as_ref())?;
    // SAFETY: an all-zero nvmlFieldValue_t is valid; one entry is passed and written.
    unsafe {
        let mut v: nvmlFieldValue_t = mem::zeroed();
        v.fieldId = NVML_FI_DEV_MEMORY_TEMP;
        nvml_try(sym(handle(device), 1, &mut v))?;
        nvml_try(v.nvmlReturn)?;
        let t = match v.valueType {
            VALUE_UNSIGNED_INT => u64::from(v.value.uiVal),
            VALUE_UNSIGNED_LONG => v.value.ulVal,
            VALUE_UNSIGNED_LONG_LONG => v.value.ullVal,
            _ => u64::from(v.value.uiVal),
        };
        Ok(u32::try_from(t).unwrap_or(u32::MAX))
    }
}

/// A MIG device's GPU instance (`compute = false`) or compute instance (`compute = true`) id.
///
/// # Errors
/// The NVML error.
pub fn instance_id(nvml: &Nvml, device: &Device<'_>, compute: bool) -> Result<u32, NvmlError> {
    let lib = nvml.lib();
    let sym = nvml_sym(if compute {
        lib.nvmlDeviceGetComputeInstanceId.as_ref()
    } else {
        lib.nvmlDeviceGetGpuInstanceId.as_ref()
    })?;
    let mut id = 0;
    // SAFETY: a valid unsigned int to write; the handle is live.
    nvml_try(unsafe { sym(handle(device), &mut id) })?;
    Ok(id)
}

/// Returns `rc` as a result (for the event calls).
pub fn check(rc: nvmlReturn_t) -> Result<(), NvmlError> {
    nvml_try(rc)
}
