//! Criterion bench of alert evaluation: 50 rules over a snapshot with 100 containers.
//!
//! `cargo bench -p vitals-host --bench alerts`. The snapshot is the recorded one of
//! `benches/fixtures/sections.json` with its docker section grown to 100 containers; the rules
//! are the 15 stock rules and 35 configured ones over declared series and field paths.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;
use vitals_host::alerts::{self, AlertsConfig, Engine, Input};
use vitals_plugin_api::Series;

const FIXTURE: &str = include_str!("fixtures/sections.json");

fn snapshot() -> BTreeMap<String, Value> {
    let mut sections: BTreeMap<String, Value> =
        serde_json::from_str(FIXTURE).expect("fixtures/sections.json is a JSON object");
    let docker = sections
        .entry("docker".to_owned())
        .or_insert_with(|| serde_json::json!({}));
    let template = docker["containers"]
        .get(0)
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"restart_count": 0, "cpu_usage_percent": 1.0}));
    let containers: Vec<Value> = (0..100)
        .map(|i| {
            let mut c = template.clone();
            c["name"] = Value::String(format!("app-{i}"));
            c["restart_count"] = Value::from(i % 3);
            c["cpu_usage_percent"] = Value::from(f64::from(i));
            c["health"] = Value::String("healthy".to_owned());
            c
        })
        .collect();
    docker["containers"] = Value::Array(containers);
    sections
}

fn config(collectors: &[&str]) -> AlertsConfig {
    let mut text = String::new();
    for i in 0..35 {
        let (series, extra) = match i % 5 {
            0 => ("docker.cpu_usage_percent", ""),
            1 => ("docker.containers.*.restart_count", "increase = \"10m\"\n"),
            2 => ("docker.memory_used_bytes", ""),
            3 => ("cpu.usage_percent", "rate = \"1m\"\n"),
            _ => ("memory.used_percent", ""),
        };
        text.push_str(&format!(
            "[[alerts]]\nname = \"r{i}\"\nseries = \"{series}\"\ncondition = \">\"\nthreshold = 50\nfor = \"1m\"\n{extra}\n"
        ));
    }
    let root: toml::Table = toml::from_str(&text).expect("bench rules");
    let (c, problems) = alerts::rules::parse(
        root.get("alerts").cloned(),
        None,
        &text,
        "bench.toml",
        collectors,
    );
    assert!(problems.is_empty(), "{problems:?}");
    c
}

fn bench(c: &mut Criterion) {
    let sections: BTreeMap<String, Arc<Value>> = snapshot()
        .into_iter()
        .map(|(k, v)| (k, Arc::new(v)))
        .collect();
    let names: Vec<&str> = sections.keys().map(String::as_str).collect();
    let rules = alerts::rules_for(&config(&names));
    assert_eq!(rules.len(), 50);
    let declared = BTreeMap::from([
        (
            "docker".to_owned(),
            vec![
                Series::new(
                    "cpu_usage_percent",
                    "/containers/*/cpu_usage_percent",
                    "percent",
                )
                .labelled_by("name"),
                Series::new(
                    "memory_used_bytes",
                    "/containers/*/memory_used_bytes",
                    "bytes",
                )
                .labelled_by("name"),
            ],
        ),
        (
            "cpu".to_owned(),
            vec![Series::new("usage_percent", "/usage_percent", "percent")],
        ),
        (
            "memory".to_owned(),
            vec![Series::new("used_percent", "/used_percent", "percent")],
        ),
    ]);
    let statuses = BTreeMap::new();
    let forecasts = BTreeMap::new();
    let mut engine = Engine::new(rules);
    let mut now = 1_700_000_000_000u64;
    c.bench_function("alerts/evaluate_50_rules_100_containers", |b| {
        b.iter(|| {
            now += 5_000;
            black_box(engine.evaluate(&Input {
                sections: &sections,
                statuses: &statuses,
                declared: &declared,
                history_paused: false,
                forecasts: &forecasts,
                now_ms: now,
            }))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
