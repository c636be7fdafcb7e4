//! Criterion micro-benches of the host's hot paths over a recorded snapshot: serialising the snapshot, recording a collect, one update's SSE fan-out, Prometheus rendering.
//!
//! `cargo bench -p vitals-host --bench hot_paths`. The sections come from
//! `benches/fixtures/sections.json`: every collector's section as the release host reported
//! it on a 2-core machine with 20 containers (command lines and names replaced).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::StreamExt as _;
use serde_json::value::RawValue;
use serde_json::Value;
use vitals_host::api::exposition;
use vitals_host::api::request_metrics::RequestMetrics;
use vitals_host::api::sse::{self, StreamSlot, Topic};
use vitals_host::store::Store;

const FIXTURE: &str = include_str!("fixtures/sections.json");

/// The recorded sections, by collector.
fn sections() -> BTreeMap<String, Value> {
    serde_json::from_str(FIXTURE).expect("fixtures/sections.json is a JSON object")
}

fn raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).expect("valid JSON")
}

/// A store holding every recorded section, as after one round of collects.
fn filled_store() -> Arc<Store> {
    let store = Arc::new(Store::new(60, 200));
    for (name, section) in sections() {
        store.register(&name, Duration::from_secs(1), Duration::from_secs(1), true);
        store.record_ok(
            &name,
            raw(&section),
            Duration::from_millis(1),
            SystemTime::now(),
        );
    }
    store
}

/// Serialising the full snapshot once per update, and serving it from the cache.
fn snapshot(c: &mut Criterion) {
    let store = filled_store();
    let cpu = sections().remove("cpu").expect("a cpu section");
    let size = store.snapshot_json().len() as u64;
    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Bytes(size));
    g.bench_function("update_then_serialise", |b| {
        b.iter(|| {
            store.record_ok(
                "cpu",
                raw(&cpu),
                Duration::from_millis(1),
                SystemTime::now(),
            );
            black_box(store.snapshot_json())
        })
    });
    g.bench_function("serve_cached", |b| {
        b.iter(|| black_box(store.snapshot_json()))
    });
    g.finish();
}

/// Recording one collect: a process section (three top-level counters as series) and a docker
/// section (100 containers, per-container series labelled by name): the parse for history
/// points and the ring-buffer appends, per collect of the runtime.
fn record(c: &mut Criterion) {
    use vitals_host::store::PluginRef;
    use vitals_plugin_api::Series;
    let store = Store::new(60, 200);
    let docker = sections().remove("docker").expect("a docker section");
    store.register(
        "docker",
        Duration::from_secs(1),
        Duration::from_secs(1),
        true,
    );
    store.set_plugin(
        "docker",
        PluginRef {
            name: "docker".into(),
            version: "1".into(),
            api_version: "1.0.0".into(),
            library: "x".into(),
        },
        vec![
            Series::new("containers_running", "/containers_running", "count"),
            Series::new("cpu", "/containers/*/cpu_usage_percent", "percent").labelled_by("name"),
            Series::new("memory", "/containers/*/memory_used_bytes", "bytes").labelled_by("name"),
        ],
    );
    let process = sections().remove("process").expect("a process section");
    store.register(
        "process",
        Duration::from_secs(1),
        Duration::from_secs(1),
        true,
    );
    store.set_plugin(
        "process",
        PluginRef {
            name: "process".into(),
            version: "1".into(),
            api_version: "1.0.0".into(),
            library: "x".into(),
        },
        vec![
            Series::new("process_count", "/process_count", "processes"),
            Series::new("thread_count", "/thread_count", "threads"),
            Series::new("zombie_count", "/zombie_count", "processes"),
        ],
    );
    c.bench_function("record_process_collect", |b| {
        b.iter_batched(
            || raw(&process),
            |section| {
                store.record_ok(
                    "process",
                    section,
                    Duration::from_millis(1),
                    SystemTime::now(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("record_docker_collect", |b| {
        b.iter_batched(
            || raw(&docker),
            |section| {
                store.record_ok(
                    "docker",
                    section,
                    Duration::from_millis(1),
                    SystemTime::now(),
                )
            },
            BatchSize::SmallInput,
        )
    });
}

/// One update delivered to 1,000 snapshot streams: each stream's event, formatted for the wire.
fn sse_fan_out(c: &mut Criterion) {
    const CLIENTS: usize = 1000;
    let store = filled_store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Elements(CLIENTS as u64));
    g.sample_size(20);
    g.bench_function("one_update_to_1000_streams", |b| {
        b.iter_batched(
            || {
                (0..CLIENTS)
                    .map(|_| {
                        let slot = StreamSlot::acquire(&open, usize::MAX).expect("a slot");
                        Box::pin(sse::stream(
                            store.clone(),
                            Topic::Snapshot,
                            stop_rx.clone(),
                            None,
                            slot,
                        ))
                    })
                    .collect::<Vec<_>>()
            },
            |mut streams| {
                runtime.block_on(async {
                    let mut bytes = 0;
                    for s in &mut streams {
                        if let Some(Ok(event)) = s.next().await {
                            bytes += event.to_string().len();
                        }
                    }
                    black_box(bytes)
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// The Prometheus exposition of every section and status: rebuilt (the first scrape after a
/// collect) and served from the cache of the store's version (every other scrape).
fn prometheus(c: &mut Criterion) {
    let store = filled_store();
    let metrics = RequestMetrics::default();
    c.bench_function("prometheus_render", |b| {
        b.iter(|| {
            let cache = exposition::Cache::default();
            black_box(exposition::render(&cache, &store, &metrics.report(), &[]))
        })
    });
    let cache = exposition::Cache::default();
    c.bench_function("prometheus_render_cached", |b| {
        b.iter(|| black_box(exposition::render(&cache, &store, &metrics.report(), &[])))
    });
}

criterion_group!(benches, snapshot, record, sse_fan_out, prometheus);
criterion_main!(benches);
