//! Criterion bench: CPU time per gpu collect through NVML (the fake library: eight H100s, and the health boards with a MIG GPU), wall time through nvidia-smi (the fake script), and the CSV parse.
//!
//! `cargo bench -p vitals-plugin-gpu --bench collect`. Build the fake NVML first
//! (`cargo build -p vitals-fake-nvml`); without it the NVML figures are skipped with a note.
//! The NVML figures are the process's CPU time (CLOCK_PROCESS_CPUTIME_ID) per collect, so a
//! thread the collector starts counts too; the fakes answer at once, so they are the
//! collector's own cost, not a driver's. Each scenario loads its own copy of the fake library,
//! because the fake reads its scenario (`VITALS_FAKE_NVML_BOARDS`) once per copy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use vitals_plugin_api::Collector;
use vitals_plugin_gpu::smi::query::parse_query_gpu;
use vitals_plugin_gpu::{Config, GpuCollector, Source};

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The fake NVML next to this bench's profile folder, else in the debug one.
fn fake_nvml() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile = exe.parent()?.parent()?.to_path_buf();
    [
        profile.join("libnvidia_ml.so"),
        profile.parent()?.join("debug/libnvidia_ml.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// This process's CPU time so far.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A collector over a private copy of the fake library playing `scenario`.
fn nvml_collector(lib: &Path, scenario: &str, dir: &Path) -> GpuCollector {
    let copy = dir.join(scenario).join("libnvidia-ml.so.1");
    std::fs::create_dir_all(copy.parent().expect("parent")).expect("mkdir");
    std::fs::copy(lib, &copy).expect("copy the fake NVML");
    // The fake reads its scenario at its first nvmlInit; this bench is single-threaded here.
    std::env::set_var("VITALS_FAKE_NVML_BOARDS", scenario);
    GpuCollector::new(Config {
        source: Source::Nvml,
        nvml_library: Some(copy),
        ..Config::default()
    })
    .expect("collector")
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    match fake_nvml() {
        Some(lib) => {
            let mut group = c.benchmark_group("gpu collect CPU time via NVML (fake)");
            for (scenario, what) in [
                ("fleet", "8 GPUs"),
                ("health", "4 GPUs, one in MIG mode with 3 instances"),
            ] {
                let mut collector = nvml_collector(&lib, scenario, dir.path());
                let gpus = collector.collect().expect("collect").gpus.len();
                println!("{scenario}: {gpus} GPUs ({what})");
                group.bench_function(scenario, |b| {
                    b.iter_custom(|iters| {
                        let start = cpu_time();
                        for _ in 0..iters {
                            std::hint::black_box(collector.collect().expect("collect"));
                        }
                        cpu_time() - start
                    })
                });
            }
            group.finish();
        }
        None => println!(
            "NOTE: NVML figures skipped: no libnvidia_ml.so built (cargo build -p vitals-fake-nvml)"
        ),
    }

    let mut smi = GpuCollector::new(Config {
        source: Source::NvidiaSmi,
        nvidia_smi: repo().join("tests/fixtures/gpu/nvidia-smi"),
        ..Config::default()
    })
    .expect("collector");
    let mut group = c.benchmark_group("gpu collect wall time via nvidia-smi (fake script)");
    group.sample_size(10);
    group.bench_function("2 GPUs", |b| {
        b.iter(|| std::hint::black_box(smi.collect().expect("collect")))
    });
    group.finish();

    let csv = std::fs::read_to_string(repo().join("tests/fixtures/gpu/query-gpu.csv"))
        .expect("tests/fixtures/gpu/query-gpu.csv");
    let mut lines = csv.lines();
    let header = lines.next().expect("the header");
    let line = lines.next().expect("a GPU line");
    let rest = line.split_once(',').expect("columns").1;
    let mut group = c.benchmark_group("parse_query_gpu");
    for n in [8usize, 64] {
        let text: String = std::iter::once(format!("{header}\n"))
            .chain((0..n).map(|i| format!("{i},{rest}\n")))
            .collect();
        group.bench_function(format!("{n} lines"), |b| {
            b.iter(|| {
                let parsed = parse_query_gpu(&text);
                assert_eq!(parsed.gpus.len(), n);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
