//! Prometheus text exposition of the snapshot: every numeric section field, collector health, requests.
//!
//! Section fields are flattened to `vitals_<collector>_<path>` in base units (`_percent`
//! becomes a `_ratio`, `_mhz` becomes `_hertz`, `_ms` becomes `_seconds`); an array of objects
//! becomes a label named after the array (`cores` -> `core`), valued by the element's `index`,
//! `name`, `mount_point`, `id`, … Per-process arrays (elements with a `pid`) are left out to
//! keep the series set stable; their totals are exported.

use std::collections::BTreeMap;

use prometheus::{CounterVec, GaugeVec, Opts, Registry, TextEncoder};
use serde_json::Value;

use crate::api::request_metrics::Report;
use crate::store::{CollectorStatus, State};

/// The content type of the classic Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Fields that name an array element, in order of preference.
const ID_FIELDS: &[&str] = &[
    "index",
    "name",
    "mount_point",
    "id",
    "device",
    "label",
    "interface",
    "uuid",
];

#[derive(Default)]
struct Family {
    counter: bool,
    help: String,
    label_names: Vec<String>,
    samples: BTreeMap<Vec<String>, f64>,
}

#[derive(Default)]
struct Families(BTreeMap<String, Family>);

impl Families {
    fn add(
        &mut self,
        name: &str,
        help: &str,
        counter: bool,
        labels: &[(String, String)],
        value: f64,
    ) {
        if !value.is_finite() {
            return;
        }
        let f = self.0.entry(name.to_owned()).or_insert_with(|| Family {
            counter,
            help: help.to_owned(),
            label_names: labels.iter().map(|(k, _)| k.clone()).collect(),
            samples: BTreeMap::new(),
        });
        // A family keeps the label names of its first sample; mismatching samples are dropped.
        if f.label_names.len() == labels.len()
            && f.label_names.iter().zip(labels).all(|(a, (b, _))| a == b)
        {
            f.samples
                .insert(labels.iter().map(|(_, v)| v.clone()).collect(), value);
        }
    }

    fn encode(self) -> String {
        let registry = Registry::new();
        for (name, f) in self.0 {
            let names: Vec<&str> = f.label_names.iter().map(String::as_str).collect();
            let help = if f.help.is_empty() {
                name.clone()
            } else {
                f.help.clone()
            };
            let registered = if f.counter {
                let base = name.trim_end_matches("_total");
                CounterVec::new(Opts::new(format!("{base}_total"), help), &names).and_then(|c| {
                    for (vals, v) in &f.samples {
                        let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
                        c.with_label_values(&vals).inc_by(v.max(0.0));
                    }
                    registry.register(Box::new(c))
                })
            } else {
                GaugeVec::new(Opts::new(name.clone(), help), &names).and_then(|g| {
                    for (vals, v) in &f.samples {
                        let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
                        g.with_label_values(&vals).set(*v);
                    }
                    registry.register(Box::new(g))
                })
            };
            if let Err(e) = registered {
                tracing::debug!(metric = %name, "left out of the exposition: {e}");
            }
        }
        TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap_or_default()
    }
}

/// A metric or label name with every character outside `[a-zA-Z0-9_]` replaced by `_`.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// The singular of an array's key, used as its label name (`cores` -> `core`).
pub fn singular(key: &str) -> String {
    if let Some(stem) = key.strip_suffix("sses") {
        return format!("{stem}ss");
    }
    for (plural, one) in [
        ("processes", "process"),
        ("addresses", "address"),
        ("statuses", "status"),
    ] {
        if key == plural {
            return one.to_owned();
        }
    }
    key.strip_suffix('s').unwrap_or(key).to_owned()
}

/// A key without its unit suffix (`fan_speeds_percent` -> `fan_speeds`).
fn strip_unit(key: &str) -> &str {
    const UNITS: &[&str] = &[
        "percent", "bytes", "celsius", "watts", "mhz", "hertz", "seconds", "ms", "rpm",
    ];
    match key.rsplit_once('_') {
        Some((stem, unit)) if UNITS.contains(&unit) => stem,
        _ => key,
    }
}

/// The metric name and value in base units for a leaf at `path`.
fn base_unit(path: &[String], value: f64) -> (String, f64) {
    let mut tokens: Vec<&str> = path
        .iter()
        .flat_map(|p| p.split('_'))
        .filter(|t| !t.is_empty())
        .collect();
    tokens.dedup();
    // Prometheus reserves `_count` for histograms: `thread_count` becomes `threads`.
    let counted = tokens.len() > 1 && tokens.last() == Some(&"count");
    if counted {
        tokens.pop();
    }
    let mut name = tokens.join("_");
    if counted {
        if name.ends_with('s') {
            name.push_str("es");
        } else if !name.ends_with("ing") {
            name.push('s');
        }
    }
    let mut v = value;
    for (from, to, factor) in [
        ("_percent", "_ratio", 0.01),
        ("_mhz", "_hertz", 1e6),
        ("_ms", "_seconds", 1e-3),
    ] {
        if let Some(stem) = name.strip_suffix(from) {
            name = format!("{stem}{to}");
            v *= factor;
            break;
        }
    }
    (format!("vitals_{}", sanitize(&name)), v)
}

fn element_label(item: &Value, position: usize) -> String {
    ID_FIELDS
        .iter()
        .find_map(|f| match item.get(*f) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| position.to_string())
}

fn flatten(
    out: &mut Families,
    path: &mut Vec<String>,
    labels: &mut Vec<(String, String)>,
    value: &Value,
) {
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                let (name, v) = base_unit(path, v);
                let counter = name.ends_with("_total");
                out.add(
                    &name,
                    &format!("Section field {}.", path.join(".")),
                    counter,
                    labels,
                    v,
                );
            }
        }
        Value::Bool(b) => {
            let (name, _) = base_unit(path, 0.0);
            out.add(
                &name,
                &format!("Section field {} (1 = true).", path.join(".")),
                false,
                labels,
                f64::from(u8::from(*b)),
            );
        }
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                flatten(out, path, labels, v);
                path.pop();
            }
        }
        Value::Array(items) => {
            if items.iter().any(|i| i.get("pid").is_some()) {
                return;
            }
            let Some(key) = path.pop() else { return };
            let objects = items.iter().all(Value::is_object);
            // `gpus: [{…}]` names its items `gpu`; `fan_speeds_percent: [40, 50]` keeps its key
            // as the metric name and labels the items `fan_speed`.
            let label = sanitize(&singular(if objects { &key } else { strip_unit(&key) }));
            path.push(if objects { label.clone() } else { key.clone() });
            for (i, item) in items.iter().enumerate() {
                labels.push((label.clone(), element_label(item, i)));
                flatten(out, path, labels, item);
                labels.pop();
            }
            path.pop();
            path.push(key);
        }
        Value::Null | Value::String(_) => {}
    }
}

/// The whole exposition: sections, collector status, and the API's request counts.
pub fn render(
    sections: &BTreeMap<String, Value>,
    statuses: &BTreeMap<String, CollectorStatus>,
    requests: &Report,
) -> String {
    let mut out = Families::default();
    for (collector, section) in sections {
        let mut path = vec![collector.clone()];
        flatten(&mut out, &mut path, &mut Vec::new(), section);
    }
    for (name, s) in statuses {
        let l = vec![("collector".to_owned(), name.clone())];
        out.add(
            "vitals_collector_up",
            "1 when the collector's last collect succeeded.",
            false,
            &l,
            f64::from(u8::from(s.state == State::Ok)),
        );
        for state in [
            State::Pending,
            State::Ok,
            State::Unavailable,
            State::Failed,
            State::Disabled,
        ] {
            let mut ls = l.clone();
            let state_name = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            ls.push(("state".to_owned(), state_name));
            out.add(
                "vitals_collector_state",
                "The collector's state (1 for the current one).",
                false,
                &ls,
                f64::from(u8::from(s.state == state)),
            );
        }
        out.add(
            "vitals_collector_stale",
            "1 when the section is kept from before a failure.",
            false,
            &l,
            f64::from(u8::from(s.stale)),
        );
        if let Some(ms) = s.last_duration_ms {
            out.add(
                "vitals_collector_last_duration_seconds",
                "How long the last collect took.",
                false,
                &l,
                ms / 1000.0,
            );
        }
        out.add(
            "vitals_collector_collects_total",
            "Successful collects since start.",
            true,
            &l,
            s.collects_total as f64,
        );
        out.add(
            "vitals_collector_errors_total",
            "Failed collects since start.",
            true,
            &l,
            s.errors_total as f64,
        );
        out.add(
            "vitals_collector_interval_seconds",
            "The collector's interval.",
            false,
            &l,
            s.interval_seconds,
        );
    }
    for (route, r) in &requests.routes {
        for (status, n) in &r.statuses {
            let l = vec![
                ("route".to_owned(), (*route).to_owned()),
                ("code".to_owned(), status.to_string()),
            ];
            out.add(
                "vitals_http_requests_total",
                "Requests answered by the API since the last metrics reset.",
                true,
                &l,
                *n as f64,
            );
        }
    }
    out.add(
        "vitals_build_info",
        "The vitals version (always 1).",
        false,
        &[("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())],
        1.0,
    );
    out.encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render_sections(v: Value) -> String {
        let sections: BTreeMap<String, Value> = serde_json::from_value(v).expect("sections");
        let report = crate::api::request_metrics::RequestMetrics::default().report();
        render(&sections, &BTreeMap::new(), &report)
    }

    /// Guards flattening: base units, array labels, dropped strings and per-process arrays.
    #[test]
    fn flattens_sections_in_base_units() {
        let text = render_sections(json!({
            "cpu": { "usage_percent": 50.0, "frequency_mhz": 2000,
                     "cores": [{ "index": 0, "usage_percent": 10.0 }, { "index": 1, "usage_percent": 30.0 }],
                     "model": "x", "load_average": { "one": 0.5 } },
            "gpu": { "gpus": [{ "index": 0, "temperature_celsius": 71, "power_watts": 250.5, "fan_speeds_percent": [40, 50] }] },
            "disk": { "disks": [{ "mount_point": "/", "used_bytes": 1024 }] },
            "process": { "total": 3, "thread_count": 12, "count": 40, "running_count": 2, "top_cpu": [{ "pid": 1, "cpu_percent": 3.0 }] }
        }));
        for line in [
            "vitals_cpu_usage_ratio 0.5",
            "vitals_cpu_frequency_hertz 2000000000",
            "vitals_cpu_core_usage_ratio{core=\"1\"} 0.3",
            "vitals_cpu_load_average_one 0.5",
            "vitals_gpu_temperature_celsius{gpu=\"0\"} 71",
            "vitals_gpu_power_watts{gpu=\"0\"} 250.5",
            "vitals_gpu_fan_speeds_ratio{fan_speed=\"1\",gpu=\"0\"} 0.5",
            "vitals_disk_used_bytes{disk=\"/\"} 1024",
            "vitals_process_total 3",
            "vitals_process_threads 12",
            "vitals_processes 40",
            "vitals_process_running 2",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("pid"), "{text}");
        assert!(!text.contains("model"), "{text}");
    }

    /// Guards label-name derivation from array keys.
    #[test]
    fn singulars() {
        assert_eq!(singular("cores"), "core");
        assert_eq!(singular("processes"), "process");
        assert_eq!(singular("addresses"), "address");
        assert_eq!(singular("gpu"), "gpu");
        assert_eq!(sanitize("9a-b.c"), "_9a_b_c");
    }
}
