//! Third parties end to end: the out-of-tree example plugin built with cargo and served by the real host, and the fleet recipes in `deploy/` checked with promtool, a real Prometheus and systemd-analyze.

#[path = "../compat/out_of_tree.rs"]
mod out_of_tree;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use out_of_tree::{cargo_build, cdylib, plugin_check, repo_root, run};
use serde_json::Value;
use vitals_e2e::docker::{daemon_problem, Containers};
use vitals_e2e::{client, plugin_lib, skip, target_dir, toml_path, tool_or_skip, vitals_bin, Host};

fn read_sysctl(name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .unwrap_or_else(|e| panic!("/proc/sys/{name}: {e}"))
}

/// Builds `examples/plugin-procsys` as its author would, with cargo, in its own workspace.
fn example_plugin() -> PathBuf {
    let manifest = repo_root().join("examples/plugin-procsys/Cargo.toml");
    let took = cargo_build(&manifest);
    println!("example plugin build: {:.1} s", took.as_secs_f64());
    cdylib("vitals-plugin-procsys")
}

/// Guards the third-party path end to end: the example plugin, built out of tree, passes
/// `vitals plugin check`, loads in the host from its config, reports real /proc/sys values,
/// takes its config table, logs through the host, and has its series kept in history.
#[test]
fn the_example_plugin_builds_out_of_tree_and_serves_its_section() {
    let lib = example_plugin();
    let (ok, out) = plugin_check(&lib, &[], &[]);
    assert!(ok, "{out}");
    for line in [
        "plugin:      procsys 0.1.0",
        "ABI:         compatible",
        "unknown key: refused as invalid config",
        "collect:     ok",
        "result:      PASS",
    ] {
        assert!(out.contains(line), "`{line}` missing from:\n{out}");
    }

    // A threshold of 0 makes the plugin warn on its first collect: proof that its `log`
    // records and its config table both reach it through the host.
    let host = Host::start(&format!(
        "[collectors.memory]\ninterval = \"1s\"\n\n[collectors.procsys]\nlibrary = {}\ninterval = \"300ms\"\n\n[collectors.procsys.config]\nwarn_open_files_percent = 0\n",
        toml_path(&lib)
    ));
    let snap = host.wait_for("the procsys section", Duration::from_secs(20), |s| {
        s["sections"]["procsys"].is_object()
    });
    let section = &snap["sections"]["procsys"];
    let status = &snap["collectors"]["procsys"];
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["plugin"]["name"], "procsys", "{status}");
    assert_eq!(status["plugin"]["version"], "0.1.0", "{status}");

    let pool: u64 = read_sysctl("kernel/random/poolsize")
        .trim()
        .parse()
        .expect("poolsize");
    assert_eq!(
        section["entropy_pool_size_bits"].as_u64(),
        Some(pool),
        "{section}"
    );
    let entropy = section["entropy_available_bits"].as_u64().expect("entropy");
    assert!(entropy <= pool, "{section}");
    let file_nr = read_sysctl("fs/file-nr");
    let max: u64 = file_nr
        .split_whitespace()
        .nth(2)
        .and_then(|m| m.parse().ok())
        .expect("fs/file-nr max");
    assert_eq!(section["max_files"].as_u64(), Some(max), "{section}");
    let open = section["open_files"].as_u64().expect("open_files");
    assert!(open > 0 && open <= max, "{section}");
    let percent = section["open_files_percent"].as_f64().expect("percent");
    assert!(
        (percent - open as f64 * 100.0 / max as f64).abs() < 1e-9,
        "{section}"
    );

    let start = Instant::now();
    while !host.log().contains("file handles are open") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the plugin's warning never reached the host's log:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        host.log()
            .lines()
            .any(|l| l.contains("file handles are open") && l.contains("procsys")),
        "the plugin's log line does not name the plugin:\n{}",
        host.log()
    );
    let history = host.get_ok("/admin/monitor/history?collector=procsys");
    let text = history.to_string();
    assert!(
        text.contains("open_files_percent") && text.contains("entropy_available_bits"),
        "{history:#}"
    );
}

/// Guards the example's own tests (fixtures, contract harness), run as its author runs them.
#[test]
fn the_example_plugin_passes_its_own_tests() {
    let manifest = repo_root().join("examples/plugin-procsys/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let (ok, text) = run(Command::new(cargo)
        .args(["test", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(out_of_tree::target())
        .env_remove("CARGO_TARGET_DIR"));
    assert!(ok, "{text}");
    assert!(
        text.contains("honours_the_plugin_contract ... ok"),
        "{text}"
    );
}

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

/// The example Prometheus setup in `dir`: its config with `/etc/prometheus/` pointing there,
/// the alert rules beside it, a token file, an empty file-discovery folder, and the static
/// targets replaced by `targets` (when given).
fn prometheus_setup(dir: &Path, targets: Option<&str>, token: &str) -> PathBuf {
    let etc = format!("{}/", dir.display());
    let mut config = std::fs::read_to_string(deploy("prometheus/prometheus.yml"))
        .expect("deploy/prometheus/prometheus.yml")
        .replace("/etc/prometheus/", &etc);
    if let Some(t) = targets {
        let start = config.find("    static_configs:").expect("static_configs");
        let end = config[start..]
            .find("    relabel_configs:")
            .map(|i| start + i)
            .expect("relabel_configs after static_configs");
        config.replace_range(
            start..end,
            &format!("    static_configs:\n      - targets: [\"{t}\"]\n"),
        );
        config = config
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace("scrape_timeout: 5s", "scrape_timeout: 1s");
    }
    std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
    std::fs::copy(
        deploy("prometheus/vitals-alerts.yml"),
        dir.join("vitals-alerts.yml"),
    )
    .expect("copy rules");
    std::fs::write(dir.join("vitals.token"), token).expect("write token");
    std::fs::create_dir_all(dir.join("vitals.d")).expect("vitals.d");
    dir.join("prometheus.yml")
}

/// Guards `deploy/prometheus/prometheus.yml`: `promtool check config` passes on it (with its
/// rule file and token file in place), so an operator can copy it as is.
#[test]
fn the_example_prometheus_config_is_valid() {
    if !tool_or_skip("promtool", "the example Prometheus config") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = prometheus_setup(dir.path(), None, "example-token\n");
    let (ok, out) = run(Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&config));
    assert!(ok, "promtool check config failed:\n{out}");
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
}

/// Guards the alert rules: `promtool check rules` passes and their unit tests
/// (`deploy/prometheus/vitals-alerts.test.yml`) hold.
#[test]
fn the_alert_rules_are_valid_and_their_unit_tests_pass() {
    if !tool_or_skip("promtool", "the alert rules") {
        return;
    }
    let (ok, out) = run(Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/vitals-alerts.yml")));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("promtool")
        .args(["test", "rules", "vitals-alerts.test.yml"])
        .current_dir(deploy("prometheus")));
    assert!(ok, "promtool test rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Guards the systemd unit: `systemd-analyze verify` accepts it without a warning, and its
/// hardening keeps `systemd-analyze security` at an exposure of 3.0 ("OK") or better.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    if !tool_or_skip("systemd-analyze", "the systemd unit") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("vitals.service");
    let text = std::fs::read_to_string(deploy("systemd/vitals.service")).expect("unit");
    assert!(text.contains("ExecStart=/usr/bin/vitals "), "{text}");
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let bin = vitals_bin();
    std::fs::write(
        &unit,
        text.replace("/usr/bin/vitals", &bin.display().to_string()),
    )
    .expect("write unit");
    // The man page it names is installed by the package (tests/tests/package.rs verifies it there).
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit));
    assert!(ok, "systemd-analyze verify failed:\n{out}");
    assert!(
        !out.contains("vitals.service"),
        "systemd-analyze verify warned about the unit:\n{out}"
    );
    for needed in [
        "User=vitals",
        "Restart=always",
        "StateDirectory=vitals",
        "ProtectSystem=strict",
    ] {
        assert!(text.contains(needed), "{needed} missing from the unit");
    }
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=30"])
        .arg(&unit));
    let score = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("no exposure line")
        .to_owned();
    println!("systemd-analyze security: {score}");
    assert!(ok, "exposure above 3.0:\n{out}");
}

/// A child process killed when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a container from the local test image, so the Docker panels have a series; without
/// a daemon, the Docker panels' queries are skipped loudly (a failure under CI).
fn start_container() -> Option<Containers> {
    if let Some(why) = daemon_problem() {
        skip(&format!(
            "the Docker panels' queries are left out: {why} (`make test-deps` starts Docker)"
        ));
        return None;
    }
    let containers = Containers::new("fleet-panels");
    containers.run("panel", &[], &["sleep", "600"]);
    Some(containers)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `viewer` token and its `sha256:` hash, from `vitals hash-token`.
fn viewer_token() -> (String, String) {
    let token = "fleet-test-token-0123456789abcdef".to_owned();
    let mut child = Command::new(vitals_bin())
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("vitals hash-token");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{token}\n").as_bytes())
        .expect("write token");
    let out = child.wait_with_output().expect("hash-token output");
    assert!(out.status.success(), "vitals hash-token failed");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(hash.starts_with("sha256:"), "{hash}");
    (token, hash)
}

/// Every PromQL expression of the Grafana dashboard, with `$instance` matching every host.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/vitals-dashboard.json"))
        .expect("deploy/grafana/vitals-dashboard.json");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let mut queries = Vec::new();
    let panels = dash["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                expr.replace("$instance", ".*"),
            ));
        }
    }
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["query"]["query"].as_str() {
            // `label_values(metric, label)` asks for that metric's series.
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.split(',').next())
                .expect("label_values query");
            queries.push((format!("variable {}", var["name"]), inner.to_owned()));
        }
    }
    queries
}

/// Every metric name (`vitals_…`) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("vitals_"))
        .map(str::to_owned)
        .collect()
}

/// The rule expressions of `vitals-alerts.yml`, by alert name.
fn alert_exprs() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(deploy("prometheus/vitals-alerts.yml")).expect("rules");
    let mut out = BTreeMap::new();
    let mut alert = None;
    for line in text.lines().map(str::trim) {
        if let Some(a) = line.strip_prefix("- alert: ") {
            alert = Some(a.to_owned());
        } else if let (Some(e), Some(a)) = (line.strip_prefix("expr: "), alert.take()) {
            out.insert(a, e.to_owned());
        }
    }
    assert_eq!(out.len(), 6, "every alert has an expr: {out:?}");
    out
}

fn prom_query(base: &str, expr: &str) -> Value {
    let resp = client()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .unwrap_or_else(|e| panic!("query {expr}: {e}"));
    let body: Value = resp.json().unwrap_or(Value::Null);
    assert_eq!(body["status"], "success", "query {expr}: {body}");
    body
}

/// Guards the fleet recipe with real parts: a real Prometheus with the example config and
/// alert rules scrapes a real host (all collectors, the fake NVML GPUs, a running container)
/// through a viewer token; every Grafana panel query and every metric the alerts use then
/// returns data, and the rules evaluate without error.
#[test]
fn prometheus_scrapes_the_host_and_every_dashboard_query_has_data() {
    if !tool_or_skip("prometheus", "a real scrape with the example config") {
        return;
    }
    let container = start_container();
    let (token, hash) = viewer_token();
    let nvml = target_dir().join("libnvidia_ml.so");
    assert!(
        nvml.exists(),
        "{} is missing: cargo build --workspace",
        nvml.display()
    );
    let mut config = format!(
        "[[server.tokens]]\nname = \"prometheus\"\nrole = \"viewer\"\nhash = \"{hash}\"\n\n"
    );
    for name in [
        "cpu", "memory", "system", "disk", "network", "process", "docker",
    ] {
        config.push_str(&format!(
            "[collectors.{name}]\nlibrary = {}\ninterval = \"1s\"\n\n",
            toml_path(&plugin_lib(name))
        ));
    }
    config.push_str(&format!(
        "[collectors.gpu]\nlibrary = {}\ninterval = \"1s\"\nconfig = {{ source = \"nvml\", nvml_library = {} }}\n",
        toml_path(&plugin_lib("gpu")),
        toml_path(&nvml)
    ));
    let host = Host::start(&config);
    let target = host.base.trim_start_matches("http://").to_owned();

    let dir = tempfile::tempdir().expect("tempdir");
    let prom_config = prometheus_setup(dir.path(), Some(&target), &token);
    let port = free_port();
    let prom_base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
    let _prometheus = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let prom_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    let wanted: Vec<(String, String)> = dashboard_queries()
        .into_iter()
        .filter(|(_, q)| container.is_some() || !q.contains("vitals_docker_container_"))
        .collect();
    let started = Instant::now();
    let missing = loop {
        let ready = client()
            .get(format!("{prom_base}/-/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success());
        let missing: Vec<&(String, String)> = if ready {
            wanted
                .iter()
                .filter(|(_, q)| {
                    prom_query(&prom_base, q)["data"]["result"]
                        .as_array()
                        .is_none_or(Vec::is_empty)
                })
                .collect()
        } else {
            wanted.iter().collect()
        };
        if missing.is_empty() || started.elapsed() > Duration::from_secs(60) {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let metrics = client()
        .get(format!("{}/metrics", host.base))
        .bearer_auth(&token)
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    assert!(
        missing.is_empty(),
        "dashboard queries without data after 60 s: {missing:#?}\nthe host's /metrics:\n{metrics}\nprometheus log:\n{}",
        prom_log()
    );

    let targets = prom_query(&prom_base, "up{job=\"vitals\"}");
    assert_eq!(targets["data"]["result"][0]["value"][1], "1", "{targets}");

    // The alerts' metrics exist (their conditions need not hold), and the rules evaluate.
    let served: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    for (alert, expr) in alert_exprs() {
        for name in metric_names(&expr) {
            assert!(
                served.contains(&name),
                "{alert} uses {name}, which the host does not serve"
            );
        }
    }
    // Rules start as "unknown" and turn "ok" (or "err") on their first evaluation.
    let started = Instant::now();
    loop {
        let rules: Value = client()
            .get(format!("{prom_base}/api/v1/rules"))
            .send()
            .and_then(|r| r.json())
            .expect("rules");
        let loaded: Vec<Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(loaded.len(), 6, "every alert rule is loaded: {rules}");
        let failing: Vec<&Value> = loaded.iter().filter(|r| r["health"] != "ok").collect();
        if failing.is_empty() {
            break;
        }
        assert!(
            failing.iter().all(|r| r["health"] == "unknown")
                && started.elapsed() < Duration::from_secs(20),
            "rules not healthy: {failing:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
