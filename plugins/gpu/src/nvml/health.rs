//! Health and load signals of one GPU through NVML: ECC, retired pages, remapped rows, throttle reasons and times, engines, PCIe traffic, power limits, energy, modes, VBIOS.

use nvml_wrapper::enum_wrappers::device::{
    ComputeMode as NvmlComputeMode, EccCounter, MemoryError, PcieUtilCounter, PerformancePolicy,
};
use nvml_wrapper::{Device, Nvml};
use vitals_plugin_api::sections::{
    ComputeMode, GpuDevice, GpuEcc, ThrottleReason, ThrottleSeconds,
};

use super::{milliwatts_to_watts, raw, Fields};

/// NVML reports PCIe throughput in KB/s (1024 bytes).
const KIB: u64 = 1024;
/// NVML reports violation times in nanoseconds.
const NS_PER_SECOND: f64 = 1e9;

/// Fills `gpu`'s health and load fields.
pub fn read(nvml: &Nvml, device: &Device<'_>, f: &mut Fields<'_>, gpu: &mut GpuDevice) {
    gpu.memory_temperature_celsius =
        f.get("memory_temperature", raw::memory_temperature(nvml, device));
    gpu.power_default_limit_watts = f
        .get(
            "power_default_limit",
            device.power_management_limit_default(),
        )
        .map(milliwatts_to_watts);
    gpu.power_max_limit_watts = f
        .get(
            "power_max_limit",
            device.power_management_limit_constraints(),
        )
        .map(|c| milliwatts_to_watts(c.max_limit));
    gpu.energy_joules = f
        .get("energy", device.total_energy_consumption())
        .map(|mj| mj as f64 / 1000.0);
    gpu.encoder_utilization_percent = f
        .get("encoder_utilization", device.encoder_utilization())
        .map(|u| u.utilization);
    gpu.decoder_utilization_percent = f
        .get("decoder_utilization", device.decoder_utilization())
        .map(|u| u.utilization);
    gpu.jpeg_utilization_percent = f.get(
        "jpeg_utilization",
        raw::engine_utilization(nvml, device, false),
    );
    gpu.ofa_utilization_percent = f.get(
        "ofa_utilization",
        raw::engine_utilization(nvml, device, true),
    );
    gpu.encoder_sessions = f
        .get("encoder_sessions", device.encoder_stats())
        .map(|s| s.session_count);
    gpu.pcie_tx_bytes_per_second = f
        .get("pcie_tx", device.pcie_throughput(PcieUtilCounter::Send))
        .map(|k| u64::from(k) * KIB);
    gpu.pcie_rx_bytes_per_second = f
        .get("pcie_rx", device.pcie_throughput(PcieUtilCounter::Receive))
        .map(|k| u64::from(k) * KIB);
    gpu.pcie_replays = f
        .get("pcie_replays", device.pcie_replay_counter())
        .map(u64::from);
    gpu.persistence_mode = f.get("persistence_mode", device.is_in_persistent_mode());
    gpu.compute_mode = f
        .get("compute_mode", device.compute_mode())
        .map(compute_mode);
    gpu.vbios_version = f.get("vbios_version", device.vbios_version());
    gpu.ecc = read_ecc(nvml, device, f);
    gpu.throttle_reasons = f
        .get("throttle_reasons", device.current_throttle_reasons())
        .map(|r| ThrottleReason::from_mask(r.bits()));
    gpu.throttle_seconds = read_throttle_seconds(device, f);
}

fn compute_mode(m: NvmlComputeMode) -> ComputeMode {
    match m {
        NvmlComputeMode::Default => ComputeMode::Default,
        NvmlComputeMode::ExclusiveThread => ComputeMode::ExclusiveThread,
        NvmlComputeMode::Prohibited => ComputeMode::Prohibited,
        NvmlComputeMode::ExclusiveProcess => ComputeMode::ExclusiveProcess,
    }
}

/// ECC mode and counts; `None` when the GPU has no ECC mode (GeForce boards).
fn read_ecc(nvml: &Nvml, device: &Device<'_>, f: &mut Fields<'_>) -> Option<GpuEcc> {
    let mode = f.get("ecc_mode", device.is_ecc_enabled())?;
    let mut count = |field: &str, error: MemoryError, counter: EccCounter| {
        f.get(field, device.total_ecc_errors(error, counter))
    };
    let mut ecc = GpuEcc {
        enabled: mode.currently_enabled,
        pending_enabled: mode.pending_enabled,
        corrected_volatile: count(
            "ecc_corrected_volatile",
            MemoryError::Corrected,
            EccCounter::Volatile,
        ),
        uncorrected_volatile: count(
            "ecc_uncorrected_volatile",
            MemoryError::Uncorrected,
            EccCounter::Volatile,
        ),
        corrected_aggregate: count(
            "ecc_corrected_aggregate",
            MemoryError::Corrected,
            EccCounter::Aggregate,
        ),
        uncorrected_aggregate: count(
            "ecc_uncorrected_aggregate",
            MemoryError::Uncorrected,
            EccCounter::Aggregate,
        ),
        ..GpuEcc::default()
    };
    ecc.retired_pages_single_bit = f.get(
        "retired_pages_single_bit",
        raw::retired_page_count(nvml, device, 0),
    );
    ecc.retired_pages_double_bit = f.get(
        "retired_pages_double_bit",
        raw::retired_page_count(nvml, device, 1),
    );
    ecc.retired_pages_pending = f.get("retired_pages_pending", device.are_pages_pending_retired());
    if let Some((corr, unc, pending, failure)) =
        f.get("remapped_rows", raw::remapped_rows(nvml, device))
    {
        ecc.remapped_rows_correctable = Some(u64::from(corr));
        ecc.remapped_rows_uncorrectable = Some(u64::from(unc));
        ecc.remapped_rows_pending = Some(pending);
        ecc.remapped_rows_failure = Some(failure);
    }
    Some(ecc)
}

/// Time held back per cause; `None` when the driver gives none of them.
fn read_throttle_seconds(device: &Device<'_>, f: &mut Fields<'_>) -> Option<ThrottleSeconds> {
    let mut seconds = |field: &str, policy: PerformancePolicy| {
        f.get(field, device.violation_status(policy))
            .map(|v| v.violation_time as f64 / NS_PER_SECOND)
    };
    let t = ThrottleSeconds {
        power: seconds("throttle_power", PerformancePolicy::Power),
        thermal: seconds("throttle_thermal", PerformancePolicy::Thermal),
        sync_boost: seconds("throttle_sync_boost", PerformancePolicy::SyncBoost),
        board_limit: seconds("throttle_board_limit", PerformancePolicy::BoardLimit),
    };
    (t != ThrottleSeconds::default()).then_some(t)
}
