//! End to end: the gpu collector in the built host, against the fake NVML library, fake `nvidia-smi` scripts and no driver at all.
// The expected section is one `json!` literal deeper than the default macro recursion allows.
#![recursion_limit = "256"]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use vitals_e2e::{target_dir, toml_path, Host};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(20);

/// The fake `libnvidia-ml.so` built from `tests/fakes/nvml`.
fn fake_nvml() -> PathBuf {
    let lib = target_dir().join("libnvidia_ml.so");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build -p vitals-fake-nvml` (make test builds the workspace)",
        lib.display()
    );
    lib
}

/// A script in `tests/fixtures/gpu`.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/gpu")).join(name)
}

/// A host running only the gpu collector (and cpu, to show the rest goes on) with `config`.
fn start(config: &str) -> Host {
    Host::start(&format!(
        r#"
[collectors.cpu]
interval = "200ms"

[collectors.gpu]
interval = "200ms"

[collectors.gpu.config]
{config}
"#
    ))
}

fn used_percent(used: u64, total: u64) -> f64 {
    used as f64 * 100.0 / total as f64
}

/// Waits until the gpu collector is in `state`; returns the snapshot and the status's reason.
fn wait_for_gpu_state(host: &Host, state: &str) -> (Value, String) {
    let snap = host.wait_for(&format!("gpu to be {state}"), WAIT, |s| {
        s["collectors"]["gpu"]["state"] == state
    });
    let reason = snap["collectors"]["gpu"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (snap, reason)
}

/// The successful collects of collector `name` so far.
fn collects(snap: &Value, name: &str) -> u64 {
    snap["collectors"][name]["collects_total"]
        .as_u64()
        .unwrap_or(0)
}

/// How often `needle` occurs in the host's log.
fn log_count(host: &Host, needle: &str) -> usize {
    host.log().matches(needle).count()
}

/// The values `tests/fakes/nvml` scripts, converted to the section's units.
fn expected_nvml_section() -> Value {
    json!({
        "source": "nvml",
        "driver_version": "535.104.05",
        "nvml_version": "12.535.104.05",
        "cuda_driver_version": "12.2",
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA GeForce RTX 3090",
                "uuid": "GPU-5c2b1d0e-3f4a-4b6c-8d9e-0a1b2c3d4e5f",
                "pci_bus_id": "00000000:01:00.0",
                "compute_capability": "8.6",
                "pcie_generation": 4,
                // The fake leaves nvmlDeviceGetMaxPcieLinkGeneration out, like an old driver.
                "pcie_max_generation": null,
                "pcie_link_width": 16,
                "pcie_max_link_width": 16,
                "utilization_percent": 37,
                "memory_utilization_percent": 21,
                "memory_total_bytes": 24 * GIB,
                "memory_used_bytes": 10 * GIB,
                "memory_free_bytes": 24 * GIB - 512 * MIB - 10 * GIB,
                "memory_used_percent": used_percent(10 * GIB, 24 * GIB),
                "temperature_celsius": 64,
                "power_draw_watts": 287.45,
                "power_limit_watts": 350.0,
                "fan_speed_percent": 57,
                "fan_speeds_percent": [54, 60],
                "graphics_clock_mhz": 1695,
                "memory_clock_mhz": 9751,
                "performance_state": "P2",
                "mig_mode": null,
                "processes": [
                    process(1234, "/usr/lib/xorg/Xorg", None, "graphics"),
                    process(4242, "python3", Some(8 * GIB), "compute")
                ],
                "error": null,
                "memory_reserved_bytes": 512 * MIB,
                // The fake's field values answer NOT_SUPPORTED for a GDDR board's memory temperature.
                "memory_temperature_celsius": null,
                "power_default_limit_watts": 350.0,
                "power_max_limit_watts": 400.0,
                "energy_joules": 123_456.789,
                "encoder_utilization_percent": 12,
                "decoder_utilization_percent": 3,
                "jpeg_utilization_percent": 0,
                "ofa_utilization_percent": 0,
                "encoder_sessions": 1,
                "pcie_tx_bytes_per_second": 110_546 * 1024,
                "pcie_rx_bytes_per_second": 1_370_556 * 1024,
                "pcie_replays": 0,
                "persistence_mode": false,
                "compute_mode": "default",
                "vbios_version": "94.02.42.40.a4",
                // A GeForce board has no ECC mode.
                "ecc": null,
                "throttle_reasons": [],
                "throttle_seconds": { "power": 15_820.333506, "thermal": 0.0, "sync_boost": 0.0, "board_limit": 0.0 },
                "xid_errors": 0,
                "last_xid": null,
                "utilization_note": null,
                "mig_devices": []
            },
            {
                "index": 1,
                "name": "NVIDIA A100-SXM4-40GB",
                "uuid": "GPU-a100a100-0000-4000-8000-000000000001",
                "pci_bus_id": "00000000:41:00.0",
                "compute_capability": "8.0",
                "pcie_generation": 3,
                "pcie_max_generation": null,
                "pcie_link_width": 8,
                "pcie_max_link_width": 16,
                "utilization_percent": 0,
                "memory_utilization_percent": 0,
                "memory_total_bytes": 40 * GIB,
                "memory_used_bytes": GIB,
                "memory_free_bytes": 39 * GIB,
                "memory_used_percent": used_percent(GIB, 40 * GIB),
                "temperature_celsius": 41,
                "power_draw_watts": 61.234,
                "power_limit_watts": 400.0,
                // The fan query answers NOT_SUPPORTED on this board.
                "fan_speed_percent": null,
                "fan_speeds_percent": [],
                "graphics_clock_mhz": 1410,
                "memory_clock_mhz": 1215,
                "performance_state": "P0",
                "mig_mode": { "enabled": true, "pending_enabled": true },
                "processes": [],
                "error": null,
                "memory_reserved_bytes": 0,
                "memory_temperature_celsius": 45,
                "power_default_limit_watts": 400.0,
                "power_max_limit_watts": 400.0,
                "energy_joules": 987_654.321,
                "encoder_utilization_percent": 0,
                "decoder_utilization_percent": 0,
                "jpeg_utilization_percent": 0,
                "ofa_utilization_percent": 0,
                "encoder_sessions": 0,
                "pcie_tx_bytes_per_second": 1000 * 1024,
                "pcie_rx_bytes_per_second": 2000 * 1024,
                "pcie_replays": 0,
                "persistence_mode": true,
                "compute_mode": "default",
                "vbios_version": "96.00.74.00.01",
                "ecc": {
                    "enabled": true, "pending_enabled": true,
                    "corrected_volatile": 0, "uncorrected_volatile": 0,
                    "corrected_aggregate": 0, "uncorrected_aggregate": 0,
                    "retired_pages_single_bit": 0, "retired_pages_double_bit": 0, "retired_pages_pending": false,
                    "remapped_rows_correctable": 0, "remapped_rows_uncorrectable": 0,
                    "remapped_rows_pending": false, "remapped_rows_failure": false
                },
                "throttle_reasons": ["gpu-idle"],
                "throttle_seconds": { "power": 0.0, "thermal": 0.0, "sync_boost": 0.0, "board_limit": 0.0 },
                "xid_errors": 0,
                "last_xid": null,
                // MIG is on but no instance is made: whole-GPU utilization is still reported.
                "utilization_note": null,
                "mig_devices": []
            },
            {
                // Counted, but its handle answers GPU_IS_LOST: listed with the reason, the
                // other GPUs unaffected.
                "index": 2,
                "name": null,
                "uuid": null,
                "pci_bus_id": null,
                "compute_capability": null,
                "pcie_generation": null,
                "pcie_max_generation": null,
                "pcie_link_width": null,
                "pcie_max_link_width": null,
                "utilization_percent": null,
                "memory_utilization_percent": null,
                "memory_total_bytes": null,
                "memory_used_bytes": null,
                "memory_free_bytes": null,
                "memory_used_percent": null,
                "temperature_celsius": null,
                "power_draw_watts": null,
                "power_limit_watts": null,
                "fan_speed_percent": null,
                "fan_speeds_percent": [],
                "graphics_clock_mhz": null,
                "memory_clock_mhz": null,
                "performance_state": null,
                "mig_mode": null,
                "processes": [],
                "error": "NVML cannot open the GPU: device fell off the bus or has otherwise become inacessible",
                "memory_reserved_bytes": null,
                "memory_temperature_celsius": null,
                "power_default_limit_watts": null,
                "power_max_limit_watts": null,
                "energy_joules": null,
                "encoder_utilization_percent": null,
                "decoder_utilization_percent": null,
                "jpeg_utilization_percent": null,
                "ofa_utilization_percent": null,
                "encoder_sessions": null,
                "pcie_tx_bytes_per_second": null,
                "pcie_rx_bytes_per_second": null,
                "pcie_replays": null,
                "persistence_mode": null,
                "compute_mode": null,
                "vbios_version": null,
                "ecc": null,
                "throttle_reasons": null,
                "throttle_seconds": null,
                "xid_errors": null,
                "last_xid": null,
                "utilization_note": null,
                "mig_devices": []
            }
        ]
    })
}

/// A process entry as the section serves it, outside MIG and outside any container.
fn process(pid: u32, name: &str, used: Option<u64>, kind: &str) -> Value {
    json!({
        "pid": pid, "name": name, "used_memory_bytes": used, "kind": kind,
        "gpu_instance_id": null, "compute_instance_id": null, "container": null
    })
}

fn nvml_config() -> String {
    format!(
        "nvml_library = {}\nnvidia_smi = \"/nonexistent/nvidia-smi\"",
        toml_path(&fake_nvml())
    )
}

/// Guards the NVML path end to end: through nvml-wrapper against the fake library, every
/// field arrives with its value and unit (mW -> W, bytes), a NOT_SUPPORTED field and a
/// missing symbol empty only themselves, a lost GPU only itself, and the host keeps per-GPU
/// history.
#[test]
fn nvml_reports_every_field_of_every_gpu() {
    let host = start(&nvml_config());
    let snap = host.wait_for("the gpu section", WAIT, |s| {
        s["sections"]["gpu"].is_object()
    });
    assert_eq!(snap["sections"]["gpu"], expected_nvml_section());
    let status = &snap["collectors"]["gpu"];
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["plugin"]["name"], "gpu");

    host.wait_for("three gpu collects", WAIT, |s| collects(s, "gpu") >= 3);
    let history = host.get_ok("/admin/monitor/history?collector=gpu");
    let series = history["gpu"].as_array().expect("gpu history");
    let find = |name: &str, label: &str| {
        series
            .iter()
            .find(|h| h["name"] == name && h["label"] == label)
            .unwrap_or_else(|| panic!("no {name} series for GPU {label} in {history:#}"))
    };
    for (name, unit, gpu0, gpu1) in [
        ("utilization_percent", "percent", json!(37.0), json!(0.0)),
        (
            "memory_used_bytes",
            "bytes",
            json!((10 * GIB) as f64),
            json!(GIB as f64),
        ),
        ("temperature_celsius", "celsius", json!(64.0), json!(41.0)),
        ("power_draw_watts", "watts", json!(287.45), json!(61.234)),
    ] {
        for (label, value) in [("0", gpu0), ("1", gpu1)] {
            let h = find(name, label);
            assert_eq!(h["unit"], unit, "{h}");
            let points = h["points"].as_array().expect("points");
            assert!(points.len() >= 2, "{h}");
            assert_eq!(points.last().expect("a point")[1], value, "{h}");
        }
    }
    let fan = find("fan_speed_percent", "0");
    assert_eq!(fan["points"][0][1], json!(57.0));
    assert!(
        !series
            .iter()
            .any(|h| h["name"] == "fan_speed_percent" && h["label"] == "1"),
        "a GPU without fans has no fan series: {history:#}"
    );
    assert!(
        !series.iter().any(|h| h["label"] == "2"),
        "a lost GPU has no series: {history:#}"
    );
}

/// Guards `GET /admin/monitor/gpu`: the section, the collector's status and per-GPU history.
#[test]
fn gpu_route_serves_section_status_and_history() {
    let host = start(&nvml_config());
    host.wait_for("two gpu collects", WAIT, |s| collects(s, "gpu") >= 2);
    let body = host.get_ok("/admin/monitor/gpu");
    assert!(
        body["timestamp"].is_string() || body["timestamp"].is_number(),
        "{body}"
    );
    assert_eq!(body["section"], expected_nvml_section());
    assert_eq!(body["status"]["state"], "ok", "{body}");
    let history = body["history"].as_array().expect("history");
    for label in ["0", "1"] {
        let h = history
            .iter()
            .find(|h| h["name"] == "utilization_percent" && h["label"] == label)
            .unwrap_or_else(|| panic!("no utilization history for GPU {label}: {body:#}"));
        assert_eq!(h["unit"], "percent");
        let point = &h["points"][0];
        assert!(
            point[0].as_u64().expect("unix ms") > 1_600_000_000_000,
            "{point}"
        );
        assert!(point[1].is_number(), "{point}");
    }
}

/// Guards the nvidia-smi fallback: NVML absent, a driver-610 nvidia-smi (its real
/// `--version` and `--help-query-gpu`): versions from `--version` (`CUDA UMD version`), the
/// columns asked by their current names (`kmd_version`, `pcie.link.gen.gpucurrent`,
/// `enforced.power.limit`), the CSV read by its header with `[N/A]` and `[Not Supported]`
/// empty, MiB -> bytes, processes with their kind from `-q -d PIDS` (graphics and
/// compute+graphics too), malformed lines skipped and warned about once.
#[test]
fn nvidia_smi_fallback_parses_the_query_output() {
    let host = start(&format!(
        "nvml_library = \"/nonexistent/libnvidia-ml.so.1\"\nnvidia_smi = {}",
        toml_path(&fixture("nvidia-smi"))
    ));
    let snap = host.wait_for("the gpu section from nvidia-smi", WAIT, |s| {
        s["sections"]["gpu"].is_object()
    });
    let gpu = &snap["sections"]["gpu"];
    assert_eq!(gpu["source"], "nvidia-smi", "{gpu}");
    assert_eq!(gpu["driver_version"], "535.104.05");
    assert_eq!(gpu["nvml_version"], "610.43");
    assert_eq!(gpu["cuda_driver_version"], "13.3");
    let gpus = gpu["gpus"].as_array().expect("gpus");
    assert_eq!(gpus.len(), 2, "the malformed line is skipped: {gpu:#}");

    let g0 = &gpus[0];
    assert_eq!(g0["index"], 0);
    assert_eq!(g0["name"], "NVIDIA GeForce RTX 3090");
    assert_eq!(g0["uuid"], "GPU-5c2b1d0e-3f4a-4b6c-8d9e-0a1b2c3d4e5f");
    assert_eq!(g0["pci_bus_id"], "00000000:01:00.0");
    assert_eq!(g0["compute_capability"], "8.6");
    assert_eq!(g0["pcie_generation"], 4);
    assert_eq!(g0["pcie_max_generation"], 4);
    assert_eq!(g0["pcie_link_width"], 16);
    assert_eq!(g0["pcie_max_link_width"], 16);
    assert_eq!(g0["utilization_percent"], 37);
    assert_eq!(g0["memory_utilization_percent"], 21);
    assert_eq!(g0["encoder_utilization_percent"], 64);
    assert_eq!(g0["decoder_utilization_percent"], 12);
    assert_eq!(g0["encoder_sessions"], 3);
    assert_eq!(g0["memory_total_bytes"], 24576 * MIB);
    assert_eq!(g0["memory_used_bytes"], 10240 * MIB);
    assert_eq!(g0["memory_free_bytes"], 13824 * MIB);
    assert_eq!(g0["memory_reserved_bytes"], 512 * MIB);
    assert_eq!(g0["memory_used_percent"], used_percent(10240, 24576));
    assert_eq!(g0["temperature_celsius"], 64);
    assert_eq!(g0["memory_temperature_celsius"], Value::Null);
    assert_eq!(g0["power_draw_watts"], 287.45);
    assert_eq!(g0["power_limit_watts"], 350.0);
    assert_eq!(g0["power_max_limit_watts"], 400.0);
    assert_eq!(g0["fan_speed_percent"], 57);
    assert_eq!(g0["fan_speeds_percent"], json!([57]));
    assert_eq!(g0["graphics_clock_mhz"], 1695);
    assert_eq!(g0["memory_clock_mhz"], 9751);
    assert_eq!(g0["performance_state"], "P2");
    assert_eq!(g0["persistence_mode"], false);
    assert_eq!(g0["compute_mode"], "default");
    assert_eq!(g0["vbios_version"], "94.02.42.40.A4");
    assert_eq!(g0["throttle_reasons"], json!(["sw-power-cap"]));
    assert_eq!(g0["throttle_seconds"]["power"], 4200.0);
    assert_eq!(g0["mig_mode"], Value::Null, "[N/A]");
    assert_eq!(g0["ecc"], Value::Null, "[N/A]");
    let proc = |pid: u32, name: &str, used: Option<u64>, kind: &str| {
        json!({ "pid": pid, "name": name, "used_memory_bytes": used, "kind": kind,
                "gpu_instance_id": null, "compute_instance_id": null, "container": null })
    };
    assert_eq!(
        g0["processes"],
        json!([
            proc(1234, "/usr/lib/xorg/Xorg", Some(42 * MIB), "graphics"),
            proc(4242, "python3", Some(8192 * MIB), "compute"),
            proc(5151, "/opt/serve/infer", None, "compute+graphics")
        ])
    );

    let g1 = &gpus[1];
    assert_eq!(g1["index"], 1);
    assert_eq!(g1["name"], "Tesla T4");
    assert_eq!(g1["compute_capability"], "7.5");
    assert_eq!(g1["pcie_link_width"], 8);
    assert_eq!(g1["memory_total_bytes"], 15360 * MIB);
    assert_eq!(g1["memory_used_bytes"], 5 * MIB);
    assert_eq!(g1["power_draw_watts"], Value::Null, "[N/A]");
    assert_eq!(g1["power_limit_watts"], 70.0);
    assert_eq!(g1["fan_speed_percent"], Value::Null, "[Not Supported]");
    assert_eq!(g1["fan_speeds_percent"], json!([]));
    assert_eq!(
        g1["decoder_utilization_percent"],
        Value::Null,
        "[Not Supported]"
    );
    assert_eq!(g1["performance_state"], "P8");
    assert_eq!(g1["compute_mode"], "exclusive-process");
    assert_eq!(
        g1["mig_mode"],
        json!({ "enabled": false, "pending_enabled": true })
    );
    assert_eq!(
        g1["ecc"],
        json!({
            "enabled": true, "pending_enabled": true,
            "corrected_volatile": 17, "uncorrected_volatile": 2,
            "corrected_aggregate": 1234, "uncorrected_aggregate": 5,
            "retired_pages_single_bit": 3, "retired_pages_double_bit": 1, "retired_pages_pending": true,
            "remapped_rows_correctable": null, "remapped_rows_uncorrectable": null,
            "remapped_rows_pending": null, "remapped_rows_failure": null
        })
    );
    assert_eq!(g1["throttle_reasons"], json!(["gpu-idle"]));
    assert_eq!(g1["processes"], json!([]));
    assert_eq!(snap["collectors"]["gpu"]["state"], "ok");

    host.wait_for("five gpu collects", WAIT, |s| collects(s, "gpu") >= 5);
    assert_eq!(
        log_count(&host, "nvidia-smi line 3 skipped"),
        1,
        "the malformed GPU line is warned about once, not on every collect:\n{}",
        host.log()
    );
    assert_eq!(
        log_count(&host, "`Process ID` is not a number: `not-a-pid`"),
        1,
        "{}",
        host.log()
    );
    assert_eq!(
        log_count(&host, "NVML could not be loaded"),
        1,
        "{}",
        host.log()
    );
}

/// Guards the no-driver state: no NVML library and no nvidia-smi is "unavailable" with both
/// reasons, logged once; health stays 200 and the other collectors go on.
#[test]
fn no_driver_is_unavailable_and_the_host_stays_healthy() {
    let mut host = start(
        "nvml_library = \"/nonexistent/libnvidia-ml.so.1\"\nnvidia_smi = \"/nonexistent/nvidia-smi\"",
    );
    let (snap, reason) = wait_for_gpu_state(&host, "unavailable");
    assert!(reason.contains("no NVIDIA driver"), "{reason}");
    assert!(
        reason.contains("/nonexistent/libnvidia-ml.so.1"),
        "{reason}"
    );
    assert!(
        reason.contains("`/nonexistent/nvidia-smi` was not found"),
        "{reason}"
    );
    assert!(snap["sections"]["gpu"].is_null(), "{snap}");

    // An unavailable collect counts as a (normal) failure, retried with backoff.
    let tries = |s: &Value| {
        s["collectors"]["gpu"]["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
    };
    let (tries0, cpu0) = (tries(&snap), collects(&snap, "cpu"));
    host.wait_for("more gpu tries and cpu collects", WAIT, |s| {
        tries(s) >= tries0 + 2 && collects(s, "cpu") >= cpu0 + 3
    });
    let (status, health) = host.get("/admin/monitor/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health["components"]["collector:gpu"]["state"], "unavailable",
        "{health}"
    );
    assert_eq!(
        health["components"]["collector:cpu"]["state"], "ok",
        "{health}"
    );
    assert_eq!(
        log_count(&host, "GPU section unavailable"),
        1,
        "logged once, not on every collect:\n{}",
        host.log()
    );
    assert!(host.is_running());
}

/// Guards nvidia-smi's "driver not loaded" answer (exit code 9): unavailable with its words.
#[test]
fn nvidia_smi_without_a_driver_is_unavailable() {
    let host = start(&format!(
        "source = \"nvidia-smi\"\nnvidia_smi = {}",
        toml_path(&fixture("nvidia-smi-no-driver"))
    ));
    let (_, reason) = wait_for_gpu_state(&host, "unavailable");
    assert!(
        reason.contains("couldn't communicate with the NVIDIA driver"),
        "{reason}"
    );
    assert!(
        !reason.contains("NVML"),
        "source = nvidia-smi never loads NVML: {reason}"
    );
    assert_eq!(host.get("/admin/monitor/health").0, 200);
}

/// Guards the timeout: an nvidia-smi that hangs is killed and the collect fails with the
/// reason, while the other collectors keep collecting.
#[test]
fn a_hanging_nvidia_smi_is_killed_at_the_timeout() {
    let host = Host::start(&format!(
        r#"
[collectors.cpu]
interval = "200ms"

[collectors.gpu]
interval = "1s"
deadline = "5s"

[collectors.gpu.config]
source = "nvidia-smi"
nvidia_smi = {}
timeout = "300ms"
"#,
        toml_path(&fixture("nvidia-smi-hangs"))
    ));
    let (snap, reason) = wait_for_gpu_state(&host, "failed");
    assert!(
        reason.contains("nvidia-smi-hangs` did not answer within the 300ms timeout"),
        "{reason}"
    );
    let cpu0 = collects(&snap, "cpu");
    host.wait_for("cpu to keep collecting", WAIT, |s| {
        collects(s, "cpu") >= cpu0 + 3
    });
}

/// Guards the shipped config on this machine: the gpu collector is on, and with no GPU it is
/// unavailable while health stays 200.
#[test]
fn default_config_keeps_health_green_without_a_gpu() {
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/vitals.toml"
    ))
    .expect("config/vitals.toml");
    let host = Host::start(&config);
    let snap = host.wait_for("the gpu collector to settle", WAIT, |s| {
        matches!(
            s["collectors"]["gpu"]["state"].as_str(),
            Some("ok" | "unavailable")
        )
    });
    if snap["collectors"]["gpu"]["state"] == "ok" {
        eprintln!(
            "NOTE: this machine has an NVIDIA GPU; the no-GPU path is covered by the other tests"
        );
        assert!(!snap["sections"]["gpu"]["gpus"]
            .as_array()
            .expect("gpus")
            .is_empty());
    }
    let (status, health) = host.get("/admin/monitor/health");
    assert_eq!(status, 200, "{health}");
}
