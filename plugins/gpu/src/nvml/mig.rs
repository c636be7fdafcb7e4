//! The MIG devices of a GPU in MIG mode through NVML: GPU/compute instance ids, profile, memory and (where the driver gives it) utilization.

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use vitals_plugin_api::sections::MigDevice;

use super::{raw, Fields};

/// At most this many MIG devices are read per GPU (NVML allows 7 on today's boards).
pub const MAX_MIG_DEVICES: u32 = 64;

/// Every MIG device of GPU `index`.
pub fn read(nvml: &Nvml, device: &Device<'_>, index: u32, f: &mut Fields<'_>) -> Vec<MigDevice> {
    let Some(count) = f.get("mig_device_count", device.mig_device_count()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..count.min(MAX_MIG_DEVICES) {
        let mig = match device.mig_device_by_index(i) {
            Ok(m) => m,
            // Slots without an instance answer NOT_FOUND.
            Err(NvmlError::NotFound) => continue,
            Err(e) => {
                f.get::<()>("mig_device", Err(e));
                continue;
            }
        };
        let memory = super::memory_any(nvml, &mig);
        let gi = raw::instance_id(nvml, &mig, false).unwrap_or(u32::MAX);
        let ci = raw::instance_id(nvml, &mig, true).unwrap_or(u32::MAX);
        out.push(MigDevice {
            id: format!("{index}/{gi}/{ci}"),
            gpu_instance_id: gi,
            compute_instance_id: ci,
            uuid: mig.uuid().ok(),
            profile: mig.name().ok().and_then(|n| profile(&n).map(str::to_owned)),
            memory_total_bytes: memory.map(|m| m.0),
            memory_used_bytes: memory.map(|m| m.1),
            // MIG devices answer NOT_SUPPORTED on today's drivers; kept when one answers.
            utilization_percent: mig.utilization_rates().ok().map(|u| u.gpu),
        });
    }
    out.sort_by_key(|m| (m.gpu_instance_id, m.compute_instance_id));
    out
}

/// The profile at the end of a MIG device's name: `NVIDIA H100 80GB HBM3 MIG 3g.40gb` -> `3g.40gb`.
pub fn profile(name: &str) -> Option<&str> {
    let (_, p) = name.rsplit_once(" MIG ")?;
    let p = p.trim();
    (!p.is_empty()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards reading the profile from a MIG device's name.
    #[test]
    fn reads_the_profile_from_the_name() {
        assert_eq!(
            profile("NVIDIA H100 80GB HBM3 MIG 3g.40gb"),
            Some("3g.40gb")
        );
        assert_eq!(
            profile("NVIDIA A100-SXM4-40GB MIG 1g.5gb+me"),
            Some("1g.5gb+me")
        );
        assert_eq!(profile("NVIDIA H100 80GB HBM3"), None);
        assert_eq!(profile("x MIG "), None);
    }
}
