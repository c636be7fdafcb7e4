//! The stock rules, on by default: each reads the built-in collectors' section fields.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::eval::{Extract, Input, Rule, Source, Transform, Values, Watch};
use super::rules::{AlertingSettings, Condition, Severity};
use crate::store::State;

/// One stock rule's definition.
struct Stock {
    name: &'static str,
    extract: Extract,
    condition: Condition,
    threshold: f64,
    clear: Option<f64>,
    transform: Transform,
    for_secs: u64,
    severity: Severity,
    summary: &'static str,
}

/// The names of every stock rule, as `[alerting.stock.NAME]` spells them.
pub const NAMES: &[&str] = &[
    "disk_used",
    "disk_fill_forecast",
    "memory_available",
    "swap_used",
    "load_per_core",
    "cpu_temperature",
    "gpu_temperature",
    "gpu_ecc_uncorrected",
    "gpu_xid",
    "gpu_throttled",
    "container_restarts",
    "container_oom_killed",
    "container_unhealthy",
    "collector_failed",
    "history_paused",
    "check_warning",
    "check_critical",
];

/// The collectors whose sections the stock readers look into (beside the `exit_code` and
/// `state` of every section, for the `check_*` rules), and the fields they read there: these
/// sections are parsed to those fields alone.
pub const READS: &[(&str, &[&str])] = &[
    (
        "cpu",
        &[
            "/load_average/five",
            "/logical_cores",
            "/temperatures/*/label",
            "/temperatures/*/temperature_celsius",
            "/temperatures/*/critical_celsius",
        ],
    ),
    (
        "disk",
        &[
            "/disks/*/mount_point",
            "/disks/*/used_percent",
            "/disks/*/read_only",
        ],
    ),
    (
        "docker",
        &[
            "/containers/*/name",
            "/containers/*/restart_count",
            "/containers/*/health",
            "/events",
        ],
    ),
    (
        "gpu",
        &[
            "/gpus/*/index",
            "/gpus/*/temperature_celsius",
            "/gpus/*/ecc/uncorrected_volatile",
            "/gpus/*/xid_errors",
            "/gpus/*/throttle_reasons",
        ],
    ),
    (
        "memory",
        &[
            "/available_bytes",
            "/total_bytes",
            "/swap_total_bytes",
            "/swap_used_percent",
        ],
    ),
];

fn section<'a>(input: &'a Input<'_>, name: &str) -> Option<&'a Value> {
    debug_assert!(
        READS.iter().any(|(c, _)| *c == name),
        "a stock reader reads `{name}`: add it to READS"
    );
    input.sections.get(name).map(Arc::as_ref)
}

fn items<'a>(
    input: &'a Input<'_>,
    collector: &str,
    array: &str,
) -> impl Iterator<Item = &'a Value> {
    section(input, collector)
        .and_then(|s| s.get(array))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn disk_used<'a>(input: &'a Input<'_>) -> Values<'a> {
    items(input, "disk", "disks")
        .filter(|d| d["read_only"] != Value::Bool(true))
        .filter_map(|d| Some((Some(text(&d["mount_point"])), d["used_percent"].as_f64()?)))
        .collect()
}

fn disk_fill_forecast<'a>(input: &'a Input<'_>) -> Values<'a> {
    input
        .forecasts
        .iter()
        .map(|(m, h)| (Some(Cow::Borrowed(m.as_str())), *h))
        .collect()
}

fn memory_available<'a>(input: &'a Input<'_>) -> Values<'a> {
    let Some(m) = section(input, "memory") else {
        return Vec::new();
    };
    match (m["available_bytes"].as_f64(), m["total_bytes"].as_f64()) {
        (Some(a), Some(t)) if t > 0.0 => vec![(None, a / t * 100.0)],
        _ => Vec::new(),
    }
}

fn swap_used<'a>(input: &'a Input<'_>) -> Values<'a> {
    let Some(m) = section(input, "memory") else {
        return Vec::new();
    };
    if m["swap_total_bytes"].as_f64().unwrap_or(0.0) <= 0.0 {
        return Vec::new();
    }
    m["swap_used_percent"]
        .as_f64()
        .map(|v| vec![(None, v)])
        .unwrap_or_default()
}

fn load_per_core<'a>(input: &'a Input<'_>) -> Values<'a> {
    let Some(c) = section(input, "cpu") else {
        return Vec::new();
    };
    match (
        c["load_average"]["five"].as_f64(),
        c["logical_cores"].as_f64(),
    ) {
        (Some(l), Some(n)) if n > 0.0 => vec![(None, l / n)],
        _ => Vec::new(),
    }
}

/// Degrees below the sensor's critical point, per sensor that reports one.
fn cpu_temperature<'a>(input: &'a Input<'_>) -> Values<'a> {
    items(input, "cpu", "temperatures")
        .filter_map(|t| {
            let crit = t["critical_celsius"].as_f64()?;
            Some((
                Some(text(&t["label"])),
                crit - t["temperature_celsius"].as_f64()?,
            ))
        })
        .collect()
}

fn gpu_field<'a>(input: &'a Input<'_>, f: impl Fn(&Value) -> Option<f64>) -> Values<'a> {
    items(input, "gpu", "gpus")
        .filter_map(|g| Some((Some(text(&g["index"])), f(g)?)))
        .collect()
}

fn gpu_temperature<'a>(input: &'a Input<'_>) -> Values<'a> {
    gpu_field(input, |g| g["temperature_celsius"].as_f64())
}

fn gpu_ecc_uncorrected<'a>(input: &'a Input<'_>) -> Values<'a> {
    gpu_field(input, |g| g["ecc"]["uncorrected_volatile"].as_f64())
}

fn gpu_xid<'a>(input: &'a Input<'_>) -> Values<'a> {
    gpu_field(input, |g| g["xid_errors"].as_f64())
}

/// 1 while a GPU is held back by a power cap or heat, 0 otherwise.
fn gpu_throttled<'a>(input: &'a Input<'_>) -> Values<'a> {
    const HARMFUL: [&str; 5] = [
        "sw-power-cap",
        "hw-slowdown",
        "sw-thermal-slowdown",
        "hw-thermal-slowdown",
        "hw-power-brake-slowdown",
    ];
    gpu_field(input, |g| {
        let reasons = g["throttle_reasons"].as_array()?;
        Some(f64::from(u8::from(
            reasons
                .iter()
                .any(|r| r.as_str().is_some_and(|r| HARMFUL.contains(&r))),
        )))
    })
}

fn container_restarts<'a>(input: &'a Input<'_>) -> Values<'a> {
    items(input, "docker", "containers")
        .filter_map(|c| Some((Some(text(&c["name"])), c["restart_count"].as_f64()?)))
        .collect()
}

/// OOM kills the docker section reports in the last 10 minutes, by the container named in the event.
fn container_oom_killed<'a>(input: &'a Input<'_>) -> Values<'a> {
    let since = input.now_ms.saturating_sub(600_000) as i64;
    let mut counts = std::collections::BTreeMap::<&str, f64>::new();
    for e in items(input, "docker", "events") {
        if e["kind"] == "oom_killed" && e["time_unix_ms"].as_i64().is_some_and(|t| t >= since) {
            let who = e["text"]
                .as_str()
                .and_then(|t| t.strip_prefix("container "))
                .and_then(|t| t.split_whitespace().next())
                .unwrap_or("?");
            *counts.entry(who).or_default() += 1.0;
        }
    }
    counts
        .into_iter()
        .map(|(k, v)| (Some(Cow::Borrowed(k)), v))
        .collect()
}

fn container_unhealthy<'a>(input: &'a Input<'_>) -> Values<'a> {
    items(input, "docker", "containers")
        .map(|c| {
            (
                Some(text(&c["name"])),
                f64::from(u8::from(c["health"] == "unhealthy")),
            )
        })
        .collect()
}

/// Nagios-mode collectors (a section with a check `state` and its `exit_code`): 1 where the
/// check's state is `word`, 0 otherwise, labelled by the collector.
fn check_in_state<'a>(input: &'a Input<'_>, word: &str) -> Values<'a> {
    input
        .sections
        .iter()
        .filter(|(_, s)| s["exit_code"].is_i64() && s["state"].is_string())
        .map(|(name, s)| {
            (
                Some(Cow::Borrowed(name.as_str())),
                f64::from(u8::from(s["state"] == word)),
            )
        })
        .collect()
}

fn check_warning<'a>(input: &'a Input<'_>) -> Values<'a> {
    check_in_state(input, "warning")
}

fn check_critical<'a>(input: &'a Input<'_>) -> Values<'a> {
    check_in_state(input, "critical")
}

fn collector_failed<'a>(input: &'a Input<'_>) -> Values<'a> {
    input
        .statuses
        .iter()
        .map(|(n, s)| {
            (
                Some(Cow::Borrowed(n.as_str())),
                f64::from(u8::from(*s == State::Failed)),
            )
        })
        .collect()
}

fn history_paused<'a>(input: &'a Input<'_>) -> Values<'a> {
    vec![(None, f64::from(u8::from(input.history_paused)))]
}

const MIN: u64 = 60;

/// The section field each stock rule reads (or derives its value from), for the page to colour.
fn shown(name: &str) -> Option<Watch> {
    let (collector, pointer, label) = match name {
        "disk_used" | "disk_fill_forecast" => ("disk", "/disks/*/used_percent", "mount_point"),
        "memory_available" => ("memory", "/available_bytes", ""),
        "swap_used" => ("memory", "/swap_used_percent", ""),
        "load_per_core" => ("cpu", "/load_average/five", ""),
        "cpu_temperature" => ("cpu", "/temperatures/*/temperature_celsius", "label"),
        "gpu_temperature" => ("gpu", "/gpus/*/temperature_celsius", "index"),
        "gpu_ecc_uncorrected" => ("gpu", "/gpus/*/ecc/uncorrected_volatile", "index"),
        "gpu_xid" => ("gpu", "/gpus/*/xid_errors", "index"),
        "gpu_throttled" => ("gpu", "/gpus/*/throttle_reasons", "index"),
        "container_restarts" => ("docker", "/containers/*/restart_count", "name"),
        "container_oom_killed" => ("docker", "/containers/*/memory_used_bytes", "name"),
        "container_unhealthy" => ("docker", "/containers/*/health", "name"),
        _ => return None,
    };
    Some(Watch {
        collector: collector.to_owned(),
        pointer: pointer.to_owned(),
        label_field: (!label.is_empty()).then(|| label.to_owned()),
    })
}

fn definitions() -> Vec<Stock> {
    use Condition::{Above, Below};
    use Severity::{Critical, Warning};
    let s = |name, extract, condition, threshold, clear, for_secs, severity, summary| Stock {
        name,
        extract,
        condition,
        threshold,
        clear,
        transform: Transform::Value,
        for_secs,
        severity,
        summary,
    };
    vec![
        s(
            "disk_used",
            disk_used as Extract,
            Above,
            90.0,
            Some(88.0),
            MIN,
            Critical,
            "disk {label} is {value} % full",
        ),
        s(
            "disk_fill_forecast",
            disk_fill_forecast,
            Below,
            24.0,
            Some(30.0),
            0,
            Warning,
            "disk {label} will be full in {value} h at the rate of the last 6 h",
        ),
        s(
            "memory_available",
            memory_available,
            Below,
            5.0,
            Some(7.0),
            MIN,
            Critical,
            "only {value} % of memory is available",
        ),
        s(
            "swap_used",
            swap_used,
            Above,
            80.0,
            Some(70.0),
            5 * MIN,
            Warning,
            "swap is {value} % used: the machine is short of memory",
        ),
        s(
            "load_per_core",
            load_per_core,
            Above,
            2.0,
            Some(1.5),
            5 * MIN,
            Warning,
            "5-minute load is {value} per core",
        ),
        s(
            "cpu_temperature",
            cpu_temperature,
            Below,
            5.0,
            Some(8.0),
            MIN,
            Critical,
            "CPU sensor {label} is {value} °C below its critical point",
        ),
        s(
            "gpu_temperature",
            gpu_temperature,
            Above,
            85.0,
            Some(80.0),
            MIN,
            Warning,
            "GPU {label} is at {value} °C",
        ),
        s(
            "gpu_ecc_uncorrected",
            gpu_ecc_uncorrected,
            Above,
            0.0,
            None,
            0,
            Critical,
            "GPU {label} has {value} uncorrected ECC errors since the driver loaded",
        ),
        Stock {
            transform: Transform::Increase(Duration::from_secs(10 * MIN)),
            ..s(
                "gpu_xid",
                gpu_xid,
                Above,
                0.0,
                None,
                0,
                Critical,
                "GPU {label} reported {value} XID errors in 10 min",
            )
        },
        s(
            "gpu_throttled",
            gpu_throttled,
            Above,
            0.5,
            None,
            3 * MIN,
            Warning,
            "GPU {label} is throttled by its power cap or heat",
        ),
        Stock {
            transform: Transform::Increase(Duration::from_secs(10 * MIN)),
            ..s(
                "container_restarts",
                container_restarts,
                Above,
                3.0,
                None,
                0,
                Warning,
                "container {label} restarted {value} times in 10 min",
            )
        },
        s(
            "container_oom_killed",
            container_oom_killed,
            Above,
            0.0,
            None,
            0,
            Critical,
            "container {label} was killed for lack of memory ({value} in 10 min)",
        ),
        s(
            "container_unhealthy",
            container_unhealthy,
            Above,
            0.5,
            None,
            0,
            Warning,
            "container {label} is unhealthy",
        ),
        s(
            "collector_failed",
            collector_failed,
            Above,
            0.5,
            None,
            5 * MIN,
            Warning,
            "collector {label} has failed for more than 5 min",
        ),
        s(
            "history_paused",
            history_paused,
            Above,
            0.5,
            None,
            0,
            Warning,
            "the durable history is not writing",
        ),
        s(
            "check_warning",
            check_warning,
            Above,
            0.5,
            None,
            0,
            Warning,
            "check {label} is WARNING",
        ),
        s(
            "check_critical",
            check_critical,
            Above,
            0.5,
            None,
            0,
            Critical,
            "check {label} is CRITICAL",
        ),
    ]
}

/// The stock rules in force under `settings`: off ones left out, overrides applied.
pub fn rules(settings: &AlertingSettings) -> Vec<Rule> {
    if !settings.stock_rules {
        return Vec::new();
    }
    definitions()
        .into_iter()
        .filter_map(|d| {
            let o = settings.stock.get(d.name).cloned().unwrap_or_default();
            if o.enabled == Some(false) {
                return None;
            }
            let threshold = o.threshold.unwrap_or(d.threshold);
            // A new threshold without a new clear keeps no stale clear on the wrong side.
            let clear = o
                .clear
                .or(if o.threshold.is_some() { None } else { d.clear });
            Some(Rule {
                name: d.name.to_owned(),
                source: Source::Stock(d.extract),
                condition: d.condition,
                threshold: Some(threshold),
                clear,
                transform: d.transform,
                for_: o.for_.unwrap_or(Duration::from_secs(d.for_secs)),
                severity: o.severity.unwrap_or(d.severity),
                summary: d.summary.to_owned(),
                place: "stock".to_owned(),
                shown: shown(d.name),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards that the names list and the definitions agree.
    #[test]
    fn names_match_definitions() {
        let defined: Vec<&str> = definitions().iter().map(|d| d.name).collect();
        assert_eq!(defined, NAMES);
    }

    /// Guards switching off and re-thresholding by name.
    #[test]
    fn overrides_apply() {
        let mut s = AlertingSettings::default();
        s.stock.insert(
            "disk_used".into(),
            super::super::rules::StockOverride {
                enabled: Some(false),
                ..Default::default()
            },
        );
        s.stock.insert(
            "gpu_temperature".into(),
            super::super::rules::StockOverride {
                threshold: Some(70.0),
                ..Default::default()
            },
        );
        let r = rules(&s);
        assert!(!r.iter().any(|r| r.name == "disk_used"));
        let g = r
            .iter()
            .find(|r| r.name == "gpu_temperature")
            .expect("gpu rule");
        assert_eq!((g.threshold, g.clear), (Some(70.0), None));
        assert_eq!(r.len(), NAMES.len() - 1);
    }
    /// Guards the field names the stock rules read, over sections shaped as the collectors
    /// send them and parsed to the fields `READS` lists (a reader reading a field not listed
    /// finds nothing, and its alert does not fire here).
    #[test]
    fn stock_rules_read_the_section_fields() {
        use serde_json::json;
        use std::collections::BTreeMap;
        let sections = BTreeMap::from([
            (
                "disk".to_owned(),
                json!({"disks": [
                {"mount_point": "/", "used_percent": 95.0, "read_only": false},
                {"mount_point": "/snap", "used_percent": 100.0, "read_only": true}]}),
            ),
            (
                "memory".to_owned(),
                json!({"available_bytes": 3, "total_bytes": 100,
                "swap_total_bytes": 0, "swap_used_percent": 0.0}),
            ),
            (
                "cpu".to_owned(),
                json!({"logical_cores": 2, "load_average": {"five": 6.0},
                "temperatures": [{"label": "Package id 0", "temperature_celsius": 97.0, "critical_celsius": 100.0}]}),
            ),
            (
                "gpu".to_owned(),
                json!({"gpus": [{"index": 0, "temperature_celsius": 91,
                "ecc": {"uncorrected_volatile": 2}, "xid_errors": 1,
                "throttle_reasons": ["gpu-idle", "sw-thermal-slowdown"]}]}),
            ),
            (
                "docker".to_owned(),
                json!({"containers": [
                {"name": "web", "restart_count": 1, "health": "unhealthy"},
                {"name": "db", "restart_count": 0, "health": "healthy"}],
                "events": [{"time_unix_ms": 1_000_000, "kind": "oom_killed", "text": "container web was killed: out of memory"}]}),
            ),
            (
                "disk_check".to_owned(),
                json!({"state": "critical", "exit_code": 2, "message": "DISK CRITICAL", "perfdata": []}),
            ),
            (
                "load_check".to_owned(),
                json!({"state": "warning", "exit_code": 1, "message": "LOAD WARNING", "perfdata": []}),
            ),
            (
                "procs_check".to_owned(),
                json!({"state": "ok", "exit_code": 0, "message": "PROCS OK", "perfdata": []}),
            ),
        ]);
        let sections: BTreeMap<String, Arc<Value>> = sections
            .into_iter()
            .map(|(k, v)| {
                let v = match READS.iter().find(|(c, _)| *c == k) {
                    Some((_, fields)) => crate::projection::Projection::of(fields.iter().copied())
                        .parse(&v.to_string())
                        .expect("parses"),
                    None => v,
                };
                (k, Arc::new(v))
            })
            .collect();
        let statuses = BTreeMap::new();
        let declared = BTreeMap::new();
        let forecasts = BTreeMap::new();
        let input = Input {
            sections: &sections,
            statuses: &statuses,
            declared: &declared,
            history_paused: true,
            forecasts: &forecasts,
            now_ms: 1_100_000,
        };
        let mut engine = super::super::Engine::new(rules(&AlertingSettings {
            stock: [
                ("disk_used", 0),
                ("memory_available", 0),
                ("load_per_core", 0),
                ("cpu_temperature", 0),
                ("gpu_temperature", 0),
                ("gpu_throttled", 0),
            ]
            .into_iter()
            .map(|(n, _)| {
                (
                    n.to_owned(),
                    super::super::rules::StockOverride {
                        for_: Some(Duration::ZERO),
                        ..Default::default()
                    },
                )
            })
            .collect(),
            ..AlertingSettings::default()
        }));
        let mut fired: Vec<String> = engine
            .evaluate(&input)
            .into_iter()
            .filter_map(|t| match t {
                super::super::Transition::Fired(a) => {
                    Some(format!("{} {}", a.name, a.label.unwrap_or_default()))
                }
                super::super::Transition::Resolved(_) => None,
            })
            .collect();
        fired.sort();
        assert_eq!(
            fired,
            [
                "check_critical disk_check",
                "check_warning load_check",
                "container_oom_killed web",
                "container_unhealthy web",
                "cpu_temperature Package id 0",
                "disk_used /",
                "gpu_ecc_uncorrected 0",
                "gpu_temperature 0",
                "gpu_throttled 0",
                "history_paused ",
                "load_per_core ",
                "memory_available ",
            ]
        );
    }
}
