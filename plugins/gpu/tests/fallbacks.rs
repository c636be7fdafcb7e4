//! The NVML reader against the fake libraries: which memory and process calls it settles on per GPU, for a current driver and one without the newer symbols.

use std::path::PathBuf;

use vitals_plugin_api::testing::skip;
use vitals_plugin_gpu::load_nvml;
use vitals_plugin_gpu::nvml::{MemoryApi, NvmlReader, ProcessApi};

/// A fake library in this test's profile folder (`target/debug`), if built.
fn fake(relative: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let lib = exe.parent()?.parent()?.join(relative);
    if lib.exists() {
        Some(lib)
    } else {
        skip(&format!(
            "{} is missing (cargo test --workspace builds it; or cargo build -p vitals-fake-nvml --lib --examples)",
            lib.display()
        ));
        None
    }
}

fn reader(lib: PathBuf) -> NvmlReader {
    NvmlReader::new(
        load_nvml(Some(&lib)).expect("load the fake"),
        "/proc".into(),
    )
}

/// Guards the fallbacks being remembered per GPU: against an NVML without
/// `nvmlDeviceGetMemoryInfo_v2` and the `_v3` process calls, each readable GPU settles on the
/// version 1 memory call and the `_v2` process calls after the first read, and keeps them;
/// the lost GPU is never probed; a current NVML keeps the newest calls.
#[test]
fn each_gpu_remembers_the_calls_that_work() {
    let (Some(legacy), Some(current)) = (
        fake("examples/libnvidia_ml_legacy.so"),
        fake("libnvidia_ml.so"),
    ) else {
        return;
    };
    let mut old = reader(legacy);
    let first = old.read().expect("read");
    assert_eq!(first.stats.gpus[0].memory_total_bytes, Some(24 << 30));
    for _ in 0..2 {
        old.read().expect("read");
        for gpu in [0, 1] {
            let memo = old.memo(gpu).expect("memo");
            assert_eq!(memo.memory, MemoryApi::V1, "GPU {gpu}");
            assert_eq!(memo.processes, ProcessApi::V2, "GPU {gpu}");
        }
        let lost = old.memo(2).expect("memo");
        assert_eq!(
            (lost.memory, lost.processes),
            (MemoryApi::V2, ProcessApi::V3)
        );
    }
    let mut new = reader(current);
    new.read().expect("read");
    let memo = new.memo(0).expect("memo");
    assert_eq!(
        (memo.memory, memo.processes),
        (MemoryApi::V2, ProcessApi::V3)
    );
}
