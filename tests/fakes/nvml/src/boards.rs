//! The scripted boards the fake NVML answers for, chosen by `VITALS_FAKE_NVML_BOARDS`, and the handles it gives out.
//!
//! Scenarios:
//! - `default` (or unset): an RTX 3090 with two fans and two processes, an A100 whose fan query
//!   answers NOT_SUPPORTED and whose MIG mode is on (no instances), and a third GPU counted but
//!   lost (`NVML_ERROR_GPU_IS_LOST`).
//! - `fleet`: eight H100s with four processes each (the cost figure).
//! - `health`: an L4 throttling on power (SW power cap) and busy encoding, an A100 with ECC
//!   errors, retired pages and remapped rows pending, an H100 in MIG mode with three instances
//!   and processes in them, and an RTX 4000 with a graphics-only process (a compositor).
//!
//! `VITALS_FAKE_NVML_PROCESSES` names a file of `GPU_INDEX PID BYTES` lines: extra compute
//! processes, read on every process query (a test writes a container's PID there).

use std::ffi::{c_uint, CString};
use std::sync::OnceLock;

use nvml_wrapper_sys::bindings::nvmlDevice_t;

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;
/// `usedGpuMemory` when the driver cannot tell (NVML_VALUE_NOT_AVAILABLE as unsigned long long).
pub const MEMORY_NOT_AVAILABLE: u64 = u64::MAX;
/// `gpuInstanceId`/`computeInstanceId` of a process outside any MIG instance.
pub const NO_INSTANCE: c_uint = u32::MAX;

/// Clock event (throttle) reason bits, as in nvml.h.
pub const REASON_GPU_IDLE: u64 = 0x1;
pub const REASON_SW_POWER_CAP: u64 = 0x4;
pub const REASON_HW_SLOWDOWN: u64 = 0x8;

/// A process on a board: PID, memory, GPU instance, compute instance.
#[derive(Clone, Copy)]
pub struct Proc {
    pub pid: c_uint,
    pub memory: u64,
    pub gi: c_uint,
    pub ci: c_uint,
}

const fn proc(pid: c_uint, memory: u64) -> Proc {
    Proc {
        pid,
        memory,
        gi: NO_INSTANCE,
        ci: NO_INSTANCE,
    }
}

/// ECC state: mode (current, pending) and the four totals.
#[derive(Clone, Copy)]
pub struct Ecc {
    pub mode: (c_uint, c_uint),
    pub corrected_volatile: u64,
    pub uncorrected_volatile: u64,
    pub corrected_aggregate: u64,
    pub uncorrected_aggregate: u64,
    /// Retired pages: single-bit, double-bit, pending.
    pub retired: (c_uint, c_uint, c_uint),
    /// Remapped rows: correctable, uncorrectable, pending, failure.
    pub remapped: (c_uint, c_uint, c_uint, c_uint),
}

/// One MIG device (a compute instance inside a GPU instance).
pub struct MigDev {
    pub gi: c_uint,
    pub ci: c_uint,
    pub name: CString,
    pub uuid: CString,
    pub memory_total: u64,
    pub memory_used: u64,
}

/// One scripted GPU.
pub struct Board {
    pub name: CString,
    pub uuid: CString,
    pub bus_id: CString,
    pub compute_capability: (i32, i32),
    pub pcie_generation: c_uint,
    pub pcie_link_width: c_uint,
    pub pcie_max_link_width: c_uint,
    /// `None`: NOT_SUPPORTED (a GPU in MIG mode).
    pub utilization: Option<(c_uint, c_uint)>,
    pub memory_total: u64,
    pub memory_reserved: u64,
    pub memory_used: u64,
    pub temperature_celsius: c_uint,
    pub memory_temperature_celsius: Option<c_uint>,
    pub power_milliwatts: c_uint,
    pub power_limit_milliwatts: c_uint,
    pub power_default_limit_milliwatts: c_uint,
    pub power_max_limit_milliwatts: c_uint,
    pub energy_millijoules: u64,
    /// `None`: the fan query answers NOT_SUPPORTED.
    pub fans_percent: Option<Vec<c_uint>>,
    pub clocks_mhz: (c_uint, c_uint),
    pub pstate: c_uint,
    /// `None`: the MIG query answers NOT_SUPPORTED.
    pub mig_mode: Option<(c_uint, c_uint)>,
    pub compute_processes: Vec<Proc>,
    pub graphics_processes: Vec<Proc>,
    /// Encoder, decoder, JPEG, OFA utilization; `None`: NOT_SUPPORTED.
    pub engines: Option<[c_uint; 4]>,
    pub encoder_sessions: c_uint,
    /// PCIe TX and RX in KB/s.
    pub pcie_kbps: (c_uint, c_uint),
    pub pcie_replays: c_uint,
    pub persistence: c_uint,
    pub compute_mode: c_uint,
    pub vbios: CString,
    /// `None`: ECC NOT_SUPPORTED (GeForce boards).
    pub ecc: Option<Ecc>,
    pub throttle_reasons: u64,
    /// Violation time in ns for power, thermal, sync boost, board limit.
    pub violations_ns: [u64; 4],
    pub mig_devices: Vec<MigDev>,
}

impl Board {
    /// A plain board with every reading set; scenarios change what they need.
    fn base(index: usize, name: &str) -> Board {
        Board {
            name: cstring(name),
            uuid: cstring(&format!("GPU-{index:08x}-0000-4000-8000-{index:012x}")),
            bus_id: cstring(&format!("00000000:{:02X}:00.0", 0x10 + index * 0x10)),
            compute_capability: (9, 0),
            pcie_generation: 5,
            pcie_link_width: 16,
            pcie_max_link_width: 16,
            utilization: Some((50, 20)),
            memory_total: 80 * GIB,
            memory_reserved: 512 * MIB,
            memory_used: 20 * GIB,
            temperature_celsius: 55,
            memory_temperature_celsius: Some(60),
            power_milliwatts: 300_000,
            power_limit_milliwatts: 700_000,
            power_default_limit_milliwatts: 700_000,
            power_max_limit_milliwatts: 700_000,
            energy_millijoules: 5_000_000_000,
            fans_percent: None,
            clocks_mhz: (1980, 2619),
            pstate: 0,
            mig_mode: Some((0, 0)),
            compute_processes: Vec::new(),
            graphics_processes: Vec::new(),
            engines: Some([0, 0, 0, 0]),
            encoder_sessions: 0,
            pcie_kbps: (1000, 2000),
            pcie_replays: 0,
            persistence: 1,
            compute_mode: 0,
            vbios: cstring("96.00.74.00.01"),
            ecc: Some(Ecc {
                mode: (1, 1),
                corrected_volatile: 0,
                uncorrected_volatile: 0,
                corrected_aggregate: 0,
                uncorrected_aggregate: 0,
                retired: (0, 0, 0),
                remapped: (0, 0, 0, 0),
            }),
            throttle_reasons: 0,
            violations_ns: [0; 4],
            mig_devices: Vec::new(),
        }
    }
}

fn cstring(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// The boards of this process's scenario, and how many more are counted but lost.
pub struct Scenario {
    pub boards: Vec<Board>,
    pub lost: usize,
}

static SCENARIO: OnceLock<Scenario> = OnceLock::new();

/// The scenario `VITALS_FAKE_NVML_BOARDS` names, built once.
pub fn scenario() -> &'static Scenario {
    SCENARIO.get_or_init(
        || match std::env::var("VITALS_FAKE_NVML_BOARDS").as_deref() {
            Ok("fleet") => fleet(),
            Ok("health") => health(),
            _ => default(),
        },
    )
}

fn default() -> Scenario {
    let mut rtx = Board::base(0, "NVIDIA GeForce RTX 3090");
    rtx.uuid = cstring("GPU-5c2b1d0e-3f4a-4b6c-8d9e-0a1b2c3d4e5f");
    rtx.bus_id = cstring("00000000:01:00.0");
    rtx.compute_capability = (8, 6);
    rtx.pcie_generation = 4;
    rtx.utilization = Some((37, 21));
    rtx.memory_total = 24 * GIB;
    rtx.memory_used = 10 * GIB;
    rtx.temperature_celsius = 64;
    rtx.memory_temperature_celsius = None;
    rtx.power_milliwatts = 287_450;
    rtx.power_limit_milliwatts = 350_000;
    rtx.power_default_limit_milliwatts = 350_000;
    rtx.power_max_limit_milliwatts = 400_000;
    rtx.energy_millijoules = 123_456_789;
    rtx.fans_percent = Some(vec![54, 60]);
    rtx.clocks_mhz = (1695, 9751);
    rtx.pstate = 2;
    rtx.mig_mode = None;
    rtx.compute_processes = vec![proc(4242, 8 * GIB)];
    rtx.graphics_processes = vec![proc(1234, MEMORY_NOT_AVAILABLE)];
    rtx.engines = Some([12, 3, 0, 0]);
    rtx.encoder_sessions = 1;
    rtx.pcie_kbps = (110_546, 1_370_556);
    rtx.persistence = 0;
    rtx.vbios = cstring("94.02.42.40.a4");
    rtx.ecc = None;
    rtx.throttle_reasons = 0;
    rtx.violations_ns = [15_820_333_506_000, 0, 0, 0];

    let mut a100 = Board::base(1, "NVIDIA A100-SXM4-40GB");
    a100.uuid = cstring("GPU-a100a100-0000-4000-8000-000000000001");
    a100.bus_id = cstring("00000000:41:00.0");
    a100.compute_capability = (8, 0);
    a100.pcie_generation = 3;
    a100.pcie_link_width = 8;
    a100.utilization = Some((0, 0));
    a100.memory_total = 40 * GIB;
    a100.memory_reserved = 0;
    a100.memory_used = GIB;
    a100.temperature_celsius = 41;
    a100.memory_temperature_celsius = Some(45);
    a100.power_milliwatts = 61_234;
    a100.power_limit_milliwatts = 400_000;
    a100.power_default_limit_milliwatts = 400_000;
    a100.power_max_limit_milliwatts = 400_000;
    a100.energy_millijoules = 987_654_321;
    a100.clocks_mhz = (1410, 1215);
    a100.mig_mode = Some((1, 1));
    a100.engines = Some([0, 0, 0, 0]);
    a100.throttle_reasons = REASON_GPU_IDLE;
    Scenario {
        boards: vec![rtx, a100],
        lost: 1,
    }
}

fn fleet() -> Scenario {
    let boards = (0..8)
        .map(|i| {
            let mut b = Board::base(i, "NVIDIA H100 80GB HBM3");
            let base = 10_000 + 10 * i as c_uint;
            b.compute_processes = (0..4).map(|p| proc(base + p, 4 * GIB)).collect();
            b
        })
        .collect();
    Scenario { boards, lost: 0 }
}

fn health() -> Scenario {
    let mut l4 = Board::base(0, "NVIDIA L4");
    l4.compute_capability = (8, 9);
    l4.pcie_generation = 4;
    l4.memory_total = 24 * GIB;
    l4.utilization = Some((9, 4));
    l4.power_milliwatts = 71_800;
    l4.power_limit_milliwatts = 72_000;
    l4.power_default_limit_milliwatts = 72_000;
    l4.power_max_limit_milliwatts = 72_000;
    l4.engines = Some([87, 64, 5, 0]);
    l4.encoder_sessions = 6;
    l4.throttle_reasons = REASON_SW_POWER_CAP;
    l4.violations_ns = [42_000_000_000, 0, 0, 0];
    l4.compute_processes = vec![proc(31_000, 3 * GIB)];

    let mut a100 = Board::base(1, "NVIDIA A100-SXM4-80GB");
    a100.compute_capability = (8, 0);
    a100.pcie_generation = 4;
    a100.ecc = Some(Ecc {
        mode: (1, 1),
        corrected_volatile: 17,
        uncorrected_volatile: 2,
        corrected_aggregate: 1_234,
        uncorrected_aggregate: 5,
        retired: (3, 1, 1),
        remapped: (4, 1, 1, 0),
    });
    a100.throttle_reasons = REASON_HW_SLOWDOWN;
    a100.violations_ns = [0, 7_500_000_000, 0, 0];

    let mut h100 = Board::base(2, "NVIDIA H100 80GB HBM3");
    h100.mig_mode = Some((1, 1));
    h100.utilization = None;
    h100.engines = None;
    h100.memory_used = 30 * GIB;
    let mig = |gi: c_uint, profile: &str, total_gib: u64, used_gib: u64| MigDev {
        gi,
        ci: 0,
        name: cstring(&format!("NVIDIA H100 80GB HBM3 MIG {profile}")),
        uuid: cstring(&format!("MIG-{gi:08x}-1111-4222-8333-000000000002")),
        memory_total: total_gib * GIB,
        memory_used: used_gib * GIB,
    };
    h100.mig_devices = vec![
        mig(1, "3g.40gb", 40, 20),
        mig(5, "2g.20gb", 20, 8),
        mig(13, "1g.10gb", 10, 2),
    ];
    let in_mig = |pid: c_uint, gib: u64, gi: c_uint| Proc {
        pid,
        memory: gib * GIB,
        gi,
        ci: 0,
    };
    h100.compute_processes = vec![
        in_mig(32_001, 19, 1),
        in_mig(32_002, 7, 5),
        in_mig(32_003, 1, 13),
    ];

    let mut rtx = Board::base(3, "NVIDIA RTX 4000 Ada Generation");
    rtx.compute_capability = (8, 9);
    rtx.ecc = None;
    rtx.fans_percent = Some(vec![30]);
    rtx.graphics_processes = vec![proc(2_001, 180 * MIB)];
    Scenario {
        boards: vec![l4, a100, h100, rtx],
        lost: 0,
    }
}

/// What a handle this library gave out points at.
pub enum Handle {
    /// A whole GPU.
    Gpu(usize, &'static Board),
    /// A MIG device of a GPU.
    Mig(&'static Board, &'static MigDev),
}

/// The handle of GPU `index`.
pub fn gpu_handle(board: &'static Board) -> nvmlDevice_t {
    board as *const Board as nvmlDevice_t
}

/// The handle of a MIG device.
pub fn mig_handle(dev: &'static MigDev) -> nvmlDevice_t {
    dev as *const MigDev as nvmlDevice_t
}

/// The board or MIG device behind a handle, when it is one of ours.
pub fn resolve(device: nvmlDevice_t) -> Option<Handle> {
    let s = scenario();
    for (i, b) in s.boards.iter().enumerate() {
        if std::ptr::eq(b as *const Board as *const (), device as *const ()) {
            return Some(Handle::Gpu(i, b));
        }
        for m in &b.mig_devices {
            if std::ptr::eq(m as *const MigDev as *const (), device as *const ()) {
                return Some(Handle::Mig(b, m));
            }
        }
    }
    None
}

/// The extra compute processes the test lists for GPU `index` (`VITALS_FAKE_NVML_PROCESSES`).
pub fn extra_processes(index: usize) -> Vec<Proc> {
    let Some(path) = std::env::var_os("VITALS_FAKE_NVML_PROCESSES") else {
        return Vec::new();
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(g)), Some(Ok(pid)), Some(Ok(bytes))) if g as usize == index => {
                    Some(proc(pid as c_uint, bytes))
                }
                _ => None,
            }
        })
        .collect()
}
