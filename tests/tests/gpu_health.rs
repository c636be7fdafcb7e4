//! End to end: GPU health signals, MIG, XID events and older drivers through the fake NVML's scripted boards, in the built host.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use vitals_e2e::{assert_promtool_accepts, target_dir, toml_path, tool_or_skip, vitals_bin, Host};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(20);

/// A fake NVML library built from `tests/fakes/nvml` (`libnvidia_ml.so`, or the example
/// `examples/libnvidia_ml_legacy.so` without the newer symbols).
fn fake(relative: &str) -> PathBuf {
    let lib = target_dir().join(relative);
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build -p vitals-fake-nvml --lib --examples` (cargo test builds both)",
        lib.display()
    );
    lib
}

/// Starts the host with only the gpu collector on `library`, with `env` for the fake.
fn start(library: &str, env: &[(&str, OsString)]) -> Host {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[collectors.gpu]\ninterval = \"200ms\"\n\n[collectors.gpu.config]\nsource = \"nvml\"\nnvml_library = {}\n",
        toml_path(&fake(library))
    );
    let path = dir.path().join("vitals.toml");
    std::fs::write(&path, config).expect("config");
    let mut cmd = Command::new(vitals_bin());
    cmd.arg("--config")
        .arg(&path)
        .args(["--bind", "127.0.0.1:0", "--log", "info"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Host::spawn(cmd, dir)
}

fn boards(scenario: &str) -> (&'static str, OsString) {
    ("VITALS_FAKE_NVML_BOARDS", scenario.into())
}

/// The gpu section once it is there.
fn section(host: &Host) -> Value {
    let snap = host.wait_for("the gpu section", WAIT, |s| {
        s["sections"]["gpu"].is_object()
    });
    snap["sections"]["gpu"].clone()
}

/// Guards the health signals: a board throttled by its power cap says so by name, with its
/// time held back and its busy encoder (9 % GPU, 87 % encoder); a board with ECC errors
/// reports every count, retired pages and remapped rows pending; a desktop board's
/// compositor is listed as a graphics process.
#[test]
fn health_boards_report_throttling_ecc_engines_and_graphics() {
    let host = start("libnvidia_ml.so", &[boards("health")]);
    let gpu = section(&host);
    let l4 = &gpu["gpus"][0];
    assert_eq!(l4["name"], "NVIDIA L4");
    assert_eq!(l4["throttle_reasons"], json!(["sw-power-cap"]));
    assert_eq!(l4["throttle_seconds"]["power"], 42.0);
    assert_eq!(l4["utilization_percent"], 9);
    assert_eq!(l4["encoder_utilization_percent"], 87);
    assert_eq!(l4["decoder_utilization_percent"], 64);
    assert_eq!(l4["jpeg_utilization_percent"], 5);
    assert_eq!(l4["encoder_sessions"], 6);
    assert_eq!(l4["power_limit_watts"], 72.0);

    let a100 = &gpu["gpus"][1];
    assert_eq!(a100["throttle_reasons"], json!(["hw-slowdown"]));
    assert_eq!(a100["throttle_seconds"]["thermal"], 7.5);
    assert_eq!(
        a100["ecc"],
        json!({
            "enabled": true, "pending_enabled": true,
            "corrected_volatile": 17, "uncorrected_volatile": 2,
            "corrected_aggregate": 1234, "uncorrected_aggregate": 5,
            "retired_pages_single_bit": 3, "retired_pages_double_bit": 1, "retired_pages_pending": true,
            "remapped_rows_correctable": 4, "remapped_rows_uncorrectable": 1,
            "remapped_rows_pending": true, "remapped_rows_failure": false
        })
    );
    assert_eq!(a100["memory_temperature_celsius"], 60);
    assert_eq!(a100["memory_reserved_bytes"], 512 * MIB);

    let rtx = &gpu["gpus"][3];
    assert_eq!(rtx["ecc"], Value::Null);
    assert_eq!(
        rtx["processes"],
        json!([{ "pid": 2001, "name": null, "used_memory_bytes": 180 * MIB, "kind": "graphics",
                 "gpu_instance_id": null, "compute_instance_id": null, "container": null }])
    );
}

/// Guards MIG: a GPU in MIG mode has no whole-GPU utilization and says why; its three
/// instances are listed with GPU/compute instance ids, profile, memory; its processes carry
/// the instance they run in.
#[test]
fn a_mig_gpu_lists_its_instances_and_their_processes() {
    let host = start("libnvidia_ml.so", &[boards("health")]);
    let gpu = section(&host);
    let h100 = &gpu["gpus"][2];
    assert_eq!(
        h100["mig_mode"],
        json!({ "enabled": true, "pending_enabled": true })
    );
    assert_eq!(h100["utilization_percent"], Value::Null);
    assert!(
        h100["utilization_note"]
            .as_str()
            .is_some_and(|n| n.contains("MIG mode")),
        "{h100}"
    );
    let mig = |gi: u32, profile: &str, total: u64, used: u64| {
        json!({
            "id": format!("2/{gi}/0"),
            "gpu_instance_id": gi, "compute_instance_id": 0,
            "uuid": format!("MIG-{gi:08x}-1111-4222-8333-000000000002"),
            "profile": profile,
            "memory_total_bytes": total * GIB, "memory_used_bytes": used * GIB,
            "utilization_percent": null
        })
    };
    assert_eq!(
        h100["mig_devices"],
        json!([
            mig(1, "3g.40gb", 40, 20),
            mig(5, "2g.20gb", 20, 8),
            mig(13, "1g.10gb", 10, 2)
        ])
    );
    let placed: Vec<(u64, u64, u64)> = h100["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().expect("pid"),
                p["gpu_instance_id"].as_u64().expect("GI"),
                p["compute_instance_id"].as_u64().expect("CI"),
            )
        })
        .collect();
    assert_eq!(
        placed,
        vec![(32_001, 1, 0), (32_002, 5, 0), (32_003, 13, 0)]
    );
}

/// Guards XID errors: events the test triggers while the host runs arrive through NVML's
/// event set, are counted per GPU with the last code and time, listed in the section, and
/// logged as warnings.
#[test]
fn xid_errors_arrive_while_the_host_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trigger = dir.path().join("xid");
    std::fs::write(&trigger, "").expect("trigger file");
    let host = start(
        "libnvidia_ml.so",
        &[
            boards("health"),
            (
                "VITALS_FAKE_NVML_XID_FILE",
                trigger.clone().into_os_string(),
            ),
        ],
    );
    let gpu = section(&host);
    assert_eq!(gpu["gpus"][1]["xid_errors"], 0, "registered, none yet");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&trigger)
        .expect("open");
    f.write_all(b"1 48\n1 63\n0 79\n").expect("write");
    drop(f);
    let snap = host.wait_for("three XID errors", WAIT, |s| {
        s["sections"]["gpu"]["events"]
            .as_array()
            .is_some_and(|e| e.len() == 3)
    });
    let gpu = &snap["sections"]["gpu"];
    assert_eq!(gpu["gpus"][1]["xid_errors"], 2);
    assert_eq!(gpu["gpus"][1]["last_xid"]["xid"], 63);
    assert!(
        gpu["gpus"][1]["last_xid"]["time_ms"]
            .as_u64()
            .expect("time")
            >= before
    );
    assert_eq!(gpu["gpus"][0]["xid_errors"], 1);
    assert_eq!(gpu["gpus"][2]["xid_errors"], 0);
    let texts: Vec<&str> = gpu["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            assert_eq!(e["kind"], "xid", "{e}");
            assert!(e["time_unix_ms"].as_u64().expect("time") >= before, "{e}");
            e["text"].as_str().expect("text")
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            "GPU 1: XID 48 (double-bit ECC error)",
            "GPU 1: XID 63 (ECC page retirement or row remapping recorded)",
            "GPU 0: XID 79 (GPU has fallen off the bus)"
        ]
    );
    // The host keeps them in its events list, each once although the section repeats them.
    host.wait_for("two more collects", WAIT, |s| {
        s["collectors"]["gpu"]["collects_total"].as_u64() >= Some(5)
    });
    let stored = host.get_ok("/admin/monitor/events");
    let xids: Vec<&Value> = stored["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "xid")
        .collect();
    assert_eq!(xids.len(), 3, "{stored:#}");
    let log = host.log();
    assert!(
        log.contains("GPU 1: XID 48 (double-bit ECC error)"),
        "{log}"
    );
    assert!(
        log.contains("GPU 0: XID 79 (GPU has fallen off the bus)"),
        "{log}"
    );
    assert_eq!(
        log.matches("XID 48").count(),
        1,
        "each event is logged once:\n{log}"
    );
}

/// Guards an NVML without `nvmlDeviceGetMemoryInfo_v2` and the `_v3` process calls (drivers
/// before R510): memory comes from the version 1 call (its `used` includes the reserved
/// memory, which it cannot tell apart), processes from the older calls, JPEG/OFA are empty.
#[test]
fn an_older_driver_falls_back_to_the_older_calls() {
    let host = start("examples/libnvidia_ml_legacy.so", &[]);
    let gpu = section(&host);
    let g0 = &gpu["gpus"][0];
    assert_eq!(g0["memory_total_bytes"], 24 * GIB);
    assert_eq!(g0["memory_used_bytes"], 10 * GIB + 512 * MIB);
    assert_eq!(g0["memory_free_bytes"], 24 * GIB - 512 * MIB - 10 * GIB);
    assert_eq!(g0["memory_reserved_bytes"], Value::Null);
    assert_eq!(g0["jpeg_utilization_percent"], Value::Null);
    let kinds: Vec<(u64, &str)> = g0["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().expect("pid"),
                p["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(kinds, vec![(1234, "graphics"), (4242, "compute")]);
    assert_eq!(gpu["gpus"][1]["memory_total_bytes"], 40 * GIB);
    assert_eq!(
        host.wait_for("collects", WAIT, |s| s["collectors"]["gpu"]
            ["collects_total"]
            .as_u64()
            >= Some(3))["collectors"]["gpu"]["state"],
        "ok"
    );
}

/// Guards WSL's NVML, which has `nvmlDeviceGetMemoryInfo_v2` but answers FUNCTION_NOT_FOUND:
/// memory still comes, through the version 1 call.
#[test]
fn a_function_not_found_memory_call_falls_back_too() {
    let host = start("libnvidia_ml.so", &[("VITALS_FAKE_NVML_WSL", "1".into())]);
    let gpu = section(&host);
    assert_eq!(gpu["gpus"][1]["memory_total_bytes"], 40 * GIB);
    assert_eq!(gpu["gpus"][1]["memory_used_bytes"], GIB);
    assert_eq!(gpu["gpus"][1]["memory_reserved_bytes"], Value::Null);
}

/// Guards the fleet board set the cost figure is measured on: eight GPUs, four processes each.
#[test]
fn eight_gpus_are_read() {
    let host = start("libnvidia_ml.so", &[boards("fleet")]);
    let gpu = section(&host);
    let gpus = gpu["gpus"].as_array().expect("gpus");
    assert_eq!(gpus.len(), 8);
    assert!(
        gpus.iter()
            .all(|g| g["processes"].as_array().map(Vec::len) == Some(4)),
        "{gpu:#}"
    );
}

/// Guards the GPU metrics of the health boards: an info series per GPU with its text fields,
/// the uuid on every GPU series, fans by index, no `vitals_gpu_index`, throttle reasons by
/// name, ECC and remapped rows, MIG devices; and promtool accepts the whole exposition.
#[test]
fn metrics_carry_gpu_info_uuid_health_and_mig() {
    let host = start("libnvidia_ml.so", &[boards("health")]);
    section(&host);
    let text = host.metrics();
    let u = |i: u32| format!("uuid=\"GPU-{i:08x}-0000-4000-8000-{i:012x}\"");
    for line in [
        format!("vitals_gpu_info{{compute_capability=\"8.9\",compute_mode=\"default\",cuda_driver_version=\"12.2\",driver_version=\"535.104.05\",gpu=\"0\",name=\"NVIDIA L4\",pci_bus_id=\"00000000:10:00.0\",performance_state=\"P0\",source=\"nvml\",{},vbios_version=\"96.00.74.00.01\"}} 1", u(0)),
        format!("vitals_gpu_temperature_celsius{{gpu=\"0\",{}}} 55", u(0)),
        format!("vitals_gpu_fan_speeds_ratio{{fan=\"0\",gpu=\"3\",{}}} 0.3", u(3)),
        format!("vitals_gpu_throttle_reason{{gpu=\"0\",reason=\"sw-power-cap\",{}}} 1", u(0)),
        format!("vitals_gpu_throttle_seconds_total{{cause=\"power\",gpu=\"0\",{}}} 42", u(0)),
        format!("vitals_gpu_encoder_utilization_ratio{{gpu=\"0\",{}}} 0.87", u(0)),
        format!("vitals_gpu_ecc_errors_total{{counter=\"volatile\",gpu=\"1\",type=\"uncorrected\",{}}} 2", u(1)),
        format!("vitals_gpu_remapped_rows_pending{{gpu=\"1\",{}}} 1", u(1)),
        format!("vitals_gpu_mig_memory_used_bytes{{compute_instance=\"0\",gpu=\"2\",gpu_instance=\"5\",mig_uuid=\"MIG-00000005-1111-4222-8333-000000000002\",profile=\"2g.20gb\",{}}} {}", u(2), 8 * GIB),
    ] {
        assert!(text.contains(&line), "missing `{line}` in:\n{text}");
    }
    assert!(!text.contains("vitals_gpu_index"), "{text}");
    assert!(!text.contains("fan_speed=\""), "{text}");
    if !tool_or_skip("promtool", "the GPU metrics with promtool") {
        return;
    }
    assert_promtool_accepts(&text);
}
