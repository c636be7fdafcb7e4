//! Fleet scraping: `/metrics` passes `promtool check metrics`, and a real Prometheus scrapes it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vitals_e2e::{assert_promtool_accepts, client, tool_or_skip, Host};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Guards the exposition format: promtool's checks (syntax and lint) pass on the live output.
#[test]
fn metrics_pass_promtool_check() {
    if !tool_or_skip("promtool", "the exposition format with promtool") {
        return;
    }
    let host = Host::start(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/vitals.toml"
        ))
        .expect("config"),
    );
    host.wait_for("memory and cpu", Duration::from_secs(20), |s| {
        s["collectors"]["memory"]["state"] == "ok" && s["collectors"]["cpu"]["state"] == "ok"
    });
    let text = client()
        .get(format!("{}/metrics", host.base))
        .send()
        .and_then(|r| r.text())
        .expect("GET /metrics");
    for name in [
        "vitals_collector_up{collector=\"memory\"} 1",
        "vitals_memory_total_bytes ",
        "vitals_cpu_usage_ratio ",
        "vitals_cpu_core_usage_ratio{core=\"0\"}",
        "vitals_http_requests_total",
    ] {
        assert!(text.contains(name), "missing `{name}` in:\n{text}");
    }
    assert_promtool_accepts(&text);
}

/// Guards the fleet path: a real Prometheus scrapes vitals (with a viewer token) and a query
/// through its HTTP API returns the host's value.
#[test]
fn a_real_prometheus_scrapes_and_queries_vitals() {
    if !tool_or_skip("prometheus", "a real Prometheus scrape") {
        return;
    }
    let token = "scraper-token-for-the-test";
    let hash = {
        let out = Command::new(vitals_e2e::vitals_bin())
            .arg("hash-token")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(format!("{token}\n").as_bytes())?;
                c.wait_with_output()
            })
            .expect("hash-token");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let host = Host::start(&format!(
        "[[server.tokens]]\nname = \"prometheus\"\nrole = \"viewer\"\nhash = \"{hash}\"\n\n[collectors.memory]\ninterval = \"1s\"\n"
    ));
    let target = host.base.trim_start_matches("http://").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: vitals\n    authorization:\n      credentials: {token}\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let port = free_port();
    let prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let start = Instant::now();
    let expected = loop {
        let snap = host.get_with_token("/admin/monitor/system", token);
        if let Some(v) = snap["sections"]["memory"]["total_bytes"].as_f64() {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no memory section: {snap}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let query = format!("http://127.0.0.1:{port}/api/v1/query?query=vitals_memory_total_bytes");
    let start = Instant::now();
    let value = loop {
        let answer = client()
            .get(&query)
            .send()
            .and_then(|r| r.json::<serde_json::Value>());
        if let Ok(ref v) = answer {
            if let Some(s) = v["data"]["result"][0]["value"][1].as_str() {
                break s.parse::<f64>().expect("a number");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus did not return vitals_memory_total_bytes within 60 s (last answer: {answer:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(value, expected, "Prometheus holds the host's value");
    let up = client()
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/query?query=up{{job=\"vitals\"}}"
        ))
        .send()
        .and_then(|r| r.json::<serde_json::Value>())
        .expect("query up");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    drop(prom);
}

/// The label values `/metrics` gives the elements of `metric` under label `label`.
fn label_values(text: &str, metric: &str, label: &str) -> std::collections::BTreeSet<String> {
    let prefix = format!("{metric}{{{label}=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Guards array labels in `/metrics` (a third-party exec collector whose series are labelled
/// by `title`, a field no built-in id list knows): each element carries its title, as in the
/// history, and an element inserted in front between two scrapes moves no other label.
#[test]
fn array_labels_follow_the_series_label_field_across_an_insert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let section = dir.path().join("section.json");
    let write = |body: &str| {
        let tmp = dir.path().join("section.json.new");
        std::fs::write(&tmp, body).expect("write section");
        std::fs::rename(&tmp, &section).expect("replace section");
    };
    write(r#"{"lanes": [{"title": "alpha", "waiting": 3}]}"#);
    let host = Host::start(&format!(
        "[collectors.shop]\ncommand = [\"/bin/cat\", {}]\ninterval = \"200ms\"\nseries = [{{ name = \"waiting\", pointer = \"/lanes/*/waiting\", unit = \"count\", label = \"title\" }}]\n",
        vitals_e2e::toml_path(&section)
    ));
    host.wait_for("the shop section", Duration::from_secs(20), |s| {
        s["collectors"]["shop"]["state"] == "ok"
    });
    let metric = "vitals_shop_lane_waiting";
    let first = host.metrics();
    assert!(
        first.contains(&format!("{metric}{{lane=\"alpha\"}} 3")),
        "{first}"
    );

    write(r#"{"lanes": [{"title": "beta", "waiting": 7}, {"title": "alpha", "waiting": 3}]}"#);
    let until = Instant::now() + Duration::from_secs(20);
    let mut text = host.metrics();
    while !text.contains(&format!("{metric}{{lane=\"beta\"}} 7")) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        text = host.metrics();
    }
    for line in [
        format!("{metric}{{lane=\"beta\"}} 7"),
        format!("{metric}{{lane=\"alpha\"}} 3"),
    ] {
        assert!(text.contains(&line), "missing `{line}` in:\n{text}");
    }
    let in_metrics = label_values(&text, metric, "lane");
    assert_eq!(
        in_metrics,
        ["alpha", "beta"].map(str::to_owned).into(),
        "{text}"
    );
    // The history names the same items the same way.
    host.wait_for("both lanes in history", Duration::from_secs(20), |_| {
        let h = host.get_ok("/admin/monitor/history?collector=shop");
        h["shop"].as_array().is_some_and(|a| a.len() == 2)
    });
    let history = host.get_ok("/admin/monitor/history?collector=shop");
    let in_history: std::collections::BTreeSet<String> = history["shop"]
        .as_array()
        .expect("shop history")
        .iter()
        .filter_map(|s| s["label"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(in_history, in_metrics, "{history}");
}
