//! NVML's event set API: XID errors the test triggers by appending `GPU_INDEX XID` lines to the file `VITALS_FAKE_NVML_XID_FILE` names.
//!
//! An event set delivers only the lines written after it was created, and only for the GPUs
//! registered with it, like the driver delivers only events that happen after registration.

use std::ffi::{c_uint, c_ulonglong};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nvml_wrapper_sys::bindings::{
    nvmlDevice_t, nvmlEventData_t, nvmlEventSet_t,
    nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT as ERROR_INVALID_ARGUMENT,
    nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED as ERROR_NOT_SUPPORTED,
    nvmlReturn_enum_NVML_ERROR_TIMEOUT as ERROR_TIMEOUT,
    nvmlReturn_enum_NVML_ERROR_UNINITIALIZED as ERROR_UNINITIALIZED,
    nvmlReturn_enum_NVML_SUCCESS as SUCCESS, nvmlReturn_t,
};

use crate::boards::{gpu_handle, scenario};
use crate::core::{board, initialized};

/// `nvmlEventTypeXidCriticalError`.
const XID_CRITICAL_ERROR: c_ulonglong = 0x8;

struct EventSet {
    /// GPU indexes registered for XID events.
    devices: Vec<usize>,
    /// Lines of the trigger file already delivered (or written before the set existed).
    consumed: usize,
}

/// The trigger file's `(GPU index, XID)` lines.
fn triggers() -> Vec<(usize, u64)> {
    let Some(path) = std::env::var_os("VITALS_FAKE_NVML_XID_FILE") else {
        return Vec::new();
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (g, x) = l.trim().split_once(' ')?;
            Some((g.parse().ok()?, x.trim().parse().ok()?))
        })
        .collect()
}

/// Creates an event set.
///
/// # Safety
/// `set` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    if set.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    let boxed = Box::new(Mutex::new(EventSet {
        devices: Vec::new(),
        consumed: triggers().len(),
    }));
    // SAFETY: checked non-null; the caller guarantees validity. The handle is the box.
    unsafe { *set = Box::into_raw(boxed).cast() };
    SUCCESS
}

/// The event types a GPU supports: XID errors.
///
/// # Safety
/// `types` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetSupportedEventTypes(
    device: nvmlDevice_t,
    types: *mut c_ulonglong,
) -> nvmlReturn_t {
    // SAFETY: forwarded caller guarantee.
    unsafe { crate::core::with_gpu(device, types, |_| Ok(XID_CRITICAL_ERROR)) }
}

/// Registers a GPU's events with a set; only XID errors are supported.
///
/// # Safety
/// `set` must come from [`nvmlEventSetCreate`] and not be freed.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceRegisterEvents(
    device: nvmlDevice_t,
    types: c_ulonglong,
    set: nvmlEventSet_t,
) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    let Some((index, _)) = board(device) else {
        return ERROR_INVALID_ARGUMENT;
    };
    if set.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    if types & !XID_CRITICAL_ERROR != 0 {
        return ERROR_NOT_SUPPORTED;
    }
    // SAFETY: the caller passes a live set from nvmlEventSetCreate.
    let set = unsafe { &*set.cast::<Mutex<EventSet>>() };
    let mut s = set.lock().unwrap_or_else(|e| e.into_inner());
    if !s.devices.contains(&index) {
        s.devices.push(index);
    }
    SUCCESS
}

/// Waits up to `timeout_ms` for the next event of the set.
///
/// # Safety
/// `set` must come from [`nvmlEventSetCreate`]; `data` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeout_ms: c_uint,
) -> nvmlReturn_t {
    if !initialized() {
        return ERROR_UNINITIALIZED;
    }
    if set.is_null() || data.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: the caller passes a live set from nvmlEventSetCreate.
    let set = unsafe { &*set.cast::<Mutex<EventSet>>() };
    let until = Instant::now() + Duration::from_millis(timeout_ms.into());
    loop {
        {
            let mut s = set.lock().unwrap_or_else(|e| e.into_inner());
            let lines = triggers();
            while s.consumed < lines.len() {
                let (index, xid) = lines[s.consumed];
                s.consumed += 1;
                if !s.devices.contains(&index) {
                    continue;
                }
                let Some(b) = scenario().boards.get(index) else {
                    continue;
                };
                let event = nvmlEventData_t {
                    device: gpu_handle(b),
                    eventType: XID_CRITICAL_ERROR,
                    eventData: xid,
                    gpuInstanceId: u32::MAX,
                    computeInstanceId: u32::MAX,
                };
                // SAFETY: checked non-null; the caller guarantees validity.
                unsafe { data.write(event) };
                return SUCCESS;
            }
        }
        let now = Instant::now();
        if now >= until {
            return ERROR_TIMEOUT;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(5)));
    }
}

/// Frees an event set.
///
/// # Safety
/// `set` must come from [`nvmlEventSetCreate`] and not be used again.
#[no_mangle]
pub unsafe extern "C" fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    if set.is_null() {
        return ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: the set came from Box::into_raw in nvmlEventSetCreate and is freed once.
    drop(unsafe { Box::from_raw(set.cast::<Mutex<EventSet>>()) });
    SUCCESS
}
