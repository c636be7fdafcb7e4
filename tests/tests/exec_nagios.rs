//! End to end: Nagios check plugins as collectors — Debian's real monitoring plugins and perfdata edge cases, through snapshot, history and /metrics.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use vitals_e2e::{client, skip, Host};

const PLUGINS: &str = "/usr/lib/nagios/plugins";

/// The path of a monitoring plugin, or `None` (a recorded skip) when the package is missing.
fn plugin(name: &str) -> Option<PathBuf> {
    let path = Path::new(PLUGINS).join(name);
    if path.exists() {
        Some(path)
    } else {
        skip(&format!(
            "{} is missing, so the real Nagios checks are not run (`make test-deps` installs monitoring-plugins-basic)",
            path.display()
        ));
        None
    }
}

fn check(name: &str, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[collectors.{name}]\ncommand = [{}]\nmode = \"nagios\"\ninterval = \"500ms\"\ndeadline = \"5s\"\n\n",
        argv.join(", ")
    )
}

fn perfdata<'a>(section: &'a Value, label: &str) -> &'a Value {
    section["perfdata"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["label"] == label))
        .unwrap_or(&Value::Null)
}

/// The program that prints the guidelines' edge cases: quoted labels with spaces and a
/// doubled quote, `U`, every unit, missing min/max, trailing semicolons, a second perfdata
/// line after long text, and one malformed entry.
const EDGE: &str = r#"#!/bin/sh
echo "EDGE WARNING - all units|'with space'=1.5s;1;2;0;10 'it''s'=U;80;90 pct=42.5%;80;90 kb=2KB;;;0; mb=3MB tb=1TB"
echo "second line of long text"
echo "third line | ms=250ms;;; us=500us"
echo "ctr=123c plain=7 bad=x1"
exit 1
"#;

/// Guards the Nagios mode end to end: exit codes 0 to 3 as check states with the first
/// line as message, perfdata edge cases in base units, their series in the history and
/// their values in /metrics, a code outside 0 to 3 as a failure, and real checks from
/// monitoring-plugins-basic (check_load, check_disk, check_procs, check_dummy).
#[test]
fn nagios_checks_map_states_and_perfdata() {
    let (Some(load), Some(disk), Some(procs), Some(dummy)) = (
        plugin("check_load"),
        plugin("check_disk"),
        plugin("check_procs"),
        plugin("check_dummy"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let edge = dir.path().join("edge.sh");
    std::fs::write(&edge, EDGE).expect("write");
    std::fs::set_permissions(&edge, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let odd = dir.path().join("odd.sh");
    std::fs::write(&odd, "#!/bin/sh\necho 'what is 4?'\nexit 4\n").expect("write");
    std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = |p: &Path| p.display().to_string();
    let config = [
        "[collectors.memory]\ninterval = \"500ms\"\n\n".to_owned(),
        check(
            "load",
            &[&path(&load), "-w", "1000,1000,1000", "-c", "2000,2000,2000"],
        ),
        check("disk", &[&path(&disk), "-w", "0%", "-c", "0%", "-p", "/"]),
        check("procs", &[&path(&procs)]),
        check("warn", &[&path(&dummy), "1", "disk nearly full"]),
        check("crit", &[&path(&dummy), "2", "link down"]),
        check("unknown", &[&path(&dummy), "3"]),
        check("edge", &[&path(&edge)]),
        check("odd", &[&path(&odd)]),
    ]
    .concat();
    let host = Host::start(&config);
    let snap = host.wait_for("every check to run", Duration::from_secs(60), |s| {
        ["load", "disk", "procs", "warn", "crit", "unknown", "edge"]
            .iter()
            .all(|n| s["collectors"][n]["collects_total"].as_u64().unwrap_or(0) >= 2)
            && s["collectors"]["odd"]["state"] == "failed"
    });
    let sections = &snap["sections"];

    // States from exit codes; the first line's text is the message.
    for (name, state, code, message) in [
        ("load", "ok", 0, "LOAD OK"),
        ("warn", "warning", 1, "WARNING: disk nearly full"),
        ("crit", "critical", 2, "CRITICAL: link down"),
        ("unknown", "unknown", 3, "UNKNOWN"),
        ("edge", "warning", 1, "EDGE WARNING - all units"),
    ] {
        assert_eq!(
            snap["collectors"][name]["state"], "ok",
            "{name}: the check ran"
        );
        assert_eq!(sections[name]["state"], state, "{name}: {}", sections[name]);
        assert_eq!(sections[name]["exit_code"], code, "{name}");
        assert!(
            sections[name]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message)),
            "{name}: {}",
            sections[name]["message"]
        );
    }
    let reason = snap["collectors"]["odd"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("exited with code 4, not a check state 0 to 3: what is 4?"),
        "{reason}"
    );

    // The real checks' perfdata.
    for label in ["load1", "load5", "load15"] {
        assert!(
            perfdata(&sections["load"], label)["value"].is_number(),
            "{label}: {}",
            sections["load"]
        );
    }
    let root = perfdata(&sections["disk"], "/");
    assert!(
        root["value_bytes"].as_f64().unwrap_or(0.0) > 0.0
            && root["max_bytes"].as_f64().unwrap_or(0.0)
                >= root["value_bytes"].as_f64().unwrap_or(0.0),
        "{}",
        sections["disk"]
    );
    assert!(
        perfdata(&sections["procs"], "procs")["value"]
            .as_f64()
            .unwrap_or(0.0)
            >= 1.0,
        "{}",
        sections["procs"]
    );

    // The edge cases, in base units under unit-named fields.
    let e = &sections["edge"];
    let f = |label: &str, key: &str| perfdata(e, label)[key].as_f64();
    assert_eq!(f("with space", "value_seconds"), Some(1.5), "{e}");
    assert_eq!(f("with space", "max_seconds"), Some(10.0));
    assert_eq!(perfdata(e, "with space")["warn"], "1");
    assert_eq!(
        perfdata(e, "it's")["value"],
        Value::Null,
        "U is no value: {e}"
    );
    assert_eq!(perfdata(e, "it's")["crit"], "90");
    assert_eq!(f("pct", "value_percent"), Some(42.5));
    assert_eq!(f("kb", "value_bytes"), Some(2048.0));
    assert_eq!(f("kb", "min_bytes"), Some(0.0));
    assert!(perfdata(e, "kb").get("max_bytes").is_none(), "no max: {e}");
    assert_eq!(f("mb", "value_bytes"), Some(3.0 * 1048576.0));
    assert_eq!(f("tb", "value_bytes"), Some(1099511627776.0));
    assert_eq!(f("ms", "value_seconds"), Some(0.25));
    assert_eq!(f("us", "value_seconds"), Some(0.0005));
    assert_eq!(f("ctr", "value_total"), Some(123.0));
    assert_eq!(f("plain", "value"), Some(7.0));
    assert_eq!(
        e["long_output"], "second line of long text\nthird line",
        "{e}"
    );
    assert!(e["perfdata_problems"].to_string().contains("`bad`"), "{e}");

    // Perfdata values are chartable series without any declaration.
    let history = host.get_ok("/admin/monitor/history?collector=edge");
    let series: Vec<(String, String, String)> = history["edge"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or_default().to_owned(),
                        s["label"].as_str().unwrap_or_default().to_owned(),
                        s["unit"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for want in [
        ("perfdata_seconds", "with space", "seconds"),
        ("perfdata_seconds", "ms", "seconds"),
        ("perfdata_percent", "pct", "percent"),
        ("perfdata_bytes", "tb", "bytes"),
        ("perfdata_total", "ctr", "count"),
        ("perfdata", "plain", ""),
        ("exit_code", "", ""),
    ] {
        let want = (want.0.to_owned(), want.1.to_owned(), want.2.to_owned());
        assert!(series.contains(&want), "missing {want:?} in {series:?}");
    }
    let load_history = host.get_ok("/admin/monitor/history?collector=load");
    assert!(
        load_history.to_string().contains("\"label\":\"load15\""),
        "{load_history}"
    );

    // And in /metrics, in base units.
    let metrics = client()
        .get(format!("{}/metrics", host.base))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    for line in [
        "vitals_edge_perfdata_value_seconds{perfdata=\"with space\"} 1.5",
        "vitals_edge_perfdata_value_ratio{perfdata=\"pct\"} 0.425",
        "vitals_edge_perfdata_value_bytes{perfdata=\"kb\"} 2048",
        "vitals_edge_perfdata_value_total{perfdata=\"ctr\"} 123",
        "vitals_edge_exit_code 1",
        "vitals_crit_exit_code 2",
        "vitals_procs_perfdata_value{perfdata=\"procs\"}",
        "vitals_disk_perfdata_value_bytes{perfdata=\"/\"}",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in /metrics");
    }
    assert!(
        snap["collectors"]["memory"]["collects_total"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "the native collector runs beside the checks"
    );

    // The stock rules check_warning and check_critical fire for the checks in those states,
    // labelled by the collector, and for no other.
    let firing = |alerts: &Value, rule: &str| -> Vec<String> {
        alerts["active"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["name"] == rule && a["state"] == "firing")
            .map(|a| a["label"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let start = std::time::Instant::now();
    let alerts = loop {
        let a = host.get_ok("/admin/monitor/alerts");
        if !firing(&a, "check_warning").is_empty() && !firing(&a, "check_critical").is_empty() {
            break a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "check_warning and check_critical never fired: {a:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut warning = firing(&alerts, "check_warning");
    warning.sort();
    assert_eq!(warning, ["edge", "warn"], "{alerts:#}");
    assert_eq!(firing(&alerts, "check_critical"), ["crit"], "{alerts:#}");
}
