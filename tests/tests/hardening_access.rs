//! End to end: who may reach the API and how: host names without tokens (DNS rebinding), origins and content types of writes (CSRF), hidden routes, sessions per token.

use vitals_e2e::{client, hash_token, request, Host};

fn tokens() -> String {
    format!(
        "[[server.tokens]]\nname = \"ops\"\nrole = \"admin\"\nhash = \"{}\"\n\n\
         [[server.tokens]]\nname = \"dash\"\nrole = \"viewer\"\nhash = \"{}\"\n\n\
         [[server.tokens]]\nname = \"site\"\nrole = \"web\"\nhash = \"{}\"\n\n",
        hash_token("admin-token"),
        hash_token("viewer-token"),
        hash_token("web-token")
    )
}

const MEMORY: &str = "[collectors.memory]\ninterval = \"500ms\"\n";

fn port(host: &Host) -> String {
    host.base.rsplit(':').next().expect("port").to_owned()
}

/// Logs in with `token`; the cookie pair and the whole Set-Cookie value.
fn login(host: &Host, token: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let (s, h, _) = request(
        "POST",
        &format!("{}/admin/monitor/login", host.base),
        headers,
        Some(&format!("{{\"token\": \"{token}\"}}")),
    );
    let set = h
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let pair = set.split(';').next().unwrap_or("").to_owned();
    (s, pair, set)
}

/// Guards DNS rebinding in the default mode (loopback, no tokens): only loopback names and
/// `server.allowed_hosts` are served, and a write from another origin is refused.
#[test]
fn without_tokens_only_local_names_and_own_origin_are_served() {
    let host = Host::start(&format!(
        "[server]\nallowed_hosts = [\"vitals.lan\"]\n\n{MEMORY}"
    ));
    let p = port(&host);
    let system = format!("{}/admin/monitor/system", host.base);
    for (name, want) in [
        (format!("evil.example:{p}"), 403),
        ("evil.example".to_owned(), 403),
        (format!("10.1.2.3:{p}"), 403),
        (format!("localhost:{p}"), 200),
        (format!("127.0.0.1:{p}"), 200),
        (format!("[::1]:{p}"), 200),
        (format!("vitals.lan:{p}"), 200),
    ] {
        let (s, _, b) = request("GET", &system, &[("host", &name)], None);
        assert_eq!(s, want, "Host: {name}: {b}");
        if want == 403 {
            assert_eq!(b["error"], "host_not_allowed", "{b}");
        }
    }
    let reset = format!("{}/admin/monitor/metrics/reset", host.base);
    let own = host.base.clone();
    let (s, _, b) = request("POST", &reset, &[("origin", "http://evil.example")], None);
    assert_eq!((s, b["error"].as_str()), (403, Some("cross_origin")), "{b}");
    let (s, _, b) = request("POST", &reset, &[("origin", "null")], None);
    assert_eq!(s, 403, "{b}");
    let put = format!("{}/admin/monitor/collectors/memory", host.base);
    let (s, _, b) = request(
        "PUT",
        &put,
        &[("origin", &format!("http://localhost.evil:{p}"))],
        Some("{\"enabled\": false}"),
    );
    assert_eq!(s, 403, "{b}");
    let (s, _, b) = request("POST", &reset, &[("origin", &own)], None);
    assert_eq!(s, 200, "{b}");
    // No Origin: not a browser's cross-site request (curl, scripts).
    let (s, _, b) = request("POST", &reset, &[], None);
    assert_eq!(s, 200, "{b}");
}

/// Guards CSRF with tokens: a cookie-authenticated write needs the page's own Origin and a JSON
/// body; a bearer token needs neither; the cookie is Secure only when a local proxy says https.
#[test]
fn cookie_writes_need_own_origin_and_json() {
    let host = Host::start(&format!("{}{MEMORY}", tokens()));
    let put = format!("{}/admin/monitor/collectors/memory", host.base);
    let own = host.base.clone();
    let (s, cookie, set) = login(&host, "admin-token", &[("origin", &own)]);
    assert_eq!(s, 200);
    assert!(!set.contains("Secure"), "{set}");
    let body = "{\"interval_seconds\": 0.7}";
    let (s, _, b) = request("PUT", &put, &[("cookie", &cookie)], Some(body));
    assert_eq!(
        (s, b["error"].as_str()),
        (403, Some("cross_origin")),
        "no Origin: {b}"
    );
    let (s, _, b) = request(
        "PUT",
        &put,
        &[("cookie", &cookie), ("origin", "http://evil.example")],
        Some(body),
    );
    assert_eq!(s, 403, "another origin: {b}");
    let resp = client()
        .put(&put)
        .header("cookie", &cookie)
        .header("origin", &own)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .expect("PUT");
    assert_eq!(resp.status().as_u16(), 415, "a form-like body");
    let (s, _, b) = request(
        "PUT",
        &put,
        &[("cookie", &cookie), ("origin", &own)],
        Some(body),
    );
    assert_eq!(s, 200, "own origin and JSON: {b}");
    let (s, _, b) = request(
        "PUT",
        &put,
        &[("authorization", "Bearer admin-token")],
        Some(body),
    );
    assert_eq!(s, 200, "a bearer token: {b}");

    let (_, _, set) = login(&host, "viewer-token", &[("x-forwarded-proto", "https")]);
    assert!(
        set.contains("; Secure"),
        "behind a local https proxy: {set}"
    );
}

/// Guards hiding: in cloud mode and for the web role a wrong method gets 404 without `Allow`,
/// while an admin still gets 405 with it.
#[test]
fn hidden_routes_answer_404_before_anything_else() {
    let cloud = Host::start(&format!("[server]\nmode = \"cloud\"\n\n{MEMORY}"));
    for (method, path) in [
        ("POST", "/admin/monitor/system"),
        ("DELETE", "/admin/monitor/collectors/memory"),
        ("PUT", "/admin/monitor/health"),
        ("POST", "/metrics"),
    ] {
        let (s, h, b) = request(method, &format!("{}{path}", cloud.base), &[], None);
        assert_eq!(s, 404, "cloud {method} {path}: {b}");
        assert!(
            h.get("allow").is_none(),
            "cloud {method} {path} reveals Allow"
        );
    }
    drop(cloud);

    let host = Host::start(&format!("{}{MEMORY}", tokens()));
    for (method, path) in [
        ("POST", "/admin/monitor/system"),
        ("DELETE", "/admin/monitor/collectors/memory"),
        ("GET", "/admin/monitor/metrics/reset"),
    ] {
        let url = format!("{}{path}", host.base);
        let (s, h, b) = request(method, &url, &[("authorization", "Bearer web-token")], None);
        assert_eq!(s, 404, "web {method} {path}: {b}");
        assert!(
            h.get("allow").is_none(),
            "web {method} {path} reveals Allow"
        );
        let (s, h, _) = request(
            method,
            &url,
            &[("authorization", "Bearer admin-token")],
            None,
        );
        assert_eq!(s, 405, "admin {method} {path}");
        assert!(h.get("allow").is_some());
    }
}

/// Guards sessions: the web role cannot log in, and one token logging in a thousand times
/// ends only its own oldest sessions, never another token's.
#[test]
fn sessions_are_bounded_per_token() {
    let host = Host::start(&format!("{}{MEMORY}", tokens()));
    let (s, _, set) = login(&host, "web-token", &[]);
    assert_eq!(s, 404, "the web role has no monitor to log in to");
    assert!(set.is_empty());
    let (s, viewer, _) = login(&host, "viewer-token", &[]);
    assert_eq!(s, 200);
    let (_, first_admin, _) = login(&host, "admin-token", &[]);
    for _ in 0..1000 {
        let (s, _, _) = login(&host, "admin-token", &[]);
        assert_eq!(s, 200);
    }
    let system = format!("{}/admin/monitor/system", host.base);
    let (s, _, _) = request("GET", &system, &[("cookie", &viewer)], None);
    assert_eq!(s, 200, "another token's logins ended the viewer's session");
    let (s, _, _) = request("GET", &system, &[("cookie", &first_admin)], None);
    assert_eq!(
        s, 401,
        "the admin's oldest session was dropped past its bound"
    );
}
