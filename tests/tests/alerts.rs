//! Alerts end to end: a rule over an exec collector's series fires, shows in the alerts API,
//! health, `/metrics`, the durable history and a real Alertmanager, and resolves in all of them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::{client, run_vitals, toml_path, tool_or_skip, Host, SseReader};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Alertmanager {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Starts Debian's Alertmanager on a free loopback port with a config that routes
    /// everything to a receiver that sends nothing.
    fn start() -> Alertmanager {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nowhere\n  group_wait: 1s\nreceivers:\n  - name: nowhere\n",
        )
        .expect("write config");
        let port = free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager");
        let am = Alertmanager {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        am.wait("Alertmanager to answer", |_| true);
        am
    }

    fn alerts(&self) -> Option<Value> {
        client()
            .get(format!("{}/api/v2/alerts", self.base))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.json().ok())
    }

    fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.alerts() {
                if pred(&v) {
                    return v;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; Alertmanager has {:?}",
                self.alerts()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == name || a["name"] == name)
}

fn wait_alerts(host: &Host, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = host.get_ok("/admin/monitor/alerts");
        if pred(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; alerts: {v:#}\nhost log:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(value_file: &Path, extra: &str) -> String {
    format!(
        r#"
[history]
points = 60

[collectors.probe]
command = ["cat", {file}]
interval = "1s"
series = [{{ name = "level", pointer = "/level", unit = "" }}]

[[alerts]]
name = "probe_high"
series = "probe.level"
condition = ">"
threshold = 50
clear = 40
severity = "critical"
summary = "probe level at {{value}}"

[alerting]
{extra}
"#,
        file = toml_path(value_file)
    )
}

fn level(host: &Host, v: u32) -> Value {
    host.wait_for(
        &format!("the probe to read {v}"),
        Duration::from_secs(20),
        |s| s["sections"]["probe"]["level"] == v,
    )
}

/// Guards the whole alert path: firing shows in the alerts API, health (still 200), `/metrics`
/// and Alertmanager's own API with its labels; the clear threshold holds it; below clear it
/// resolves everywhere, and both changes are events in the durable history.
#[test]
fn alert_fires_everywhere_and_resolves_in_alertmanager() {
    if !tool_or_skip("prometheus-alertmanager", "alerts in a real Alertmanager") {
        return;
    }
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("value.json");
    std::fs::write(&file, r#"{"level": 10}"#).expect("write");
    // Resent every 30 s, a firing alert's endsAt lies 2 min ahead: it can only leave
    // Alertmanager within the test's minute through the resolved post.
    let host = Host::start(&config(
        &file,
        &format!(
            "alertmanager = [\"{}\"]\nresend_interval = \"30s\"",
            am.base
        ),
    ));
    level(&host, 10);
    let v = host.get_ok("/admin/monitor/alerts");
    assert!(named(&v["active"], "probe_high").is_none(), "{v:#}");

    std::fs::write(&file, r#"{"level": 90}"#).expect("write");
    let v = wait_alerts(&host, "probe_high firing", |v| {
        named(&v["active"], "probe_high").is_some_and(|a| a["state"] == "firing")
    });
    let a = named(&v["active"], "probe_high").expect("alert");
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["summary"], "probe level at 90");
    assert_eq!(a["labels"]["collector"], "probe");

    let (status, health) = host.get("/admin/monitor/health");
    assert_eq!(
        status, 200,
        "a firing alert is not a host failure: {health:#}"
    );
    assert!(
        named(&health["alerts"], "probe_high").is_some(),
        "{health:#}"
    );

    let metrics = client()
        .get(format!("{}/metrics", host.base))
        .send()
        .and_then(|r| r.text())
        .expect("GET /metrics");
    assert!(
        metrics.contains(
            "vitals_alert_firing{alertname=\"probe_high\",collector=\"probe\",severity=\"critical\"} 1"
        ),
        "{metrics}"
    );

    let in_am = am.wait("probe_high in Alertmanager", |v| {
        named(v, "probe_high").is_some()
    });
    let got = named(&in_am, "probe_high").expect("alert in Alertmanager");
    assert_eq!(got["labels"]["severity"], "critical", "{got:#}");
    assert_eq!(got["labels"]["collector"], "probe", "{got:#}");
    assert_eq!(
        got["annotations"]["summary"], "probe level at 90",
        "{got:#}"
    );
    assert_eq!(got["status"]["state"], "active", "{got:#}");

    // Between clear and threshold: hysteresis keeps it firing.
    std::fs::write(&file, r#"{"level": 45}"#).expect("write");
    level(&host, 45);
    level(&host, 45);
    let v = host.get_ok("/admin/monitor/alerts");
    assert!(
        named(&v["active"], "probe_high").is_some_and(|a| a["state"] == "firing"),
        "{v:#}"
    );

    std::fs::write(&file, r#"{"level": 5}"#).expect("write");
    let v = wait_alerts(&host, "probe_high resolved", |v| {
        named(&v["active"], "probe_high").is_none() && named(&v["resolved"], "probe_high").is_some()
    });
    assert!(named(&v["resolved"], "probe_high").expect("resolved")["resolved_unix_ms"].is_u64());
    am.wait("probe_high gone from Alertmanager", |v| {
        named(v, "probe_high").is_none()
    });
    let metrics = client()
        .get(format!("{}/metrics", host.base))
        .send()
        .and_then(|r| r.text())
        .expect("GET /metrics");
    assert!(!metrics.contains("alertname=\"probe_high\""), "{metrics}");

    let start = Instant::now();
    loop {
        let (_, ev) = host.get("/admin/monitor/events?source=alerts");
        let kinds: Vec<&str> = ev["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        if kinds.contains(&"alert_firing") && kinds.contains(&"alert_resolved") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "alert events missing from the durable history: {ev:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Guards the command notifier (argv, stdin JSON) and failure accounting: a webhook nobody
/// listens on is retried, counted as failed and shown in health, which stays 200.
#[test]
fn command_notifier_runs_and_failures_show_in_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("value.json");
    let out = dir.path().join("notified.jsonl");
    std::fs::write(&file, r#"{"level": 99}"#).expect("write");
    let closed = free_port();
    let extra = format!(
        "resend_interval = \"1s\"\n\
         webhooks = [\"http://127.0.0.1:{closed}/hook\"]\n\
         notify_timeout = \"1s\"\n\
         [[alerting.commands]]\nargv = [\"tee\", \"-a\", {}]\ntimeout = \"5s\"\n",
        toml_path(&out)
    );
    let host = Host::start(&config(&file, &extra));
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("probe_high") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the command never got the alert\nhost log:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let sent: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
    assert_eq!(sent["alerts"][0]["status"], "firing", "{sent:#}");
    assert_eq!(sent["alerts"][0]["alert"]["name"], "probe_high", "{sent:#}");

    let start = Instant::now();
    loop {
        let (status, h) = host.get("/admin/monitor/health");
        assert_eq!(status, 200, "{h:#}");
        let failed = h["notifiers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["kind"] == "webhook")
            .map(|n| n["failed"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        if failed >= 1 {
            assert!(
                h["warnings"].as_array().is_some_and(|w| w
                    .iter()
                    .any(|w| w.as_str().is_some_and(|w| w.contains("alert notifier")))),
                "{h:#}"
            );
            let n = h["notifiers"].as_array().expect("notifiers");
            let hook = n.iter().find(|n| n["kind"] == "webhook").expect("webhook");
            assert!(hook["retries"].as_u64() >= Some(3), "{hook:#}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the webhook failure never showed: {h:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Guards config validation: a rule naming an unconfigured collector is refused with file,
/// line and column, together with every other problem.
#[test]
fn bad_rules_are_refused_with_their_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vitals.toml");
    std::fs::write(
        &path,
        "[collectors.cpu]\n\n[[alerts]]\nname = \"x\"\nseries = \"gpu.temperature_celsius\"\ncondition = \">\"\nthreshold = 1\n\n\
         [[alerts]]\nname = \"y\"\nseries = \"cpu.usage_percent\"\ncondition = \"absent\"\n",
    )
    .expect("write");
    let (ok, _, err) = run_vitals(&["check-config", path.to_str().expect("utf-8")]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(":5:1") && err.contains("collector `gpu`"),
        "{err}"
    );
    assert!(
        err.contains(":9:1") && err.contains("`absent` needs `for`"),
        "{err}"
    );
}

/// The next `alerts` event of `stream` whose document satisfies `pred`.
fn next_alerts(stream: &SseReader, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < Duration::from_secs(60) {
        let Some(ev) = stream.next_data(Duration::from_secs(5)) else {
            continue;
        };
        assert_eq!(ev.event.as_deref(), Some("alerts"), "{ev:?}");
        last = serde_json::from_str(&ev.data).expect("an alerts event holds JSON");
        if pred(&last) {
            return last;
        }
    }
    panic!("no alerts event showed {what}; the last: {last:#}");
}

fn watch<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["watches"].as_array()?.iter().find(|w| w["name"] == name)
}

/// Guards the alerts event stream and rules reloaded with the config: the stream sends the
/// alerts document at once and again when an alert fires; rewriting the config file replaces
/// the rules without a restart: the removed rule's alert resolves, the new rule fires, the
/// re-thresholded stock rule lists its new threshold, all pushed on the stream.
#[test]
fn alerts_stream_and_rules_follow_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("value.json");
    std::fs::write(&file, r#"{"level": 10}"#).expect("write");
    let host = Host::start(&config(&file, ""));
    level(&host, 10);
    let stream = SseReader::open(&host.base, "/admin/monitor/alerts/stream", &[]);
    assert_eq!(stream.status, 200);
    assert!(
        stream.content_type.starts_with("text/event-stream"),
        "{}",
        stream.content_type
    );
    // The configured rule's watch is known once its series was resolved against the
    // collector's declared series, at the first evaluation after its first collect.
    let first = next_alerts(&stream, "the rules in force, resolved", |v| {
        watch(v, "probe_high").is_some_and(|w| w["watch"]["collector"] == "probe")
    });
    let high = watch(&first, "probe_high").expect("probe_high is listed");
    assert_eq!(high["threshold"], 50.0, "{high:#}");
    assert_eq!(high["clear"], 40.0, "{high:#}");
    assert_eq!(high["watch"]["collector"], "probe", "{high:#}");
    assert_eq!(high["watch"]["pointer"], "/level", "{high:#}");
    assert_eq!(
        watch(&first, "gpu_temperature").expect("stock rule")["threshold"],
        85.0
    );

    std::fs::write(&file, r#"{"level": 90}"#).expect("write");
    next_alerts(&stream, "probe_high firing", |v| {
        named(&v["active"], "probe_high").is_some_and(|a| a["state"] == "firing")
    });

    let path = host.dir.path().join("vitals.toml");
    let text = std::fs::read_to_string(&path).expect("read config");
    let rewritten = text
        .replace("name = \"probe_high\"", "name = \"probe_over_80\"")
        .replace(
            "threshold = 50\nclear = 40\nseverity = \"critical\"",
            "threshold = 80\nseverity = \"warning\"",
        )
        + "[alerting.stock.gpu_temperature]\nthreshold = 70\n";
    assert_ne!(text, rewritten);
    std::fs::write(&path, rewritten).expect("rewrite config");

    let v = next_alerts(&stream, "the new rules in force and their alerts", |v| {
        named(&v["resolved"], "probe_high").is_some()
            && named(&v["active"], "probe_over_80").is_some_and(|a| a["state"] == "firing")
    });
    assert!(named(&v["active"], "probe_high").is_none(), "{v:#}");
    assert!(watch(&v, "probe_high").is_none(), "{v:#}");
    let over = named(&v["active"], "probe_over_80").expect("new alert");
    assert_eq!(over["severity"], "warning", "{over:#}");
    assert_eq!(
        watch(&v, "gpu_temperature").expect("stock rule")["threshold"],
        70.0,
        "{v:#}"
    );
    let (_, ev) = host.get("/admin/monitor/events?source=alerts");
    let texts: Vec<&str> = ev["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.starts_with("alert rules reloaded")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("probe_high resolved")),
        "{texts:?}"
    );
}
