//! The `gpu` section: every NVIDIA GPU on the machine, as NVML or `nvidia-smi` reports it.

use serde::{Deserialize, Serialize};

/// The `gpu` section.
///
/// Every reading is optional: a GPU or driver that does not support one (NVML's
/// `NOT_SUPPORTED`, a symbol an old driver lacks, `[N/A]` from `nvidia-smi`) leaves only that
/// field empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuStats {
    /// Where the readings came from.
    pub source: GpuSource,
    /// The NVIDIA driver version, e.g. `535.104.05`.
    pub driver_version: Option<String>,
    /// The NVML library version, e.g. `12.535.104.05`.
    pub nvml_version: Option<String>,
    /// The highest CUDA version the driver supports, e.g. `12.2`.
    pub cuda_driver_version: Option<String>,
    /// One entry per GPU, in index order.
    pub gpus: Vec<GpuDevice>,
    /// The most recent XID errors of every GPU as events (kind `xid`), oldest first, at most
    /// [`MAX_GPU_EVENTS`]; the host stores each once in its events list. The counts per GPU
    /// are in [`GpuDevice::xid_errors`], the last code in [`GpuDevice::last_xid`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::sdk::SectionEvent>,
}

/// The most XID events a gpu section repeats.
pub const MAX_GPU_EVENTS: usize = 32;

/// One XID error the driver reported (NVML's event set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XidEvent {
    /// The GPU's index.
    pub gpu: u32,
    /// The XID code, e.g. `79` (GPU fell off the bus) or `48` (double-bit ECC error).
    pub xid: u64,
    /// When the collector received it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// Which interface produced a [`GpuStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuSource {
    /// The NVIDIA Management Library (`libnvidia-ml.so`).
    Nvml,
    /// The `nvidia-smi` command's CSV query output.
    NvidiaSmi,
}

/// One GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// The GPU's index as the driver numbers it (the `nvidia-smi -i` index).
    pub index: u32,
    /// The product name, e.g. `NVIDIA GeForce RTX 3090`.
    pub name: Option<String>,
    /// The GPU's UUID, e.g. `GPU-5c2b…`.
    pub uuid: Option<String>,
    /// The PCI bus id, e.g. `00000000:01:00.0`.
    pub pci_bus_id: Option<String>,
    /// The CUDA compute capability, e.g. `8.6`.
    pub compute_capability: Option<String>,
    /// The PCIe generation the link runs at now.
    pub pcie_generation: Option<u32>,
    /// The highest PCIe generation the GPU and system support.
    pub pcie_max_generation: Option<u32>,
    /// The PCIe lanes in use now (e.g. 16 for x16).
    pub pcie_link_width: Option<u32>,
    /// The most PCIe lanes the GPU and system support.
    pub pcie_max_link_width: Option<u32>,
    /// Share of the last sample period the GPU was busy.
    pub utilization_percent: Option<u32>,
    /// Share of the last sample period device memory was read or written.
    pub memory_utilization_percent: Option<u32>,
    /// Installed device memory (VRAM).
    pub memory_total_bytes: Option<u64>,
    /// Device memory in use.
    pub memory_used_bytes: Option<u64>,
    /// Device memory free.
    pub memory_free_bytes: Option<u64>,
    /// `memory_used_bytes` as a share of `memory_total_bytes`.
    pub memory_used_percent: Option<f64>,
    /// The GPU core temperature.
    pub temperature_celsius: Option<u32>,
    /// Power drawn by the whole board.
    pub power_draw_watts: Option<f64>,
    /// The power limit the driver enforces.
    pub power_limit_watts: Option<f64>,
    /// The mean intended speed of the fans, as a share of their maximum.
    pub fan_speed_percent: Option<u32>,
    /// The intended speed of each fan that reports one, as a share of its maximum.
    pub fan_speeds_percent: Vec<u32>,
    /// The current graphics (shader) clock.
    pub graphics_clock_mhz: Option<u32>,
    /// The current memory clock.
    pub memory_clock_mhz: Option<u32>,
    /// The performance state, `P0` (most performance) to `P15` (least).
    pub performance_state: Option<String>,
    /// Multi-Instance GPU mode, when the GPU reports one.
    pub mig_mode: Option<MigMode>,
    /// Processes using the GPU (compute and graphics).
    pub processes: Vec<GpuProcess>,
    /// Why the GPU could not be read at all (e.g. it fell off the bus); its readings are then empty.
    pub error: Option<String>,
    /// Device memory the driver and firmware reserve (`total = used + free + reserved`).
    #[serde(default)]
    pub memory_reserved_bytes: Option<u64>,
    /// The memory (HBM) temperature.
    #[serde(default)]
    pub memory_temperature_celsius: Option<u32>,
    /// The power limit the board ships with.
    #[serde(default)]
    pub power_default_limit_watts: Option<f64>,
    /// The highest power limit that can be set.
    #[serde(default)]
    pub power_max_limit_watts: Option<f64>,
    /// Energy the board used since the driver loaded (a counter).
    #[serde(default)]
    pub energy_joules: Option<f64>,
    /// Share of the last sample period the video encoder was busy.
    #[serde(default)]
    pub encoder_utilization_percent: Option<u32>,
    /// Share of the last sample period the video decoder was busy.
    #[serde(default)]
    pub decoder_utilization_percent: Option<u32>,
    /// Share of the last sample period the JPEG decoder was busy.
    #[serde(default)]
    pub jpeg_utilization_percent: Option<u32>,
    /// Share of the last sample period the optical flow accelerator was busy.
    #[serde(default)]
    pub ofa_utilization_percent: Option<u32>,
    /// Video encoder sessions running now.
    #[serde(default)]
    pub encoder_sessions: Option<u32>,
    /// PCIe bytes sent by the GPU per second (NVML samples it over 20 ms).
    #[serde(default)]
    pub pcie_tx_bytes_per_second: Option<u64>,
    /// PCIe bytes received by the GPU per second.
    #[serde(default)]
    pub pcie_rx_bytes_per_second: Option<u64>,
    /// PCIe replays (link-level retransmissions) since the driver loaded (a counter).
    #[serde(default)]
    pub pcie_replays: Option<u64>,
    /// The driver stays loaded with no client (persistence mode).
    #[serde(default)]
    pub persistence_mode: Option<bool>,
    /// Which compute contexts the GPU accepts.
    #[serde(default)]
    pub compute_mode: Option<ComputeMode>,
    /// The VBIOS version, e.g. `96.00.74.00.01`.
    #[serde(default)]
    pub vbios_version: Option<String>,
    /// ECC mode, error counts, retired pages and remapped rows; `None` where ECC is not supported.
    #[serde(default)]
    pub ecc: Option<GpuEcc>,
    /// Why the clocks are held below their maximum now (empty: they are not); `None` when
    /// the driver does not say.
    #[serde(default)]
    pub throttle_reasons: Option<Vec<ThrottleReason>>,
    /// Time the clocks were held back since the driver loaded, per cause (counters).
    #[serde(default)]
    pub throttle_seconds: Option<ThrottleSeconds>,
    /// XID errors received for this GPU since the collector started; `None` when the driver
    /// cannot deliver XID events for it.
    #[serde(default)]
    pub xid_errors: Option<u64>,
    /// The last XID error received for this GPU.
    #[serde(default)]
    pub last_xid: Option<XidEvent>,
    /// Why `utilization_percent` is empty when the driver gives a reason (e.g. MIG mode).
    #[serde(default)]
    pub utilization_note: Option<String>,
    /// The MIG devices (GPU instance / compute instance pairs) of a GPU in MIG mode.
    #[serde(default)]
    pub mig_devices: Vec<MigDevice>,
}

/// Which compute contexts a GPU accepts (nvidia-smi's `compute_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComputeMode {
    /// Many contexts, from many processes.
    Default,
    /// One context, used by one thread (deprecated by NVIDIA).
    ExclusiveThread,
    /// No compute context.
    Prohibited,
    /// One context, used by many threads of one process.
    ExclusiveProcess,
}

/// ECC state and the memory errors it counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuEcc {
    /// ECC is on now.
    pub enabled: bool,
    /// ECC will be on after the next reboot.
    pub pending_enabled: bool,
    /// Corrected (single-bit) errors since the driver loaded.
    pub corrected_volatile: Option<u64>,
    /// Uncorrected (double-bit) errors since the driver loaded.
    pub uncorrected_volatile: Option<u64>,
    /// Corrected errors over the board's life.
    pub corrected_aggregate: Option<u64>,
    /// Uncorrected errors over the board's life.
    pub uncorrected_aggregate: Option<u64>,
    /// Pages retired after repeated single-bit errors (pre-Ampere boards).
    pub retired_pages_single_bit: Option<u64>,
    /// Pages retired after a double-bit error.
    pub retired_pages_double_bit: Option<u64>,
    /// Pages waiting to be retired at the next reboot.
    pub retired_pages_pending: Option<bool>,
    /// Rows remapped after correctable errors (Ampere and later).
    pub remapped_rows_correctable: Option<u64>,
    /// Rows remapped after uncorrectable errors.
    pub remapped_rows_uncorrectable: Option<u64>,
    /// A remapping waits for a GPU reset.
    pub remapped_rows_pending: Option<bool>,
    /// A remapping failed: the board needs service.
    pub remapped_rows_failure: Option<bool>,
}

/// A reason the clocks are held below their maximum (NVML's clock event reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThrottleReason {
    /// Nothing runs; the clocks idle down (normal).
    GpuIdle,
    /// Held at the applications clocks setting.
    ApplicationsClocksSetting,
    /// The software power cap (the power limit) holds the clocks down.
    SwPowerCap,
    /// Hardware slowdown (clocks halved or less): heat or an external power brake.
    HwSlowdown,
    /// Held to the slowest GPU of a sync boost group.
    SyncBoost,
    /// The software thermal limit holds the clocks down.
    SwThermalSlowdown,
    /// Hardware thermal slowdown: the GPU is too hot.
    HwThermalSlowdown,
    /// Hardware power brake: the system's power supply asserted it.
    HwPowerBrakeSlowdown,
    /// Held by the display clock setting.
    DisplayClockSetting,
}

impl ThrottleReason {
    /// Every reason with its bit in NVML's mask (nvml.h `nvmlClocksEventReason*`).
    pub const BITS: [(u64, ThrottleReason); 9] = [
        (0x1, ThrottleReason::GpuIdle),
        (0x2, ThrottleReason::ApplicationsClocksSetting),
        (0x4, ThrottleReason::SwPowerCap),
        (0x8, ThrottleReason::HwSlowdown),
        (0x10, ThrottleReason::SyncBoost),
        (0x20, ThrottleReason::SwThermalSlowdown),
        (0x40, ThrottleReason::HwThermalSlowdown),
        (0x80, ThrottleReason::HwPowerBrakeSlowdown),
        (0x100, ThrottleReason::DisplayClockSetting),
    ];

    /// The reasons set in NVML's bitmask, in bit order.
    pub fn from_mask(mask: u64) -> Vec<ThrottleReason> {
        Self::BITS
            .iter()
            .filter(|(bit, _)| mask & bit != 0)
            .map(|(_, r)| *r)
            .collect()
    }

    /// True for the reasons that mean lost performance (not idle, not a setting).
    pub fn is_problem(self) -> bool {
        !matches!(
            self,
            ThrottleReason::GpuIdle
                | ThrottleReason::ApplicationsClocksSetting
                | ThrottleReason::DisplayClockSetting
        )
    }
}

/// Time the clocks were held back since the driver loaded, per cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ThrottleSeconds {
    /// By the power limit (software power cap).
    pub power: Option<f64>,
    /// By temperature.
    pub thermal: Option<f64>,
    /// By a sync boost group.
    pub sync_boost: Option<f64>,
    /// By the board's limit (hardware power brake).
    pub board_limit: Option<f64>,
}

/// One MIG device: a compute instance inside a GPU instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigDevice {
    /// `GPU/GI/CI` (e.g. `2/1/0`): the GPU's index, the GPU instance id and the compute
    /// instance id, unique on the machine (the label of the MIG series).
    pub id: String,
    /// The GPU instance id (nvidia-smi's `GI ID`).
    pub gpu_instance_id: u32,
    /// The compute instance id (`CI ID`).
    pub compute_instance_id: u32,
    /// The MIG device UUID, e.g. `MIG-…` (what `CUDA_VISIBLE_DEVICES` takes).
    pub uuid: Option<String>,
    /// The profile, e.g. `3g.40gb`.
    pub profile: Option<String>,
    /// Device memory of the instance.
    pub memory_total_bytes: Option<u64>,
    /// Device memory in use in the instance.
    pub memory_used_bytes: Option<u64>,
    /// Share of time the instance was busy, where the driver gives it.
    pub utilization_percent: Option<u32>,
}

/// Multi-Instance GPU mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigMode {
    /// MIG is enabled now.
    pub enabled: bool,
    /// MIG will be enabled after the next GPU reset.
    pub pending_enabled: bool,
}

/// A process that uses a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcess {
    /// The process id (in the host's PID namespace), to join with the process table.
    pub pid: u32,
    /// The process name, when known.
    pub name: Option<String>,
    /// Device memory the process uses, when the driver reports it.
    pub used_memory_bytes: Option<u64>,
    /// Whether it runs CUDA work (`compute`) or draws (`graphics`).
    pub kind: GpuProcessKind,
    /// The MIG GPU instance it runs in, on a GPU in MIG mode.
    #[serde(default)]
    pub gpu_instance_id: Option<u32>,
    /// The MIG compute instance it runs in.
    #[serde(default)]
    pub compute_instance_id: Option<u32>,
    /// The container it runs in, from `/proc/PID/cgroup`.
    #[serde(default)]
    pub container: Option<ProcessContainer>,
}

/// The container a process runs in, as its cgroup names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessContainer {
    /// The full container id (64 hex digits for Docker and containerd).
    pub id: String,
    /// The runtime the cgroup path names (`docker`, `containerd`, `crio`, `podman`, `kubepods`).
    pub runtime: String,
}

/// What a [`GpuProcess`] does on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuProcessKind {
    /// A CUDA / compute context.
    Compute,
    /// A graphics context.
    Graphics,
    /// Both a compute and a graphics context.
    #[serde(rename = "compute+graphics")]
    ComputeGraphics,
}
