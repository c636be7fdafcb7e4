//! XID errors through NVML's event set: registered once per GPU, drained on the collecting thread with a short wait each collect.

use std::ffi::c_ulonglong;
use std::mem;
use std::time::{SystemTime, UNIX_EPOCH};

use nvml_wrapper::error::{nvml_sym, nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings::{
    nvmlEventData_t, nvmlEventSet_t, nvmlReturn_enum_NVML_ERROR_TIMEOUT as ERROR_TIMEOUT,
    nvmlReturn_enum_NVML_SUCCESS as SUCCESS,
};

/// `nvmlEventTypeXidCriticalError`.
const XID_CRITICAL_ERROR: c_ulonglong = 0x8;
/// How long one collect waits for a queued event (the driver queues them between collects).
const WAIT_MS: u32 = 1;
/// At most this many events are taken per collect, so a storm cannot hold a collect.
pub const MAX_EVENTS_PER_COLLECT: usize = 256;

/// The event set the GPUs' XID errors arrive in.
pub struct XidWatch {
    /// The `nvmlEventSet_t`, kept as an address so the collector stays `Send`.
    set: usize,
    /// `(handle address, GPU index)` of each registered GPU.
    registered: Vec<(usize, u32)>,
}

/// One XID error: the GPU's index, the code and when it arrived (ms since the epoch).
pub type Xid = (u32, u64, u64);

impl XidWatch {
    /// Creates the event set.
    ///
    /// # Errors
    /// The NVML error (e.g. the library lacks the event functions).
    pub fn new(nvml: &Nvml) -> Result<XidWatch, NvmlError> {
        let create = nvml_sym(nvml.lib().nvmlEventSetCreate.as_ref())?;
        let mut set: nvmlEventSet_t = std::ptr::null_mut();
        // SAFETY: a valid pointer to write the set to.
        nvml_try(unsafe { create(&mut set) })?;
        Ok(XidWatch {
            set: set as usize,
            registered: Vec::new(),
        })
    }

    /// Registers GPU `index` for XID errors.
    ///
    /// # Errors
    /// The NVML error (NOT_SUPPORTED where the GPU cannot deliver them).
    pub fn register(
        &mut self,
        nvml: &Nvml,
        device: &Device<'_>,
        index: u32,
    ) -> Result<(), NvmlError> {
        let register = nvml_sym(nvml.lib().nvmlDeviceRegisterEvents.as_ref())?;
        // SAFETY: the handle and the set are live; the set was created by this library.
        let handle = unsafe { device.handle() };
        nvml_try(unsafe { register(handle, XID_CRITICAL_ERROR, self.set as nvmlEventSet_t) })?;
        self.registered.push((handle as usize, index));
        Ok(())
    }

    /// True when no GPU could be registered.
    pub fn is_empty(&self) -> bool {
        self.registered.is_empty()
    }

    /// The XID errors queued since the last call, at most [`MAX_EVENTS_PER_COLLECT`].
    ///
    /// # Errors
    /// The NVML error that stopped the draining (the events taken before it are lost to it).
    pub fn drain(&self, nvml: &Nvml) -> Result<Vec<Xid>, NvmlError> {
        let wait = nvml_sym(nvml.lib().nvmlEventSetWait_v2.as_ref())?;
        let mut out = Vec::new();
        while out.len() < MAX_EVENTS_PER_COLLECT {
            // SAFETY: an all-zero nvmlEventData_t is valid to write into.
            let mut data: nvmlEventData_t = unsafe { mem::zeroed() };
            // SAFETY: the set is live and `data` is valid for a write.
            let rc = unsafe { wait(self.set as nvmlEventSet_t, &mut data, WAIT_MS) };
            match rc {
                SUCCESS => {
                    if data.eventType & XID_CRITICAL_ERROR == 0 {
                        continue;
                    }
                    let gpu = self
                        .registered
                        .iter()
                        .find(|(h, _)| *h == data.device as usize)
                        .map(|(_, i)| *i);
                    if let Some(gpu) = gpu {
                        out.push((gpu, data.eventData, now_ms()));
                    }
                }
                ERROR_TIMEOUT => break,
                other => {
                    nvml_try(other)?;
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Frees the event set; called before the library shuts down.
    pub fn free(&mut self, nvml: &Nvml) {
        if self.set == 0 {
            return;
        }
        if let Ok(free) = nvml_sym(nvml.lib().nvmlEventSetFree.as_ref()) {
            // SAFETY: the set was created by this library and is freed once.
            unsafe { free(self.set as nvmlEventSet_t) };
        }
        self.set = 0;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What an XID code usually means (NVIDIA's XID catalogue), for the log line.
pub fn xid_meaning(xid: u64) -> &'static str {
    match xid {
        13 => "graphics engine exception",
        31 => "GPU memory page fault",
        43 => "GPU stopped processing",
        45 => "preemptive cleanup after an application error",
        48 => "double-bit ECC error",
        61 | 62 => "internal micro-controller error",
        63 => "ECC page retirement or row remapping recorded",
        64 => "ECC page retirement or row remapping failed",
        74 => "NVLink error",
        79 => "GPU has fallen off the bus",
        92 => "high single-bit ECC error rate",
        94 => "contained ECC error",
        95 => "uncontained ECC error",
        119 | 120 => "GSP firmware error",
        _ => "see NVIDIA's XID catalogue",
    }
}
