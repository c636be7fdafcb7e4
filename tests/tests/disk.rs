//! End to end: the built host with the built disk plugin, compared with this machine's mount table and `df`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vitals_e2e::block::BlockMount;
use vitals_e2e::{skip, Host};

/// The file system type and source of `/`, as util-linux's `findmnt` sees it (`-v`: without
/// a `[/subvolume]` suffix).
fn findmnt_root() -> (String, String) {
    let out = Command::new("findmnt")
        .args(["-nv", "-o", "FSTYPE,SOURCE", "/"])
        .output()
        .expect("findmnt (util-linux; scripts/test-deps.d installs it)");
    assert!(out.status.success(), "findmnt failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let fs_type = parts.next().expect("fstype").to_owned();
    let source = parts.next().expect("source").to_owned();
    (fs_type, source)
}

/// The size of `/` in bytes, as coreutils' `df` reports it.
fn df_root_size() -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=size", "/"])
        .output()
        .expect("df");
    assert!(out.status.success(), "df failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df size")
}

fn root_disk(snap: &Value) -> Option<&Value> {
    disk_at(snap, "/")
}

/// The row of the file system mounted at `point`.
fn disk_at<'a>(snap: &'a Value, point: &str) -> Option<&'a Value> {
    snap["sections"]["disk"]["disks"]
        .as_array()?
        .iter()
        .find(|d| {
            // A device mounted twice is one row; `point` may be its other mount point.
            d["mount_point"] == point
                || d["other_mount_points"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|p| p == point))
        })
}

/// True when the row at `point` carries read and write rates (from the second collect on).
fn has_rates(snap: &Value, point: &str) -> bool {
    disk_at(snap, point).is_some_and(|d| {
        d["read_bytes_per_second"].is_number() && d["write_bytes_per_second"].is_number()
    })
}

/// Guards the disk section on this machine: `/` is listed with its real type, device and
/// size, pseudo file systems are not, and the second collect carries I/O rates for a file
/// system on a real block device.
#[test]
fn the_root_file_system_is_listed_with_its_real_type() {
    let (fs_type, source) = findmnt_root();
    // In a container `/` is an overlay, which the default filter leaves out on purpose;
    // then ask for it by mount point so the real type is still checked.
    let include = if ["overlay", "tmpfs"].contains(&fs_type.as_str()) {
        eprintln!("note: `/` is {fs_type} here; including it by mount point");
        "include_mount_points = [\"/\"]"
    } else {
        ""
    };
    // Rates need a device the kernel counts I/O for, which an overlay `/` is not: `/` when it
    // is on one, else another mounted folder that is, else an ext4 file system on a loop
    // device made for this test.
    let block = BlockMount::find_or_make()
        .map_err(|why| skip(&format!("the read/write rate check is left out: {why}")))
        .ok();
    let rated = block.as_ref().map(|b| b.mount_point.display().to_string());
    let host = Host::start(&format!(
        "[collectors.disk]\ninterval = \"300ms\"\n[collectors.disk.config]\n{include}\n"
    ));
    let snap = host.wait_for(
        "`/`, and rates for a block device",
        Duration::from_secs(20),
        |s| root_disk(s).is_some() && rated.as_deref().is_none_or(|p| has_rates(s, p)),
    );
    if let Some(b) = &block {
        let row = disk_at(&snap, &b.mount_point.display().to_string()).expect("block row");
        assert_eq!(row["device"], b.device.as_str(), "{row}");
        for rate in ["read_bytes_per_second", "write_bytes_per_second"] {
            assert!(
                row[rate].as_f64().is_some_and(|r| r >= 0.0),
                "{rate}: {row}"
            );
        }
    }
    let root = root_disk(&snap).expect("root");
    assert_eq!(root["fs_type"], fs_type.as_str(), "{root}");
    assert_eq!(root["device"], source.as_str(), "{root}");
    assert_eq!(root["total_bytes"].as_u64(), Some(df_root_size()), "{root}");
    let used = root["used_bytes"].as_u64().expect("used");
    assert!(used > 0 && used <= df_root_size(), "{root}");
    let pct = root["used_percent"].as_f64().expect("percent");
    assert!(pct > 0.0 && pct <= 100.0, "{root}");
    for d in snap["sections"]["disk"]["disks"].as_array().expect("disks") {
        let t = d["fs_type"].as_str().unwrap_or_default();
        assert!(
            !["tmpfs", "devtmpfs", "proc", "sysfs", "squashfs", "cgroup", "cgroup2"].contains(&t),
            "pseudo file system listed: {d}"
        );
    }
    assert_eq!(snap["collectors"]["disk"]["state"], "ok");

    let history = host.get_ok("/admin/monitor/history?collector=disk");
    assert!(
        history.to_string().contains("used_percent"),
        "disk series kept: {history}"
    );
}
