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
    /// The NVML library version, e.g. `12.535.104.05` (NVML only).
    pub nvml_version: Option<String>,
    /// The highest CUDA version the driver supports, e.g. `12.2` (NVML only).
    pub cuda_driver_version: Option<String>,
    /// One entry per GPU, in index order.
    pub gpus: Vec<GpuDevice>,
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
