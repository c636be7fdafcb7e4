//! Bench: the gpu collector's wall time per collect through NVML (the fake library) and through nvidia-smi (the fake script), and the CSV parse per GPU line.
//!
//! `cargo bench -p vitals-plugin-gpu --bench collect [-- SIZE…]` (SIZE: GPU lines parsed; default 8 64).
//! Build the fake NVML first (`cargo build -p vitals-fake-nvml`, or `--release`); without it the
//! NVML figure is skipped with a note. The fakes answer at once, so the figures are the
//! collector's own cost (and, for nvidia-smi, starting two processes), not a driver's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vitals_plugin_api::Collector;
use vitals_plugin_gpu::smi::{parse_query_gpu, Field};
use vitals_plugin_gpu::{Config, GpuCollector, Source};

/// Mean and lowest wall time of `cycles` runs of `f`, after one warm-up run.
fn measure(cycles: u32, mut f: impl FnMut()) -> (Duration, Duration) {
    f();
    let mut total = Duration::ZERO;
    let mut min = Duration::MAX;
    for _ in 0..cycles {
        let start = Instant::now();
        f();
        let took = start.elapsed();
        total += took;
        min = min.min(took);
    }
    (total / cycles, min)
}

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

fn bench_collect(what: &str, config: Config, cycles: u32) {
    let mut collector = match GpuCollector::new(config) {
        Ok(c) => c,
        Err(e) => {
            println!("{what:<28} cannot start: {e}");
            return;
        }
    };
    let mut gpus = 0;
    let (mean, min) = measure(cycles, || match collector.collect() {
        Ok(stats) => gpus = stats.gpus.len(),
        Err(e) => panic!("{what}: {e}"),
    });
    println!(
        "{what:<28} {gpus} GPUs  mean {:>9.1} us  min {:>9.1} us  ({cycles} collects)",
        mean.as_secs_f64() * 1e6,
        min.as_secs_f64() * 1e6
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() { vec![8, 64] } else { sizes };

    match fake_nvml() {
        Some(lib) => bench_collect(
            "collect via NVML (fake)",
            Config {
                source: Source::Nvml,
                nvml_library: Some(lib),
                ..Config::default()
            },
            2000,
        ),
        None => println!(
            "NOTE: NVML figure skipped: no libnvidia_ml.so built (cargo build -p vitals-fake-nvml)"
        ),
    }
    bench_collect(
        "collect via nvidia-smi (fake)",
        Config {
            source: Source::NvidiaSmi,
            nvidia_smi: repo().join("tests/fixtures/gpu/nvidia-smi"),
            ..Config::default()
        },
        50,
    );

    let csv = std::fs::read_to_string(repo().join("tests/fixtures/gpu/query-gpu.csv"))
        .expect("tests/fixtures/gpu/query-gpu.csv");
    let line = csv.lines().next().expect("a GPU line");
    let rest = line.split_once(',').expect("columns").1;
    for n in sizes {
        let text: String = (0..n).map(|i| format!("{i},{rest}\n")).collect();
        let cycles = 200;
        let (mean, _) = measure(cycles, || {
            let parsed = parse_query_gpu(&Field::ALL, &text);
            assert_eq!(parsed.gpus.len(), n);
        });
        println!(
            "parse_query_gpu {n:>5} lines   mean {:>9.1} us  = {:>6.2} us per GPU line",
            mean.as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6 / n as f64
        );
    }
}
