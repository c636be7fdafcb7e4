//! `nvidia-smi -q -d PIDS,MEMORY`: every process on every GPU with its type (`C`, `G`, `C+G`), name, memory and MIG GPU/compute instance, and the MIG devices with their memory.

use vitals_plugin_api::sections::{GpuProcess, GpuProcessKind, MigDevice};

const MIB: u64 = 1 << 20;
/// At most this many processes are kept per GPU.
pub const MAX_PROCESSES_PER_GPU: usize = 4096;

/// At most this many MIG devices are kept per GPU.
pub const MAX_MIG_DEVICES_PER_GPU: usize = 64;

/// The processes and MIG devices of each GPU, by the PCI bus id its section is headed with.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedPids {
    /// `(PCI bus id, process)` pairs, in the order printed.
    pub processes: Vec<(String, GpuProcess)>,
    /// `(PCI bus id, MIG device)` pairs, in the order printed; `id` is left empty (the GPU's
    /// index is not in this output).
    pub mig_devices: Vec<(String, MigDevice)>,
    /// One sentence per value that could not be read.
    pub warnings: Vec<String>,
}

/// The process kind nvidia-smi prints: `C` compute, `G` graphics, `C+G` both; MPS (`M`, `M+C`)
/// counts as compute.
pub fn kind(t: &str) -> Option<GpuProcessKind> {
    match t.trim() {
        "C" | "M" | "M+C" => Some(GpuProcessKind::Compute),
        "G" => Some(GpuProcessKind::Graphics),
        "C+G" | "M+C+G" | "G+C" => Some(GpuProcessKind::ComputeGraphics),
        _ => None,
    }
}

/// An id that nvidia-smi prints as `N/A` outside MIG.
fn instance(v: &str) -> Option<u32> {
    v.trim().parse().ok()
}

/// Parses `nvidia-smi -q -d PIDS,MEMORY` (the `MIG Device` and `Processes` parts of `nvidia-smi -q`).
pub fn parse_pids(text: &str) -> ParsedPids {
    let mut out = ParsedPids::default();
    let mut gpu: Option<String> = None;
    let mut on_gpu = 0usize;
    // GPU/compute instance lines come before the `Process ID` line they belong to.
    let (mut gi, mut ci) = (None, None);
    let mut current: Option<GpuProcess> = None;
    // Inside a `MIG Device` block: the device, and the sub-block (`Shared FB Memory Usage`…).
    let mut mig: Option<MigDevice> = None;
    let mut mig_block = String::new();
    let mut migs_on_gpu = 0usize;
    let flush = |current: &mut Option<GpuProcess>, gpu: &Option<String>, out: &mut ParsedPids| {
        if let (Some(p), Some(g)) = (current.take(), gpu) {
            out.processes.push((g.clone(), p));
        }
    };
    for (n, line) in text.lines().enumerate() {
        if let Some(bus) = line.strip_prefix("GPU ") {
            flush(&mut current, &gpu, &mut out);
            flush_mig(&mut mig, &gpu, &mut out);
            gpu = Some(bus.trim().to_owned());
            on_gpu = 0;
            migs_on_gpu = 0;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if line.trim() == "MIG Device" {
            flush_mig(&mut mig, &gpu, &mut out);
            if migs_on_gpu < MAX_MIG_DEVICES_PER_GPU {
                migs_on_gpu += 1;
                mig = Some(MigDevice::default());
                mig_block.clear();
            }
            continue;
        }
        if mig.is_some() && indent <= 4 {
            flush_mig(&mut mig, &gpu, &mut out);
        }
        if let Some(m) = &mut mig {
            let (key, value) = line.split_once(':').unwrap_or((line, ""));
            let (key, value) = (key.trim(), value.trim());
            if value.is_empty() {
                mig_block = key.to_owned();
                continue;
            }
            let mib = || {
                super::query::present(value)
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .and_then(|m| m.checked_mul(MIB))
            };
            let memory_block = mig_block.ends_with("FB Memory Usage");
            match key {
                "GPU Instance ID" => m.gpu_instance_id = instance(value).unwrap_or(u32::MAX),
                "Compute Instance ID" => {
                    m.compute_instance_id = instance(value).unwrap_or(u32::MAX)
                }
                "Total" if memory_block => m.memory_total_bytes = mib(),
                "Used" if memory_block => m.memory_used_bytes = mib(),
                _ => {}
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "GPU instance ID" => gi = instance(value),
            "Compute instance ID" => ci = instance(value),
            "Process ID" => {
                flush(&mut current, &gpu, &mut out);
                let Ok(pid) = value.parse::<u32>() else {
                    out.warnings.push(format!(
                        "nvidia-smi -q line {}: `Process ID` is not a number: `{value}`",
                        n + 1
                    ));
                    continue;
                };
                if on_gpu >= MAX_PROCESSES_PER_GPU {
                    continue;
                }
                on_gpu += 1;
                current = Some(GpuProcess {
                    pid,
                    name: None,
                    used_memory_bytes: None,
                    kind: GpuProcessKind::Compute,
                    gpu_instance_id: gi.take(),
                    compute_instance_id: ci.take(),
                    container: None,
                });
            }
            "Type" => {
                if let Some(p) = &mut current {
                    match kind(value) {
                        Some(k) => p.kind = k,
                        None => out.warnings.push(format!(
                            "nvidia-smi -q line {}: unknown process type `{value}`",
                            n + 1
                        )),
                    }
                }
            }
            "Name" => {
                if let Some(p) = &mut current {
                    p.name = super::query::present(value).map(str::to_owned);
                }
            }
            "Used GPU Memory" => {
                if let Some(p) = &mut current {
                    p.used_memory_bytes = super::query::present(value)
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                        .and_then(|m| m.checked_mul(MIB));
                }
            }
            _ => {}
        }
    }
    flush(&mut current, &gpu, &mut out);
    flush_mig(&mut mig, &gpu, &mut out);
    out
}

fn flush_mig(mig: &mut Option<MigDevice>, gpu: &Option<String>, out: &mut ParsedPids) {
    if let (Some(m), Some(g)) = (mig.take(), gpu) {
        out.mig_devices.push((g.clone(), m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the process kinds, with the spellings of MPS.
    #[test]
    fn reads_kinds() {
        assert_eq!(kind("C"), Some(GpuProcessKind::Compute));
        assert_eq!(kind("G"), Some(GpuProcessKind::Graphics));
        assert_eq!(kind("C+G"), Some(GpuProcessKind::ComputeGraphics));
        assert_eq!(kind("M+C"), Some(GpuProcessKind::Compute));
        assert_eq!(kind("?"), None);
    }

    /// Guards hostile input: no GPU header, a bad PID, garbage lines; never a panic.
    #[test]
    fn survives_malformed_text() {
        let parsed =
            parse_pids("Process ID : 5\nGPU 0000:01:00.0\nProcess ID : x\n: :\n\u{0}\nType : Q\n");
        assert!(parsed.processes.is_empty(), "{parsed:?}");
        assert_eq!(parsed.warnings.len(), 1, "{parsed:?}");
        assert_eq!(parse_pids(""), ParsedPids::default());
    }

    /// Guards memory sizes in MiB whose bytes overflow 64 bits (a panic found by the property
    /// tests): no size rather than a panic, the process and MIG device kept.
    #[test]
    fn an_overflowing_memory_size_is_no_size() {
        assert_eq!(
            parse_pids("Process ID : 0\nUsed GPU Memory : 20000000000000\n"),
            ParsedPids::default(),
            "no GPU named"
        );
        let parsed = parse_pids("GPU 1\nProcess ID : 0\nUsed GPU Memory : 20000000000000\n");
        assert_eq!(parsed.processes.len(), 1, "{parsed:?}");
        assert_eq!(parsed.processes[0].1.used_memory_bytes, None);
        let parsed = parse_pids(
            "GPU 1\n    MIG Device\n        Shared FB Memory Usage\n            Total : 20000000000000 MiB\n",
        );
        assert_eq!(parsed.mig_devices.len(), 1, "{parsed:?}");
        assert_eq!(parsed.mig_devices[0].1.memory_total_bytes, None);
    }
}

#[cfg(test)]
mod real {
    use super::*;

    /// Guards the real `-q` of a desktop GeForce under load: the compositor and Xwayland are
    /// graphics processes, the encoders compute ones, none in a MIG instance.
    #[test]
    fn parses_graphics_and_compute_processes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/gpu/smi/pids-rtx2080super-610.57.04-load.txt"
        );
        let parsed = parse_pids(&std::fs::read_to_string(path).expect("fixture"));
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        type Row<'a> = (&'a str, u32, Option<&'a str>, Option<u64>, GpuProcessKind);
        let got: Vec<Row<'_>> = parsed
            .processes
            .iter()
            .map(|(bus, p)| {
                (
                    bus.as_str(),
                    p.pid,
                    p.name.as_deref(),
                    p.used_memory_bytes,
                    p.kind,
                )
            })
            .collect();
        let bus = "00000000:0C:00.0";
        assert_eq!(
            got,
            vec![
                (
                    bus,
                    1720,
                    Some("/usr/bin/gnome-shell"),
                    Some(173 * MIB),
                    GpuProcessKind::Graphics
                ),
                (
                    bus,
                    4556,
                    Some("/usr/bin/Xwayland"),
                    Some(3 * MIB),
                    GpuProcessKind::Graphics
                ),
                (
                    bus,
                    28511,
                    Some("ffmpeg"),
                    Some(230 * MIB),
                    GpuProcessKind::Compute
                ),
                (
                    bus,
                    28512,
                    Some("ffmpeg"),
                    Some(370 * MIB),
                    GpuProcessKind::Compute
                ),
            ]
        );
        assert!(parsed
            .processes
            .iter()
            .all(|(_, p)| p.gpu_instance_id.is_none()));
    }

    /// Guards the MIG devices of a real H200 in MIG mode (driver 610): instance ids and the
    /// shared FB memory, not the BAR1 figures that follow with the same keys.
    #[test]
    fn reads_mig_devices() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/gpu/smi/q-mig-h200-610.43.02.txt"
        );
        let parsed = parse_pids(&std::fs::read_to_string(path).expect("fixture"));
        assert!(parsed.processes.is_empty());
        assert_eq!(parsed.mig_devices.len(), 1, "{parsed:?}");
        let (bus, m) = &parsed.mig_devices[0];
        assert_eq!(bus, "00000000:83:00.0");
        assert_eq!((m.gpu_instance_id, m.compute_instance_id), (2, 0));
        assert_eq!(m.memory_total_bytes, Some(71_424 * MIB));
        assert_eq!(m.memory_used_bytes, Some(44 * MIB));
        assert_eq!(m.profile, None);
    }

    /// Guards MIG instance ids and `C+G` on the process they precede.
    #[test]
    fn reads_mig_instances_and_both_kinds() {
        let text = "GPU 00000000:83:00.0\n    Processes\n        GPU instance ID                   : 2\n        Compute instance ID               : 0\n        Process ID                        : 77\n            Type                          : C+G\n            Name                          : app\n            Used GPU Memory               : [N/A]\n        GPU instance ID                   : N/A\n        Compute instance ID               : N/A\n        Process ID                        : 78\n            Type                          : C\n";
        let parsed = parse_pids(text);
        let p = &parsed.processes[0].1;
        assert_eq!(
            (p.pid, p.kind, p.gpu_instance_id, p.compute_instance_id),
            (77, GpuProcessKind::ComputeGraphics, Some(2), Some(0))
        );
        assert_eq!(p.used_memory_bytes, None);
        let q = &parsed.processes[1].1;
        assert_eq!((q.pid, q.gpu_instance_id), (78, None));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// One generated process: pid, type letter, name, memory in MiB, MIG instance ids.
    type Process = (u32, &'static str, String, Option<u64>, Option<(u32, u32)>);

    fn process() -> impl Strategy<Value = Process> {
        (
            any::<u32>(),
            prop::sample::select(vec!["C", "G", "C+G", "M", "M+C"]),
            "/[a-zA-Z0-9/ ._-]{1,30}",
            prop::option::of(0u64..1 << 40),
            prop::option::of((0u32..16, 0u32..16)),
        )
    }

    proptest! {
        /// Guards that no text panics the `nvidia-smi -q` process parser.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse_pids(&text);
        }

        /// Guards that the parser's own keys with values of any kind (numbers past u64
        /// included), in any order and indentation, never panic it.
        #[test]
        fn hostile_values_never_panic(lines in prop::collection::vec(
            (
                "[ ]{0,12}",
                "GPU 0000:01:00.0|MIG Device|Process ID|Type|Name|Used GPU Memory|GPU [Ii]nstance ID|Compute [Ii]nstance ID|Shared FB Memory Usage|Total|Used",
                "[0-9]{1,20}( MiB)?|N/A|\\PC{0,10}",
            ),
            0..30,
        )) {
            let text: String = lines.iter().map(|(indent, key, value)| format!("{indent}{key} : {value}\n")).collect();
            let _ = parse_pids(&text);
            let text: String = lines.iter().map(|(indent, key, _)| format!("{indent}{key}\n")).collect();
            let _ = parse_pids(&text);
        }

        /// Guards the round trip: processes printed as `nvidia-smi -q -d PIDS` prints them,
        /// on several GPUs, come back with their GPU, pid, kind, name, memory and instances.
        #[test]
        fn well_formed_processes_round_trip(gpus in prop::collection::vec(
            ("[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\\.[0-7]", prop::collection::vec(process(), 0..5)),
            0..4,
        )) {
            let mut text = "\n==============NVSMI LOG==============\n\nAttached GPUs : 1\n".to_owned();
            for (bus, processes) in &gpus {
                text += &format!("GPU {bus}\n    Processes\n");
                for (pid, kind, name, memory, instances) in processes {
                    let (gi, ci) = instances.map_or(("N/A".to_owned(), "N/A".to_owned()), |(g, c)| (g.to_string(), c.to_string()));
                    let memory = memory.map_or("N/A".to_owned(), |m| format!("{m} MiB"));
                    text += &format!(
                        "        GPU instance ID                   : {gi}\n        Compute instance ID               : {ci}\n        Process ID                        : {pid}\n            Type                          : {kind}\n            Name                          : {name}\n            Used GPU Memory               : {memory}\n"
                    );
                }
            }
            let parsed = parse_pids(&text);
            prop_assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
            let want: Vec<(String, GpuProcess)> = gpus
                .iter()
                .flat_map(|(bus, processes)| processes.iter().map(move |(pid, k, name, memory, instances)| {
                    (bus.clone(), GpuProcess {
                        pid: *pid,
                        name: Some(name.trim().to_owned()),
                        used_memory_bytes: memory.map(|m| m * MIB),
                        kind: kind(k).unwrap_or(GpuProcessKind::Compute),
                        gpu_instance_id: instances.map(|(g, _)| g),
                        compute_instance_id: instances.map(|(_, c)| c),
                        container: None,
                    })
                }))
                .collect();
            prop_assert_eq!(parsed.processes, want);
        }

        /// Guards the MIG device round trip: instance ids and the shared memory block's total
        /// and used, not the BAR1 block's.
        #[test]
        fn mig_devices_round_trip(devices in prop::collection::vec((0u32..16, 0u32..16, 0u64..1 << 40, 0u64..1 << 40), 0..6)) {
            let mut text = "GPU 00000000:83:00.0\n    MIG Mode\n        Current : Enabled\n".to_owned();
            for (i, (gi, ci, total, used)) in devices.iter().enumerate() {
                text += &format!(
                    "    MIG Device\n        Index : {i}\n        GPU Instance ID : {gi}\n        Compute Instance ID : {ci}\n        Shared FB Memory Usage\n            Total : {total} MiB\n            Used : {used} MiB\n        Shared BAR1 Memory Usage\n            Total : 1 MiB\n            Used : 2 MiB\n"
                );
            }
            text += "    Processes : None\n";
            let parsed = parse_pids(&text);
            let got: Vec<(u32, u32, Option<u64>, Option<u64>)> = parsed
                .mig_devices
                .iter()
                .map(|(_, m)| (m.gpu_instance_id, m.compute_instance_id, m.memory_total_bytes, m.memory_used_bytes))
                .collect();
            let want: Vec<(u32, u32, Option<u64>, Option<u64>)> = devices
                .iter()
                .map(|(gi, ci, t, u)| (*gi, *ci, Some(t * MIB), Some(u * MIB)))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
