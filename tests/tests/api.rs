//! End to end: every admin API route, event streams, request metrics, errors, roles and modes, bad input.

use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_e2e::{
    hash_token, plugin_lib, request, rss_bytes, run_vitals, toml_path, Host, SseReader,
};

/// A fast config: memory at 200 ms, and the fault plugin posing as `gpu` so the GPU routes
/// have a section and history without a GPU.
fn fast_config(extra: &str) -> String {
    format!(
        "[collectors.memory]\ninterval = \"200ms\"\n\n[collectors.gpu]\nlibrary = {}\ninterval = \"200ms\"\n\n{extra}",
        toml_path(&plugin_lib("fault"))
    )
}

fn tokens_config() -> String {
    format!(
        "[[server.tokens]]\nname = \"ops\"\nrole = \"admin\"\nhash = \"{}\"\n\n[[server.tokens]]\nname = \"dash\"\nrole = \"viewer\"\nhash = \"{}\"\n\n[[server.tokens]]\nname = \"site\"\nrole = \"web\"\nhash = \"{}\"\n",
        hash_token("admin-token"),
        hash_token("viewer-token"),
        hash_token("web-token")
    )
}

/// Guards the read routes: snapshot, health, history, GPU view, errors, OpenAPI.
#[test]
fn read_routes_answer_with_their_documents() {
    let host = Host::start(&fast_config(""));
    host.wait_for("a few memory collects", Duration::from_secs(20), |s| {
        s["collectors"]["memory"]["collects_total"]
            .as_u64()
            .unwrap_or(0)
            >= 3
            && s["collectors"]["gpu"]["collects_total"]
                .as_u64()
                .unwrap_or(0)
                >= 3
    });
    let health = host.get_ok("/admin/monitor/health");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["components"]["http"]["state"], "ok");
    assert!(
        health["components"]["history"]["details"]["points"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );

    let history = host.get_ok("/admin/monitor/history?collector=memory");
    let series = history["memory"].as_array().expect("memory series");
    let used = series
        .iter()
        .find(|s| s["name"] == "used_percent")
        .expect("used_percent");
    assert!(used["points"].as_array().map_or(0, Vec::len) >= 3, "{used}");
    assert!(history.get("gpu").is_none(), "filtered to one collector");

    let gpu = host.get_ok("/admin/monitor/gpu");
    assert_eq!(gpu["collector"], "gpu");
    assert!(gpu["section"]["count"].as_u64().unwrap_or(0) >= 3, "{gpu}");
    assert_eq!(gpu["status"]["state"], "ok");
    assert_eq!(gpu["history"][0]["name"], "count");

    let openapi = host.get_ok("/admin/monitor/openapi.json");
    assert_eq!(openapi["openapi"], "3.0.3");

    host.get("/admin/monitor/nope");
    let errors = host.get_ok("/admin/monitor/errors?limit=1");
    let list = errors["errors"].as_array().expect("errors");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["source"], "request");
    assert!(list[0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("/admin/monitor/nope: 404"));
    assert_eq!(host.get("/admin/monitor/errors?limit=lots").0, 400);
}

/// Guards that `/admin/monitor/gpu` says clearly when no GPU collector is configured.
#[test]
fn gpu_routes_are_404_without_a_gpu_collector() {
    let host = Host::start("[collectors.memory]\n");
    let (status, body) = host.get("/admin/monitor/gpu");
    assert_eq!(status, 404);
    assert!(
        body["message"].as_str().unwrap_or_default().contains("gpu"),
        "{body}"
    );
    let s = SseReader::open(&host.base, "/admin/monitor/gpu/stream", &[]);
    assert_eq!(s.status, 404);
}

/// Guards the request metrics: counted per route with status classes and latency; reset clears.
#[test]
fn request_metrics_count_and_reset() {
    let host = Host::start(&fast_config(""));
    for _ in 0..5 {
        host.get_ok("/admin/monitor/system");
    }
    host.get("/admin/monitor/missing");
    let m = host.get_ok("/admin/monitor/metrics");
    let sys = &m["requests"]["routes"]["GET /admin/monitor/system"];
    assert_eq!(sys["count"], 5, "{m:#}");
    assert_eq!(sys["status_classes"]["2xx"], 5);
    assert!(sys["bytes_sent"].as_u64().unwrap_or(0) > 100);
    assert!(sys["latency_ms"]["p99"].as_f64().unwrap_or(-1.0) >= 0.0);
    assert_eq!(
        m["requests"]["routes"]["unmatched"]["status_classes"]["4xx"],
        1
    );
    assert!(m["collectors"]["memory"]["collects_total"].is_u64());

    let (status, _, body) = request(
        "POST",
        &format!("{}/admin/monitor/metrics/reset", host.base),
        &[],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let m = host.get_ok("/admin/monitor/metrics");
    // Only the reset itself and this read may have been counted since.
    assert!(
        m["requests"]["routes"]
            .get("GET /admin/monitor/system")
            .is_none(),
        "{m:#}"
    );
}

/// Guards bad input: 404, 405, 413, 411, 400 — all small JSON errors, counted and listed.
#[test]
fn bad_input_gets_clear_json_errors() {
    let mut host = Host::start(&fast_config(""));
    let url = |p: &str| format!("{}{p}", host.base);
    let (s, _, b) = request("GET", &url("/admin/monitor/does-not-exist"), &[], None);
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")));
    let (s, _, b) = request("DELETE", &url("/admin/monitor/system"), &[], None);
    assert_eq!(
        (s, b["error"].as_str()),
        (405, Some("method_not_allowed")),
        "{b}"
    );
    let big = format!("{{\"token\": \"{}\"}}", "x".repeat(10_000));
    let (s, _, b) = request("POST", &url("/admin/monitor/login"), &[], Some(&big));
    assert_eq!(
        (s, b["error"].as_str()),
        (413, Some("payload_too_large")),
        "{b}"
    );
    let (s, _, b) = request(
        "POST",
        &url("/admin/monitor/login"),
        &[],
        Some("{\"token\": "),
    );
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or_default()
            .contains("malformed JSON"),
        "{b}"
    );
    let (s, _, b) = request(
        "PUT",
        &url("/admin/monitor/collectors/memory"),
        &[],
        Some("{\"interval_seconds\": 0.001}"),
    );
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or_default()
            .contains("out of range"),
        "{b}"
    );
    let (s, _, b) = request(
        "PUT",
        &url("/admin/monitor/collectors/memory"),
        &[],
        Some("{\"colour\": 1}"),
    );
    assert_eq!(s, 400, "{b}");
    let (s, _, _) = request(
        "PUT",
        &url("/admin/monitor/collectors/nobody"),
        &[],
        Some("{}"),
    );
    assert_eq!(s, 404);
    let (s, _, _) = request(
        "GET",
        &url("/admin/monitor/system/../../etc/passwd"),
        &[],
        None,
    );
    assert_eq!(s, 404);

    let m = host.get_ok("/admin/monitor/metrics");
    let four = m["requests"]["routes"]
        .as_object()
        .expect("routes")
        .values()
        .filter_map(|r| r["status_classes"]["4xx"].as_u64())
        .sum::<u64>();
    assert!(four >= 8, "every refusal is counted: {m:#}");
    let errors = host.get_ok("/admin/monitor/errors?limit=100");
    assert!(errors["errors"].as_array().map_or(0, Vec::len) >= 8);
    assert!(host.is_running(), "the host survived every bad request");
}

/// Guards roles bound to tokens: viewer reads, admin resets, web sees nothing, bad tokens 401.
#[test]
fn roles_and_tokens() {
    let host = Host::start(&fast_config(&tokens_config()));
    let url = |p: &str| format!("{}{p}", host.base);
    let bearer = |t: &str| format!("Bearer {t}");
    let viewer = bearer("viewer-token");
    let admin = bearer("admin-token");
    let web = bearer("web-token");

    let (s, _, b) = request("GET", &url("/admin/monitor/system"), &[], None);
    assert_eq!((s, b["error"].as_str()), (401, Some("unauthorized")));
    let (s, _, _) = request(
        "GET",
        &url("/admin/monitor/system"),
        &[("authorization", "Bearer wrong")],
        None,
    );
    assert_eq!(s, 401);
    let (s, _, _) = request(
        "GET",
        &url("/admin/monitor/system"),
        &[("authorization", &viewer)],
        None,
    );
    assert_eq!(s, 200);
    let (s, _, _) = request("GET", &url("/metrics"), &[("authorization", &viewer)], None);
    assert_eq!(s, 200);
    let (s, _, b) = request(
        "POST",
        &url("/admin/monitor/metrics/reset"),
        &[("authorization", &viewer)],
        None,
    );
    assert_eq!((s, b["error"].as_str()), (403, Some("forbidden")));
    let (s, _, _) = request(
        "POST",
        &url("/admin/monitor/metrics/reset"),
        &[("authorization", &admin)],
        None,
    );
    assert_eq!(s, 200);
    for path in [
        "/admin/monitor/system",
        "/admin/monitor/health",
        "/admin/monitor/",
        "/metrics",
        "/admin/monitor/session",
    ] {
        let (s, _, _) = request("GET", &url(path), &[("authorization", &web)], None);
        assert_eq!(s, 404, "{path} must be hidden from the web role");
    }

    // The dashboard's way: a login sets an HttpOnly cookie that also opens the event stream.
    let (s, _, b) = request("GET", &url("/admin/monitor/session"), &[], None);
    assert_eq!((s, &b["auth_required"]), (200, &Value::Bool(true)));
    let (s, headers, b) = request(
        "POST",
        &url("/admin/monitor/login"),
        &[],
        Some("{\"token\": \"viewer-token\"}"),
    );
    assert_eq!((s, b["role"].as_str()), (200, Some("viewer")), "{b}");
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("cookie pair").to_owned();
    let (s, _, _) = request(
        "GET",
        &url("/admin/monitor/system"),
        &[("cookie", &pair)],
        None,
    );
    assert_eq!(s, 200);
    let stream = SseReader::open(&host.base, "/admin/monitor/stream", &[("cookie", &pair)]);
    assert_eq!(stream.status, 200);
    assert!(stream.next_data(Duration::from_secs(10)).is_some());
    let (s, _, _) = request(
        "POST",
        &url("/admin/monitor/login"),
        &[],
        Some("{\"token\": \"nope\"}"),
    );
    assert_eq!(s, 401);
    let (s, _, _) = request(
        "POST",
        &url("/admin/monitor/logout"),
        &[("cookie", &pair)],
        None,
    );
    assert_eq!(s, 200);
    let (s, _, _) = request(
        "GET",
        &url("/admin/monitor/system"),
        &[("cookie", &pair)],
        None,
    );
    assert_eq!(s, 401, "the session ended at logout");
    assert!(
        !host.log().contains("admin-token"),
        "tokens never reach the log"
    );
}

/// Guards cloud mode: every monitor route, the page and `/metrics` answer 404.
#[test]
fn cloud_mode_hides_everything() {
    let host = Host::start(&fast_config("[server]\nmode = \"cloud\"\n"));
    for path in [
        "/admin/monitor/system",
        "/admin/monitor/",
        "/metrics",
        "/admin/monitor/stream",
        "/admin/monitor/openapi.json",
        "/",
    ] {
        assert_eq!(host.get(path).0, 404, "{path}");
    }
}

/// Guards the refusal to expose an unauthenticated API beyond loopback, and the opt-out.
#[test]
fn remote_bind_needs_tokens_or_an_explicit_opt_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("v.toml");
    std::fs::write(&cfg, "[collectors.memory]\n").expect("write");
    let (ok, _, err) = run_vitals(&[
        "--config",
        cfg.to_str().expect("utf-8"),
        "--bind",
        "0.0.0.0:0",
    ]);
    assert!(!ok);
    assert!(
        err.contains("refusing to serve the admin API on 0.0.0.0:0 without authentication"),
        "{err}"
    );
    let host = Host::start_with(
        "[server]\nallow_unauthenticated_remote = true\n[collectors.memory]\n",
        &["--bind", "0.0.0.0:0"],
    );
    let port = host.base.rsplit(':').next().expect("port");
    let (s, _, _) = request(
        "GET",
        &format!("http://127.0.0.1:{port}/admin/monitor/health"),
        &[],
        None,
    );
    assert_eq!(s, 200);
}

/// Guards the event streams: retry hint, increasing ids at the collector interval, resume.
#[test]
fn event_streams_deliver_updates_and_resume() {
    let host = Host::start(&fast_config(""));
    let s = SseReader::open(&host.base, "/admin/monitor/stream", &[]);
    assert_eq!(s.status, 200);
    assert!(
        s.content_type.starts_with("text/event-stream"),
        "{}",
        s.content_type
    );
    let first = s.next(Duration::from_secs(10)).expect("first event");
    assert_eq!(first.retry, Some(5000));
    let mut ids = Vec::new();
    let start = Instant::now();
    while ids.len() < 5 {
        let ev = s.next_data(Duration::from_secs(10)).expect("an update");
        assert_eq!(ev.event.as_deref(), Some("snapshot"));
        let snap: Value = serde_json::from_str(&ev.data).expect("snapshot JSON");
        assert!(snap["sections"].is_object());
        ids.push(ev.id.expect("id").parse::<u64>().expect("numeric id"));
    }
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "ids grow: {ids:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "updates follow the 200 ms interval"
    );

    let gpu = SseReader::open(&host.base, "/admin/monitor/gpu/stream", &[]);
    let ev = gpu.next_data(Duration::from_secs(10)).expect("gpu event");
    assert_eq!(ev.event.as_deref(), Some("gpu"));
    let view: Value = serde_json::from_str(&ev.data).expect("gpu JSON");
    assert_eq!(view["collector"], "gpu");
    let last = ev.id.expect("id");

    // Resuming with the id just seen sends nothing again for it; the next event is newer.
    let resumed = SseReader::open(
        &host.base,
        "/admin/monitor/gpu/stream",
        &[("last-event-id", &last)],
    );
    let next = resumed
        .next_data(Duration::from_secs(10))
        .expect("next gpu event");
    assert!(
        next.id.expect("id").parse::<u64>().expect("n") > last.parse::<u64>().expect("n"),
        "no repeat after Last-Event-ID"
    );
}

/// Guards the stream cap: past `max_streams` a stream answers 503.
#[test]
fn stream_cap_answers_503() {
    let host = Host::start(&fast_config("[server]\nmax_streams = 2\n"));
    let a = SseReader::open(&host.base, "/admin/monitor/stream", &[]);
    let b = SseReader::open(&host.base, "/admin/monitor/stream", &[]);
    assert_eq!((a.status, b.status), (200, 200));
    let c = SseReader::open(&host.base, "/admin/monitor/stream", &[]);
    assert_eq!(c.status, 503);
    drop(a);
}

/// Guards fan-out: 1,000 stream clients are served while one never reads, and memory stays bounded.
#[test]
fn a_thousand_stream_clients_and_one_that_never_reads() {
    use std::io::{Read, Write};
    let host = Host::start(&fast_config("[server]\nmax_streams = 1100\n"));
    let addr = host.base.trim_start_matches("http://").to_owned();
    let request =
        "GET /admin/monitor/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
    // The client that never reads: it sends its request and then ignores the socket.
    let mut stuck = std::net::TcpStream::connect(&addr).expect("connect");
    stuck.write_all(request.as_bytes()).expect("send");
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_bytes(host.pid());

    let clients = 1000;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (addr, tx) = (addr.clone(), tx.clone());
        let h = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut s = std::net::TcpStream::connect(&addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                s.write_all(request.as_bytes()).expect("send");
                let mut buf = vec![0u8; 64 * 1024];
                let mut events = 0;
                let mut tail: Vec<u8> = Vec::new();
                let marker = b"event:snapshot";
                while events < 3 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            // Keep the last bytes of the previous read so a split marker counts once.
                            let keep = tail.len().min(marker.len() - 1);
                            let mut window = tail[tail.len() - keep..].to_vec();
                            window.extend_from_slice(&buf[..n]);
                            events += window.windows(marker.len()).filter(|w| w == marker).count();
                            tail = window;
                        }
                    }
                }
                let _ = tx.send(events >= 3);
            })
            .expect("thread");
        handles.push(h);
    }
    drop(tx);
    let served = rx.iter().filter(|ok| *ok).count();
    for h in handles {
        let _ = h.join();
    }
    let rss_after = rss_bytes(host.pid());
    assert_eq!(served, clients, "every client got three updates");
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 150 << 20,
        "memory grew by {} MiB with 1,000 streams and a stuck client",
        growth >> 20
    );
    // The stuck client's stream holds the latest state only: the host keeps answering.
    assert_eq!(host.get("/admin/monitor/health").0, 200);
    drop(stuck);
}

/// Guards that every documented path exists and every route is documented.
#[test]
fn openapi_matches_the_routes() {
    let host = Host::start(&fast_config(""));
    let doc = host.get_ok("/admin/monitor/openapi.json");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, ops) in paths {
        for method in ["get", "post", "put"] {
            if ops.get(method).is_none() {
                continue;
            }
            let concrete = path.replace("{name}", "memory");
            if concrete.ends_with("/stream") {
                let s = SseReader::open(&host.base, &concrete, &[]);
                assert_eq!(s.status, 200, "{path}");
                continue;
            }
            let body = (method != "get").then_some("{}");
            let body = if path.ends_with("/login") {
                Some("{\"token\": \"x\"}")
            } else {
                body
            };
            let (status, _, b) = request(
                &method.to_uppercase(),
                &format!("{}{concrete}", host.base),
                &[],
                body,
            );
            assert!(
                status != 404 && status != 405,
                "{method} {path} answered {status}: {b}"
            );
        }
    }
    // The route table is the source: every route it serves is documented, and answers above.
    for route in vitals_host::api::routes::ROUTES {
        if !route.documented {
            continue;
        }
        assert!(
            paths
                .get(route.path)
                .and_then(|p| p.get(route.method.to_lowercase()))
                .is_some(),
            "{} is served but not documented",
            route.label
        );
    }
}

/// Guards the OpenAPI description against the real server with schemathesis: no 5xx, every
/// response as described, auth enforced, bad input refused, 405s with `Allow`.
#[test]
fn schemathesis_finds_no_failures() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let st = root.join("build/venv/bin/schemathesis");
    if !st.exists() {
        vitals_e2e::skip(&format!(
            "{} is missing, so the OpenAPI description is not fuzzed (`make test-deps` installs schemathesis)",
            st.display()
        ));
        return;
    }
    let admin = hash_token("schemathesis-admin-token");
    let host = Host::start(&format!(
        "[[server.tokens]]\nname = \"fuzz\"\nrole = \"admin\"\nhash = \"{admin}\"\n\n{}",
        fast_config("")
    ));
    let out = std::process::Command::new(st)
        .arg("--config-file")
        .arg(root.join("tests/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/admin/monitor/openapi.json", host.base))
        .args(["-H", "Authorization: Bearer schemathesis-admin-token"])
        .args(["--checks", "all", "--exclude-path-regex", "stream"])
        .args([
            "--max-examples",
            "30",
            "--request-timeout",
            "5",
            "--seed",
            "1",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    let mut host = host;
    assert!(host.is_running(), "the host survived the fuzzing");
}
