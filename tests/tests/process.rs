//! End to end: the built host with the built process plugin, watching test children that spin and that turn zombie.

use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;
use vitals_e2e::Host;

/// Kills and reaps a child when the test ends, passed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(list: &Value, pid: u32) -> Option<Value> {
    list.as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
        .cloned()
}

fn config() -> &'static str {
    "[collectors.process]\ninterval = \"500ms\"\n"
}

/// Guards the CPU ranking through the host: a child spinning the CPU appears in the top 10
/// by CPU with its command line and state.
#[test]
fn a_spinning_child_appears_in_the_top_by_cpu() {
    let marker = format!("vitals-e2e-spin-{}", std::process::id());
    let child = Reaped(
        Command::new("sh")
            .args(["-c", "while :; do :; done", &marker])
            .spawn()
            .expect("spawn sh"),
    );
    let pid = child.0.id();
    let host = Host::start(config());
    let snap = host.wait_for(
        "the spinning child in the top 10 by CPU",
        Duration::from_secs(30),
        |s| {
            find(&s["sections"]["process"]["top_by_cpu"], pid)
                .is_some_and(|p| p["cpu_percent"].as_f64().unwrap_or(0.0) > 10.0)
        },
    );
    let section = &snap["sections"]["process"];
    assert!(section["top_by_cpu"].as_array().expect("list").len() <= 10);
    let p = find(&section["top_by_cpu"], pid).expect("child");
    let command = p["command"].as_str().unwrap_or_default();
    assert!(command.contains(&marker), "{p}");
    assert!(command.contains("while :; do :; done"), "{p}");
    assert_eq!(p["name"], "sh", "{p}");
    assert_eq!(p["status"], "running", "{p}");
    assert!(p["memory_bytes"].as_u64().unwrap_or(0) > 0, "{p}");
    assert!(
        section["process_count"].as_u64().unwrap_or(0) >= 2,
        "{section}"
    );
    // The host alone runs several threads, so threads outnumber processes; equal counts
    // would mean threads were listed as processes.
    assert!(
        section["thread_count"].as_u64() > section["process_count"].as_u64(),
        "{section}"
    );
    assert_eq!(snap["collectors"]["process"]["state"], "ok");
}

/// Guards zombies through the host: an exited, unreaped child is listed with status zombie.
#[test]
fn a_zombie_child_shows_status_zombie() {
    let child = Reaped(Command::new("true").spawn().expect("spawn true"));
    let pid = child.0.id();
    let host = Host::start(config());
    let snap = host.wait_for("the zombie child", Duration::from_secs(30), |s| {
        find(&s["sections"]["process"]["zombies"], pid).is_some()
    });
    let z = find(&snap["sections"]["process"]["zombies"], pid).expect("zombie");
    assert_eq!(z["status"], "zombie", "{z}");
    assert_eq!(
        z["parent_pid"].as_u64(),
        Some(u64::from(std::process::id())),
        "{z}"
    );
    assert!(
        snap["sections"]["process"]["zombie_count"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{snap}"
    );
}

/// Guards the memory ranking through the host: `top_by_memory` is sorted by resident memory,
/// largest first, and this test process, holding 1 GiB (far more than any ordinary process
/// on a test machine), is in it with at least that much, ahead of every process holding less.
#[test]
fn a_process_holding_a_gibibyte_leads_the_top_by_memory_in_order() {
    const HELD: usize = 1 << 30;
    let held = std::hint::black_box(vec![0x5au8; HELD]);
    let me = std::process::id();
    let host = Host::start(config());
    let snap = host.wait_for(
        "this test process in the top 10 by memory",
        Duration::from_secs(30),
        |s| find(&s["sections"]["process"]["top_by_memory"], me).is_some(),
    );
    let list = snap["sections"]["process"]["top_by_memory"]
        .as_array()
        .expect("list");
    let sizes: Vec<u64> = list
        .iter()
        .map(|p| p["memory_bytes"].as_u64().expect("memory_bytes"))
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[0] >= w[1]),
        "largest first: {sizes:?}"
    );
    let at = list
        .iter()
        .position(|p| p["pid"].as_u64() == Some(u64::from(me)))
        .expect("listed");
    let mine = sizes[at];
    assert!(mine >= HELD as u64, "{}", list[at]);
    assert!(sizes[at + 1..].iter().all(|s| *s <= mine), "{sizes:?}");
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    let percent = list[at]["memory_percent"].as_f64().expect("percent");
    let want = mine as f64 * 100.0 / (total_kib * 1024) as f64;
    assert!(
        (percent - want).abs() < 0.1,
        "memory_percent {percent} for {mine} of {total_kib} KiB"
    );
    drop(held);
}
