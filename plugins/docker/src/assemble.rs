//! The assemble step: one section row per listed container from its list entry, inspect
//! answer and sample, with CPU use computed against the previous sample.

use std::collections::BTreeSet;

use hashbrown::{HashMap, HashSet};
use vitals_plugin_api::sections::{percent, ContainerStats};

use crate::engine;
use crate::inspect::{Inspected, Tracked};
use crate::list::Entry;
use crate::sample::Usage;

/// CPU use since the container's previous sample, which `usage` replaces; a container without
/// a sample this time forgets its previous one. A resting container used none, and keeps its
/// previous sample for its next read.
pub(crate) fn cpu_step(tracked: &mut Tracked, usage: Option<&Usage>) -> Option<f64> {
    let Some(u) = usage else {
        tracked.prev_cpu = None;
        return None;
    };
    if u.resting {
        return tracked.prev_cpu.map(|_| 0.0);
    }
    let (pc, ps) = tracked.prev_cpu.replace((u.cpu_ns, u.system_ns))?;
    engine::cpu_percent(pc, ps, u.cpu_ns, u.system_ns, u.online_cpus)
}

/// One container's row.
pub(crate) fn container_stats(
    entry: &Entry<'_>,
    info: &Inspected,
    usage: Option<&Usage>,
    cpu_usage_percent: Option<f64>,
    now: i64,
) -> ContainerStats {
    let c = entry.summary;
    let is_up = entry.state.is_up();
    let status_text = entry.status_text.to_owned();
    let health = c
        .health
        .as_ref()
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none")
        .or_else(|| engine::parse_health(&status_text).map(str::to_owned));
    let memory_used_bytes = usage.and_then(|u| u.memory_used_bytes);
    let memory_limit_bytes = usage.and_then(|u| u.memory_limit_bytes);
    ContainerStats {
        id: entry.id.to_owned(),
        name: engine::container_name(c),
        image: c.image.clone().unwrap_or_default(),
        status: entry.state.clone(),
        status_text,
        health,
        cpu_usage_percent,
        memory_used_bytes,
        memory_limit_bytes,
        memory_used_percent: memory_used_bytes
            .zip(memory_limit_bytes)
            .map(|(u, l)| percent(u, l)),
        pids: usage.and_then(|u| u.pids),
        ports: engine::format_ports(c.ports.as_deref().unwrap_or_default()),
        uptime_seconds: info
            .started_at
            .filter(|_| is_up)
            .map(|s| u64::try_from(now - s).unwrap_or(0)),
        started_at_unix_seconds: info.started_at,
        created_unix_seconds: c.created.unwrap_or(0),
        network_rx_bytes: usage.and_then(|u| u.network).map(|n| n.0),
        network_tx_bytes: usage.and_then(|u| u.network).map(|n| n.1),
        block_read_bytes: usage.and_then(|u| u.block.0),
        block_write_bytes: usage.and_then(|u| u.block.1),
        restart_count: info.restart_count,
    }
}

/// The rows of a collect, sorted by name: every tracked container the sampler stamped with
/// `stamp` (its list position gives its entry) and not in `vanished` (stopped ones only when
/// `include_stopped`), with the figures the sampler or the stats API gave it; and the sources
/// their figures came from.
pub(crate) fn rows(
    entries: &[Entry<'_>],
    vanished: &HashSet<String>,
    include_stopped: bool,
    tracked: &mut HashMap<String, Tracked>,
    stamp: u64,
    now: i64,
) -> (Vec<ContainerStats>, BTreeSet<&'static str>) {
    let mut sources = BTreeSet::new();
    let mut containers = Vec::with_capacity(entries.len());
    for t in tracked.values_mut() {
        let Some(entry) = t
            .listed
            .filter(|(s, _)| *s == stamp)
            .and_then(|(_, i)| entries.get(i))
        else {
            continue;
        };
        if vanished.contains(entry.id) || (!include_stopped && !entry.state.is_up()) {
            continue;
        }
        let u = t.usage.take();
        let cpu = cpu_step(t, u.as_ref());
        if let Some(u) = &u {
            sources.insert(u.source);
        }
        containers.push(container_stats(entry, &t.info, u.as_ref(), cpu, now));
    }
    (sorted_by_name(containers), sources)
}

/// `rows` sorted by name, each row moved once (a row is large: sorting them in place moves
/// each many times).
fn sorted_by_name(rows: Vec<ContainerStats>) -> Vec<ContainerStats> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[a].name.cmp(&rows[b].name));
    if order.iter().enumerate().all(|(i, &o)| i == o) {
        return rows;
    }
    let mut slots: Vec<Option<ContainerStats>> = rows.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// The section's `stats_source`: the sources used joined with `+` (`cgroup v1+api`), or
/// `fallback` (the source a running container would get) when none was.
pub(crate) fn stats_source(sources: BTreeSet<&'static str>, fallback: &str) -> String {
    if sources.is_empty() {
        fallback.to_owned()
    } else {
        sources.into_iter().collect::<Vec<_>>().join("+")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{inspected, tests::fixture as inspect_fixture};
    use crate::list::{self, entries};
    use vitals_plugin_api::sections::ContainerState;

    fn usage(cpu_ns: u64, system_ns: u64) -> Usage {
        Usage {
            source: "cgroup v1",
            cpu_ns,
            system_ns,
            online_cpus: 2,
            memory_used_bytes: Some(25),
            memory_limit_bytes: Some(100),
            network: Some((1, 2)),
            block: (Some(3), None),
            pids: Some(4),
            resting: false,
        }
    }

    fn tracked_from(file: &str) -> Tracked {
        Tracked {
            key: String::new(),
            info: inspected(&inspect_fixture(file)),
            files: None,
            prev_cpu: None,
            listed: None,
            usage: None,
        }
    }

    /// Guards CPU use between samples: none at first sight, the `docker stats` formula on the
    /// second, a missing sample forgets the previous one, a resting one keeps it.
    #[test]
    fn cpu_use_needs_two_samples_in_a_row() {
        let mut t = tracked_from("inspect_running.json");
        assert_eq!(cpu_step(&mut t, Some(&usage(1_000, 10_000))), None);
        let p = cpu_step(&mut t, Some(&usage(500_001_000, 2_000_010_000))).expect("percent");
        assert!((p - 50.0).abs() < 1e-9, "{p}");
        assert_eq!(cpu_step(&mut t, None), None);
        assert_eq!(t.prev_cpu, None);
        assert_eq!(
            cpu_step(&mut t, Some(&usage(600_000_000, 3_000_000_000))),
            None
        );
        // At rest: none used, and the next read counts from the last one read.
        let resting = Usage {
            resting: true,
            ..usage(600_000_000, 4_000_000_000)
        };
        assert_eq!(cpu_step(&mut t, Some(&resting)), Some(0.0));
        assert_eq!(t.prev_cpu, Some((600_000_000, 3_000_000_000)));
        let p = cpu_step(&mut t, Some(&usage(1_100_000_000, 5_000_000_000))).expect("percent");
        assert!((p - 50.0).abs() < 1e-9, "over both collects: {p}");
    }

    /// Guards the rows from the list and inspect fixtures: sorted by name, states spelled as
    /// the daemon does (an unknown one kept), uptime only while up, health from the list,
    /// figures only where sampled, stopped ones left out on request, vanished ones always.
    #[test]
    fn assembles_rows_from_list_inspect_and_sample() {
        let list = list::tests::fixture();
        let all = entries(&list);
        let mut tracked: HashMap<String, Tracked> = all
            .iter()
            .map(|e| {
                let file = if e.state.is_up() {
                    "inspect_running.json"
                } else {
                    "inspect_exited.json"
                };
                (e.id.to_owned(), tracked_from(file))
            })
            .collect();
        let running_id = all[0].id.to_owned();
        let gone_id = all[3].id.to_owned();
        let now = 2_000_000_000;
        let vanished = HashSet::from([gone_id.clone()]);
        // As the sampler stamps them: every tracked container with its list position, the
        // running one with its figures.
        let stamp = |tracked: &mut HashMap<String, Tracked>, n: u64| {
            for (i, e) in all.iter().enumerate() {
                if let Some(t) = tracked.get_mut(e.id) {
                    t.listed = Some((n, i));
                    t.usage = (e.id == running_id).then(|| usage(10, 20));
                }
            }
        };
        stamp(&mut tracked, 7);
        // One tracked but not in this collect's list (an older stamp) is left out too.
        tracked.insert(
            "old".to_owned(),
            Tracked {
                listed: Some((6, 0)),
                ..tracked_from("inspect_running.json")
            },
        );

        let (all_rows, sources) = rows(&all, &vanished, true, &mut tracked, 7, now);
        assert_eq!(all_rows.len(), 5, "the vanished one left out");
        assert!(
            all_rows.windows(2).all(|w| w[0].name <= w[1].name),
            "sorted by name"
        );
        assert_eq!(sources, BTreeSet::from(["cgroup v1"]));
        let json = serde_json::to_value(&all_rows).expect("json");
        let by_id = |id: &str| {
            json.as_array()
                .and_then(|a| a.iter().find(|r| r["id"] == id))
                .cloned()
                .expect("row")
        };
        let r = by_id(&running_id);
        assert_eq!(r["status"], "running");
        assert_eq!(r["memory_used_bytes"], 25);
        assert_eq!(r["memory_used_percent"], 25.0);
        assert_eq!(
            r["cpu_usage_percent"],
            serde_json::Value::Null,
            "first sample"
        );
        assert!(r["uptime_seconds"].as_u64().is_some_and(|u| u > 0), "{r}");
        let stopping = by_id(all[5].id);
        assert_eq!(
            stopping["status"], "stopping",
            "an unknown state kept as sent"
        );
        assert_eq!(stopping["uptime_seconds"], serde_json::Value::Null);
        let healthy = by_id(all[4].id);
        assert_eq!(healthy["health"], "healthy");
        assert_eq!(
            healthy["memory_used_bytes"],
            serde_json::Value::Null,
            "not sampled"
        );
        let exited = by_id(all[2].id);
        assert_eq!(exited["status"], "exited");
        assert_eq!(exited["restart_count"], 2);

        stamp(&mut tracked, 8);
        let (up_only, _) = rows(&all, &vanished, false, &mut tracked, 8, now);
        let states: Vec<&ContainerState> = up_only.iter().map(|r| &r.status).collect();
        assert!(states.iter().all(|s| s.is_up()), "{states:?}");
        assert_eq!(up_only.len(), 3);
    }

    /// Guards the row's JSON: the same field names as the section type has always had, and
    /// the state as a plain string.
    #[test]
    fn a_row_has_the_section_fields() {
        let list = list::tests::fixture();
        let entry = entries(&list).into_iter().next().expect("entry");
        let info = inspected(&inspect_fixture("inspect_running.json"));
        let row = container_stats(&entry, &info, Some(&usage(1, 2)), Some(1.5), 2_000_000_000);
        let json = serde_json::to_string(&row).expect("json");
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&json).expect("object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = [
            "id",
            "name",
            "image",
            "status",
            "status_text",
            "health",
            "cpu_usage_percent",
            "memory_used_bytes",
            "memory_limit_bytes",
            "memory_used_percent",
            "pids",
            "ports",
            "uptime_seconds",
            "started_at_unix_seconds",
            "created_unix_seconds",
            "network_rx_bytes",
            "network_tx_bytes",
            "block_read_bytes",
            "block_write_bytes",
            "restart_count",
        ];
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert!(json.contains(r#""status":"running""#), "{json}");
    }

    /// Guards the section's `stats_source`: sources joined in order, the fallback when none.
    #[test]
    fn names_the_stats_source() {
        assert_eq!(
            stats_source(BTreeSet::from(["cgroup v1", "api"]), "x"),
            "api+cgroup v1"
        );
        assert_eq!(stats_source(BTreeSet::new(), "cgroup v2"), "cgroup v2");
    }
}
