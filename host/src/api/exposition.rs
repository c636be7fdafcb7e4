//! Prometheus text exposition of the snapshot: every numeric section field, collector health, requests.
//!
//! Section fields are flattened to `vitals_<collector>_<path>` in base units (`_percent`
//! becomes a `_ratio`, `_mhz` becomes `_hertz`, `_ms` becomes `_seconds`); an array of objects
//! becomes a label named after the array (`cores` -> `core`), valued by the field the
//! collector's series are labelled by (as in the history), else by the element's `index`,
//! `name`, `mount_point`, `id`, … Per-process arrays (elements with a `pid`) are left out to
//! keep the series set stable; their totals are exported.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use prometheus::{CounterVec, GaugeVec, Opts, Registry, TextEncoder};
use serde_json::Value;

use crate::api::request_metrics::Report;
use crate::store::{CollectorStatus, State, Store};
use vitals_plugin_api::Series;

/// The content type of the classic Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Fields that name an array element no series declares a label field for, in order of preference.
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

/// The label of array element `item` at `position`: its `field` when a series declares one
/// for this array, as the history labels it (a string as is, another value as JSON, the
/// position when the element lacks it); otherwise the first id field it has, else the position.
fn element_label(item: &Value, position: usize, field: Option<&str>) -> String {
    if let Some(field) = field {
        return item
            .get(field)
            .map(|l| match l {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| position.to_string());
    }
    ID_FIELDS
        .iter()
        .find_map(|f| match item.get(*f) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| position.to_string())
}

/// Array pointer (`/containers`, `/gpus/*/mig_devices`) -> the element field its series are
/// labelled by, from the series a collector declares: the array is the one the pointer's
/// last `*` walks, the one whose element labels a history series.
pub fn label_fields(series: &[Series]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in series {
        let (Some(field), Some((array, _))) = (&s.label, s.pointer.rsplit_once("/*")) else {
            continue;
        };
        out.entry(array.to_owned()).or_insert_with(|| field.clone());
    }
    out
}

/// Where the flattening is inside one section.
struct Walk<'a> {
    /// The metric name pieces so far, starting with the collector.
    path: Vec<String>,
    /// The labels of the arrays passed through.
    labels: Vec<(String, String)>,
    /// The JSON pointer so far, with `*` for an array element, as series pointers write it.
    pointer: Vec<String>,
    /// The label fields of the section's arrays (see [`label_fields`]).
    fields: &'a BTreeMap<String, String>,
}

impl<'a> Walk<'a> {
    fn new(
        path: Vec<String>,
        labels: Vec<(String, String)>,
        pointer: Vec<String>,
        fields: &'a BTreeMap<String, String>,
    ) -> Self {
        Walk {
            path,
            labels,
            pointer,
            fields,
        }
    }

    /// The label field declared for the array at the current pointer.
    fn field(&self) -> Option<&'a str> {
        let mut at = String::new();
        for seg in &self.pointer {
            at.push('/');
            at.push_str(seg);
        }
        self.fields.get(&at).map(String::as_str)
    }
}

fn flatten(out: &mut Families, w: &mut Walk<'_>, value: &Value) {
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                let (name, v) = base_unit(&w.path, v);
                let counter = name.ends_with("_total");
                out.add(
                    &name,
                    &format!("Section field {}.", w.path.join(".")),
                    counter,
                    &w.labels,
                    v,
                );
            }
        }
        Value::Bool(b) => {
            let (name, _) = base_unit(&w.path, 0.0);
            out.add(
                &name,
                &format!("Section field {} (1 = true).", w.path.join(".")),
                false,
                &w.labels,
                f64::from(u8::from(*b)),
            );
        }
        Value::Object(map) => {
            for (k, v) in map {
                w.path.push(k.clone());
                w.pointer.push(k.clone());
                flatten(out, w, v);
                w.pointer.pop();
                w.path.pop();
            }
        }
        Value::Array(items) => {
            if items.iter().any(|i| i.get("pid").is_some()) {
                return;
            }
            let Some(key) = w.path.pop() else { return };
            let objects = items.iter().all(Value::is_object);
            // `gpus: [{…}]` names its items `gpu`; `fan_speeds_percent: [40, 50]` keeps its key
            // as the metric name and labels the items `fan_speed`.
            let label = sanitize(&singular(if objects { &key } else { strip_unit(&key) }));
            let field = w.field();
            w.path
                .push(if objects { label.clone() } else { key.clone() });
            w.pointer.push("*".to_owned());
            for (i, item) in items.iter().enumerate() {
                w.labels
                    .push((label.clone(), element_label(item, i, field)));
                flatten(out, w, item);
                w.labels.pop();
            }
            w.pointer.pop();
            w.path.pop();
            w.path.push(key);
        }
        Value::Null | Value::String(_) => {}
    }
}

/// Metric names the parts rendered on every scrape own ([`render_requests`],
/// [`render_alerts`]): a section field that flattens to one of them is left out, so the
/// exposition never names a family twice.
const PER_SCRAPE: &[&str] = &["vitals_http_requests_total", "vitals_alert_firing"];

/// The part of the exposition that changes only with the store: sections (array elements
/// labelled by the field their collector's series declare, `declared`, collector -> series),
/// collector status and the build.
pub fn render_store_part(
    sections: &BTreeMap<String, Value>,
    declared: &BTreeMap<String, Vec<Series>>,
    statuses: &BTreeMap<String, CollectorStatus>,
) -> String {
    let mut out = Families::default();
    let none = BTreeMap::new();
    for (collector, section) in sections {
        // A `gpu` collector of another shape (a third-party plugin) is flattened like any other.
        if collector == GPU_SECTION && section.get("gpus").is_some_and(Value::is_array) {
            gpu::render(&mut out, section, sections.get(gpu::DOCKER_SECTION));
            continue;
        }
        let fields = declared.get(collector).map(|s| label_fields(s));
        let mut w = Walk::new(
            vec![collector.clone()],
            Vec::new(),
            Vec::new(),
            fields.as_ref().unwrap_or(&none),
        );
        flatten(&mut out, &mut w, section);
    }
    for name in PER_SCRAPE {
        out.0.remove(*name);
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
    out.add(
        "vitals_build_info",
        "The vitals version (always 1).",
        false,
        &[("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())],
        1.0,
    );
    out.encode()
}

/// The API's request counts, rendered on every scrape (each request changes them).
pub fn render_requests(requests: &Report) -> String {
    let mut out = Families::default();
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
    out.encode()
}

/// The store's part of the exposition, kept for one store version: scrapes between two
/// changes of the store are served without flattening the sections again. Every role that
/// may read `/metrics` gets the same text, so one copy serves them all.
#[derive(Default)]
pub struct Cache {
    kept: Mutex<Option<(u64, Bytes)>>,
}

impl Cache {
    /// The store's part for the store's current version, rendered only when the version
    /// moved since the last call.
    pub fn store_part(&self, store: &Store) -> Bytes {
        let version = store.version();
        if let Some((v, text)) = &*self.lock() {
            if *v == version {
                return text.clone();
            }
        }
        // Rendered outside the lock: a scrape never waits for another's rendering. The
        // sections read below are at least as new as `version`, never older.
        let sections = store.sections();
        let declared = sections
            .keys()
            .map(|k| (k.clone(), store.declared(k)))
            .collect();
        let text = Bytes::from(render_store_part(&sections, &declared, &store.statuses()));
        let mut kept = self.lock();
        if kept.as_ref().is_none_or(|(v, _)| *v <= version) {
            *kept = Some((version, text.clone()));
        }
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Bytes)>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The whole exposition: the store's part (from `cache`), the request counts and the firing alerts.
pub fn render(
    cache: &Cache,
    store: &Store,
    requests: &Report,
    firing: &[crate::alerts::Alert],
) -> Vec<u8> {
    let kept = cache.store_part(store);
    let requests = render_requests(requests);
    let alerts = render_alerts(firing);
    let mut body = Vec::with_capacity(kept.len() + requests.len() + alerts.len());
    body.extend_from_slice(&kept);
    body.extend_from_slice(requests.as_bytes());
    body.extend_from_slice(alerts.as_bytes());
    body
}

/// The section the GPU metrics below are made from.
const GPU_SECTION: &str = "gpu";

/// The `gpu` section's metrics: every GPU series labelled by `gpu` (index) and `uuid`, a
/// `vitals_gpu_info` series carrying the text fields, fans by `fan` index, health signals as
/// counters and flags, MIG devices, and GPU memory per container (named from the `docker`
/// section when it is there).
mod gpu {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::{flatten, Families, Walk};

    /// The section container names are joined from.
    pub const DOCKER_SECTION: &str = "docker";

    /// GPU fields exported by their own rule below, not by the generic flattening.
    const SPECIAL: &[&str] = &[
        "index",
        "processes",
        "mig_devices",
        "fan_speeds_percent",
        "throttle_reasons",
        "throttle_seconds",
        "xid_errors",
        "last_xid",
        "energy_joules",
        "pcie_replays",
        "ecc",
    ];
    /// The text fields `vitals_gpu_info` carries as labels.
    const INFO_FIELDS: &[&str] = &[
        "name",
        "pci_bus_id",
        "compute_capability",
        "vbios_version",
        "performance_state",
        "compute_mode",
    ];
    /// Every throttle reason, so each GPU has the same series whether a reason is active or not.
    const THROTTLE_REASONS: &[&str] = &[
        "gpu-idle",
        "applications-clocks-setting",
        "sw-power-cap",
        "hw-slowdown",
        "sync-boost",
        "sw-thermal-slowdown",
        "hw-thermal-slowdown",
        "hw-power-brake-slowdown",
        "display-clock-setting",
    ];

    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        }
    }

    fn with(labels: &[(String, String)], more: &[(&str, String)]) -> Vec<(String, String)> {
        let mut l = labels.to_vec();
        l.extend(more.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        l
    }

    fn number(
        out: &mut Families,
        name: &str,
        help: &str,
        counter: bool,
        labels: &[(String, String)],
        v: &Value,
    ) {
        let value = match v {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        };
        if let Some(value) = value {
            out.add(name, help, counter, labels, value);
        }
    }

    /// Container id -> name, from the docker section.
    fn container_names(docker: Option<&Value>) -> BTreeMap<String, String> {
        docker
            .and_then(|d| d["containers"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["id"].as_str()?.to_owned(), c["name"].as_str()?.to_owned())))
            .collect()
    }

    /// The GPU metrics of one `gpu` section.
    pub fn render(out: &mut Families, section: &Value, docker: Option<&Value>) {
        let names = container_names(docker);
        for gpu in section["gpus"].as_array().into_iter().flatten() {
            let labels = vec![
                ("gpu".to_owned(), text(&gpu["index"])),
                ("uuid".to_owned(), text(&gpu["uuid"])),
            ];
            let mut info = labels.clone();
            for field in INFO_FIELDS {
                info.push(((*field).to_owned(), text(&gpu[*field])));
            }
            for field in ["driver_version", "cuda_driver_version", "source"] {
                info.push((field.to_owned(), text(&section[field])));
            }
            out.add(
                "vitals_gpu_info",
                "A GPU's identity and versions as labels (always 1).",
                false,
                &info,
                1.0,
            );
            let Some(fields) = gpu.as_object() else {
                continue;
            };
            for (key, value) in fields {
                if SPECIAL.contains(&key.as_str()) {
                    continue;
                }
                let none = BTreeMap::new();
                let mut w = Walk::new(
                    vec!["gpu".to_owned(), key.clone()],
                    labels.clone(),
                    vec!["gpus".to_owned(), "*".to_owned(), key.clone()],
                    &none,
                );
                flatten(out, &mut w, value);
            }
            render_fans(out, &labels, gpu);
            render_health(out, &labels, gpu);
            render_mig(out, &labels, gpu);
            render_containers(out, &labels, gpu, &names);
        }
    }

    fn render_fans(out: &mut Families, labels: &[(String, String)], gpu: &Value) {
        for (i, speed) in gpu["fan_speeds_percent"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(v) = speed.as_f64() {
                out.add(
                    "vitals_gpu_fan_speeds_ratio",
                    "Each fan's intended speed as a share of its maximum.",
                    false,
                    &with(labels, &[("fan", i.to_string())]),
                    v / 100.0,
                );
            }
        }
    }

    fn render_health(out: &mut Families, labels: &[(String, String)], gpu: &Value) {
        if let Some(active) = gpu["throttle_reasons"].as_array() {
            for reason in THROTTLE_REASONS {
                let on = active.iter().any(|r| r.as_str() == Some(reason));
                out.add(
                    "vitals_gpu_throttle_reason",
                    "1 while the clock event (throttle) reason holds the clocks down.",
                    false,
                    &with(labels, &[("reason", (*reason).to_owned())]),
                    f64::from(u8::from(on)),
                );
            }
        }
        for (cause, v) in gpu["throttle_seconds"].as_object().into_iter().flatten() {
            number(
                out,
                "vitals_gpu_throttle_seconds_total",
                "Time the clocks were held back since the driver loaded, by cause.",
                true,
                &with(labels, &[("cause", cause.clone())]),
                v,
            );
        }
        number(
            out,
            "vitals_gpu_xid_errors_total",
            "XID errors received since the collector started.",
            true,
            labels,
            &gpu["xid_errors"],
        );
        number(
            out,
            "vitals_gpu_last_xid",
            "The code of the last XID error received.",
            false,
            labels,
            &gpu["last_xid"]["xid"],
        );
        number(
            out,
            "vitals_gpu_energy_joules_total",
            "Energy the board used since the driver loaded.",
            true,
            labels,
            &gpu["energy_joules"],
        );
        number(
            out,
            "vitals_gpu_pcie_replays_total",
            "PCIe replays since the driver loaded.",
            true,
            labels,
            &gpu["pcie_replays"],
        );
        let ecc = &gpu["ecc"];
        if ecc.is_object() {
            number(
                out,
                "vitals_gpu_ecc_enabled",
                "1 when ECC is on.",
                false,
                labels,
                &ecc["enabled"],
            );
            for (kind, counter, field) in [
                ("corrected", "volatile", "corrected_volatile"),
                ("uncorrected", "volatile", "uncorrected_volatile"),
                ("corrected", "aggregate", "corrected_aggregate"),
                ("uncorrected", "aggregate", "uncorrected_aggregate"),
            ] {
                number(out, "vitals_gpu_ecc_errors_total", "ECC errors: volatile since the driver loaded, aggregate over the board's life.", true, &with(labels, &[("type", kind.to_owned()), ("counter", counter.to_owned())]), &ecc[field]);
            }
            for (cause, field) in [
                ("single_bit", "retired_pages_single_bit"),
                ("double_bit", "retired_pages_double_bit"),
            ] {
                number(
                    out,
                    "vitals_gpu_retired_pages",
                    "Device memory pages retired, by cause.",
                    false,
                    &with(labels, &[("cause", cause.to_owned())]),
                    &ecc[field],
                );
            }
            number(
                out,
                "vitals_gpu_retired_pages_pending",
                "1 when pages wait to be retired at the next reboot.",
                false,
                labels,
                &ecc["retired_pages_pending"],
            );
            for (kind, field) in [
                ("correctable", "remapped_rows_correctable"),
                ("uncorrectable", "remapped_rows_uncorrectable"),
            ] {
                number(
                    out,
                    "vitals_gpu_remapped_rows",
                    "Memory rows remapped, by the kind of error.",
                    false,
                    &with(labels, &[("kind", kind.to_owned())]),
                    &ecc[field],
                );
            }
            number(
                out,
                "vitals_gpu_remapped_rows_pending",
                "1 when a row remapping waits for a GPU reset.",
                false,
                labels,
                &ecc["remapped_rows_pending"],
            );
            number(
                out,
                "vitals_gpu_remapped_rows_failure",
                "1 when a row remapping failed.",
                false,
                labels,
                &ecc["remapped_rows_failure"],
            );
        }
    }

    fn render_mig(out: &mut Families, labels: &[(String, String)], gpu: &Value) {
        for mig in gpu["mig_devices"].as_array().into_iter().flatten() {
            let l = with(
                labels,
                &[
                    ("gpu_instance", text(&mig["gpu_instance_id"])),
                    ("compute_instance", text(&mig["compute_instance_id"])),
                    ("mig_uuid", text(&mig["uuid"])),
                    ("profile", text(&mig["profile"])),
                ],
            );
            number(
                out,
                "vitals_gpu_mig_memory_total_bytes",
                "Device memory of a MIG device.",
                false,
                &l,
                &mig["memory_total_bytes"],
            );
            number(
                out,
                "vitals_gpu_mig_memory_used_bytes",
                "Device memory in use in a MIG device.",
                false,
                &l,
                &mig["memory_used_bytes"],
            );
            if let Some(u) = mig["utilization_percent"].as_f64() {
                out.add(
                    "vitals_gpu_mig_utilization_ratio",
                    "Share of time a MIG device was busy.",
                    false,
                    &l,
                    u / 100.0,
                );
            }
        }
    }

    fn render_containers(
        out: &mut Families,
        labels: &[(String, String)],
        gpu: &Value,
        names: &BTreeMap<String, String>,
    ) {
        let mut per_container: BTreeMap<String, f64> = BTreeMap::new();
        for p in gpu["processes"].as_array().into_iter().flatten() {
            let Some(id) = p["container"]["id"].as_str() else {
                continue;
            };
            *per_container.entry(id.to_owned()).or_default() +=
                p["used_memory_bytes"].as_f64().unwrap_or(0.0);
        }
        for (id, bytes) in per_container {
            let name = names.get(&id).cloned().unwrap_or_default();
            out.add(
                "vitals_gpu_container_memory_bytes",
                "Device memory the processes of a container use on a GPU (container named from the docker section when it runs).",
                false,
                &with(labels, &[("container_id", id), ("container", name)]),
                bytes,
            );
        }
    }
}

/// `vitals_alert_firing{alertname, severity, collector, item} 1` for each firing alert.
pub fn render_alerts(firing: &[crate::alerts::Alert]) -> String {
    let mut out = String::from(
        "# HELP vitals_alert_firing 1 for each alert firing now.\n# TYPE vitals_alert_firing gauge\n",
    );
    for a in firing {
        let labels: Vec<String> = a
            .labels
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{k}=\"{v}\"")
            })
            .collect();
        out.push_str(&format!("vitals_alert_firing{{{}}} 1\n", labels.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render_sections(v: Value) -> String {
        let sections: BTreeMap<String, Value> = serde_json::from_value(v).expect("sections");
        render_store_part(&sections, &BTreeMap::new(), &BTreeMap::new())
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
            "vitals_gpu_temperature_celsius{gpu=\"0\",uuid=\"\"} 71",
            "vitals_gpu_power_watts{gpu=\"0\",uuid=\"\"} 250.5",
            "vitals_gpu_fan_speeds_ratio{fan=\"1\",gpu=\"0\",uuid=\"\"} 0.5",
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

    /// Guards the GPU metrics: an info series with the text fields, the uuid on every GPU
    /// series, fans by index, no `vitals_gpu_index`, health counters and flags, MIG devices,
    /// and GPU memory per container named from the docker section.
    #[test]
    fn gpu_metrics_carry_uuid_info_health_mig_and_containers() {
        let id = "a".repeat(64);
        let text = render_sections(json!({
            "gpu": {
                "source": "nvml", "driver_version": "535.104.05", "cuda_driver_version": "12.2",
                "gpus": [{
                    "index": 0, "uuid": "GPU-1", "name": "NVIDIA H100", "pci_bus_id": "00000000:01:00.0",
                    "compute_capability": "9.0", "vbios_version": "96.00", "performance_state": "P0",
                    "compute_mode": "default", "temperature_celsius": 60, "fan_speeds_percent": [40, 50],
                    "fan_speed_percent": 45, "mig_mode": { "enabled": true, "pending_enabled": true },
                    "persistence_mode": true,
                    "throttle_reasons": ["sw-power-cap"], "throttle_seconds": { "power": 4.5, "thermal": null },
                    "xid_errors": 3, "last_xid": { "gpu": 0, "xid": 79, "time_ms": 1 },
                    "energy_joules": 1000.5, "pcie_replays": 2,
                    "ecc": { "enabled": true, "pending_enabled": true, "corrected_volatile": 17,
                             "uncorrected_aggregate": 5, "retired_pages_pending": true,
                             "remapped_rows_correctable": 4, "remapped_rows_pending": true },
                    "mig_devices": [{ "gpu_instance_id": 1, "compute_instance_id": 0, "uuid": "MIG-1",
                                      "profile": "3g.40gb", "memory_total_bytes": 40, "memory_used_bytes": 20,
                                      "utilization_percent": null }],
                    "processes": [
                        { "pid": 1, "used_memory_bytes": 100, "container": { "id": id, "runtime": "docker" } },
                        { "pid": 2, "used_memory_bytes": 50, "container": { "id": id, "runtime": "docker" } },
                        { "pid": 3, "used_memory_bytes": 7, "container": null }
                    ]
                }]
            },
            "docker": { "containers": [{ "id": id, "name": "trainer", "cpu_percent": 1.0 }] }
        }));
        // The encoder sorts labels by name.
        let l = "gpu=\"0\",uuid=\"GPU-1\"";
        let u = "uuid=\"GPU-1\"";
        for line in [
            "vitals_gpu_info{compute_capability=\"9.0\",compute_mode=\"default\",cuda_driver_version=\"12.2\",driver_version=\"535.104.05\",gpu=\"0\",name=\"NVIDIA H100\",pci_bus_id=\"00000000:01:00.0\",performance_state=\"P0\",source=\"nvml\",uuid=\"GPU-1\",vbios_version=\"96.00\"} 1".to_owned(),
            format!("vitals_gpu_temperature_celsius{{{l}}} 60"),
            format!("vitals_gpu_fan_speed_ratio{{{l}}} 0.45"),
            format!("vitals_gpu_fan_speeds_ratio{{fan=\"1\",{l}}} 0.5"),
            format!("vitals_gpu_mig_mode_enabled{{{l}}} 1"),
            format!("vitals_gpu_persistence_mode{{{l}}} 1"),
            format!("vitals_gpu_throttle_reason{{gpu=\"0\",reason=\"sw-power-cap\",{u}}} 1"),
            format!("vitals_gpu_throttle_reason{{gpu=\"0\",reason=\"hw-slowdown\",{u}}} 0"),
            format!("vitals_gpu_throttle_seconds_total{{cause=\"power\",{l}}} 4.5"),
            format!("vitals_gpu_xid_errors_total{{{l}}} 3"),
            format!("vitals_gpu_last_xid{{{l}}} 79"),
            format!("vitals_gpu_energy_joules_total{{{l}}} 1000.5"),
            format!("vitals_gpu_pcie_replays_total{{{l}}} 2"),
            format!("vitals_gpu_ecc_errors_total{{counter=\"volatile\",gpu=\"0\",type=\"corrected\",{u}}} 17"),
            format!("vitals_gpu_ecc_errors_total{{counter=\"aggregate\",gpu=\"0\",type=\"uncorrected\",{u}}} 5"),
            format!("vitals_gpu_retired_pages_pending{{{l}}} 1"),
            format!("vitals_gpu_remapped_rows{{gpu=\"0\",kind=\"correctable\",{u}}} 4"),
            format!("vitals_gpu_remapped_rows_pending{{{l}}} 1"),
            format!("vitals_gpu_mig_memory_used_bytes{{compute_instance=\"0\",gpu=\"0\",gpu_instance=\"1\",mig_uuid=\"MIG-1\",profile=\"3g.40gb\",{u}}} 20"),
            format!("vitals_gpu_container_memory_bytes{{container=\"trainer\",container_id=\"{id}\",{l}}} 150"),
        ] {
            assert!(text.contains(&line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("vitals_gpu_index"), "{text}");
        assert!(!text.contains("fan_speed=\""), "{text}");
        // Another plugin under the `gpu` name keeps the generic flattening.
        let other = render_sections(json!({ "gpu": { "count": 3 } }));
        assert!(other.contains("vitals_gpus 3"), "{other}");
        assert!(
            !text.contains("vitals_gpu_throttle_seconds_total{cause=\"thermal\""),
            "{text}"
        );
    }

    /// Guards array labels: the field the collector's series are labelled by wins over the
    /// id fields and the position, so an element inserted in front moves no label, and
    /// arrays no series labels keep the id fields.
    #[test]
    fn array_elements_are_labelled_by_the_series_label_field() {
        let declared = BTreeMap::from([(
            "shop".to_owned(),
            vec![Series::new("waiting", "/lanes/*/waiting", "count").labelled_by("title")],
        )]);
        let render = |section: Value| {
            let sections = BTreeMap::from([("shop".to_owned(), section)]);
            render_store_part(&sections, &declared, &BTreeMap::new())
        };
        let before = render(
            json!({ "lanes": [{ "title": "alpha", "name": "a", "waiting": 3 }],
                                    "desks": [{ "name": "d1", "open": 1 }] }),
        );
        let after = render(json!({ "lanes": [{ "title": "beta", "waiting": 7 },
                                             { "title": "alpha", "name": "a", "waiting": 3 }],
                                   "desks": [{ "name": "d1", "open": 1 }] }));
        for (text, line) in [
            (&before, "vitals_shop_lane_waiting{lane=\"alpha\"} 3"),
            (&after, "vitals_shop_lane_waiting{lane=\"alpha\"} 3"),
            (&after, "vitals_shop_lane_waiting{lane=\"beta\"} 7"),
            (&after, "vitals_shop_desk_open{desk=\"d1\"} 1"),
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(!after.contains("lane=\"0\""), "{after}");
        assert!(!after.contains("lane=\"a\""), "{after}");
    }

    /// Guards the exposition cache: the store's part is rendered once per store version (a
    /// second scrape gets the very same bytes) and again as soon as the store changes.
    #[test]
    fn the_store_part_is_kept_per_store_version() {
        let store = Store::new(10, 10);
        let second = std::time::Duration::from_secs(1);
        store.register("a", second, second, true);
        let record = |n: u32| {
            let raw =
                serde_json::value::RawValue::from_string(format!("{{\"n\":{n}}}")).expect("raw");
            store.record_ok(
                "a",
                raw,
                std::time::Duration::ZERO,
                std::time::SystemTime::now(),
            );
        };
        record(1);
        let cache = Cache::default();
        let first = cache.store_part(&store);
        let again = cache.store_part(&store);
        assert!(std::str::from_utf8(&first)
            .expect("utf-8")
            .contains("vitals_a_n 1"));
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "rendered twice for one version"
        );
        record(2);
        let changed = cache.store_part(&store);
        let text = std::str::from_utf8(&changed).expect("utf-8");
        assert!(text.contains("vitals_a_n 2"), "{text}");
        assert!(!text.contains("vitals_a_n 1"), "{text}");
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
