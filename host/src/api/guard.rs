//! Checks made before any route: the monitor hidden (cloud mode, `web` role) with a plain 404, `Host` names limited without tokens (DNS rebinding), and cross-site state changes refused (CSRF).

use std::net::{IpAddr, Ipv6Addr};

use warp::http::{header, HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::auth::{Denied, SESSION_COOKIE};
use super::serve::Peer;
use super::{error_response, ApiState};
use crate::config::{Mode, Role};

/// What the guard needs from the server config.
#[derive(Debug, Clone, Default)]
pub struct GuardConfig {
    /// Refuse `Host` names other than loopback, `localhost` and `allowed_hosts`.
    pub check_hosts: bool,
    /// Names accepted in `Host` besides loopback ones (lower case; with or without a port).
    pub allowed_hosts: Vec<String>,
    /// Peers besides loopback whose `X-Forwarded-Proto` is believed.
    pub trusted_proxies: Vec<IpAddr>,
}

impl GuardConfig {
    /// From the `[server]` table; `check_hosts` holds when the API has no tokens and listens on
    /// loopback, or when `allowed_hosts` names any host.
    pub fn new(server: &crate::config::ServerConfig) -> Self {
        Self {
            check_hosts: !server.allowed_hosts.is_empty()
                || (server.tokens.is_empty() && server.bind.ip().is_loopback()),
            allowed_hosts: server
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            trusted_proxies: server.trusted_proxies.clone(),
        }
    }
}

/// The host part of a `Host` value (no port, no brackets).
fn host_name(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match value.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => value,
    }
}

/// True when `value` (a `Host` header) names this machine's loopback or an allowed host.
pub fn host_allowed(value: &str, allowed: &[String]) -> bool {
    let value = value.trim().to_ascii_lowercase();
    let name = host_name(&value);
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || name
            .parse::<Ipv6Addr>()
            .ok()
            .and_then(|v6| v6.to_ipv4_mapped())
            .is_some_and(|v4| v4.is_loopback());
    loopback || allowed.iter().any(|a| *a == value || a == name)
}

/// True when `origin` (`scheme://host[:port]`) is the page served at `host`.
pub fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    !authority.contains('/') && authority.eq_ignore_ascii_case(host.trim())
}

/// True for the methods that change state.
fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .split_once('=')
                .filter(|(k, _)| *k == SESSION_COOKIE)
                .map(|(_, v)| v.to_owned())
        })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The refusal for a request, if any, before any route runs.
pub fn check(
    state: &ApiState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = text(header::AUTHORIZATION);
    let cookie = cookie_value(headers);
    // Hidden: a plain 404 before anything else, so no method or route is revealed.
    if state.mode == Mode::Cloud
        || matches!(
            state.auth.identify(authorization, cookie.as_deref()),
            Ok(Some(Role::Web)) | Err(Denied::Hidden)
        )
    {
        return Some(error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route".to_owned(),
        ));
    }
    let host = text(header::HOST);
    if state.guard.check_hosts {
        if let Some(h) = host {
            if !host_allowed(h, &state.guard.allowed_hosts) {
                return Some(error_response(
                    StatusCode::FORBIDDEN,
                    "host_not_allowed",
                    "this host name is not served: use a loopback address, localhost, or add the \
                     name to `server.allowed_hosts`"
                        .to_owned(),
                ));
            }
        }
    }
    if !changes_state(method) {
        return None;
    }
    let bearer = authorization.is_some() && state.auth.required();
    let origin = text(header::ORIGIN);
    let cross = |o: &str| !same_origin(o, host);
    if !bearer && origin.is_some_and(cross) {
        return Some(cross_site());
    }
    let by_cookie = !bearer && state.auth.required() && cookie.is_some();
    // Logout only ends the caller's own session and carries no body.
    if by_cookie && path != "/admin/monitor/logout" {
        if origin.is_none() {
            return Some(cross_site());
        }
        if !is_json(headers) {
            return Some(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json".to_owned(),
            ));
        }
    }
    None
}

fn cross_site() -> Response {
    error_response(
        StatusCode::FORBIDDEN,
        "cross_origin",
        "a state-changing request must come from the dashboard's own origin".to_owned(),
    )
}

/// True when the request reached this host over TLS, as a loopback or trusted proxy says.
pub fn over_tls(state: &ApiState, peer: Option<Peer>, headers: &HeaderMap) -> bool {
    let trusted = peer.is_some_and(|Peer(a)| {
        a.ip().is_loopback() || state.guard.trusted_proxies.contains(&a.ip())
    });
    trusted
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The guard as a filter: answers with the refusal, or rejects (not found) to let the routes run.
pub fn filter(state: ApiState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and_then(move |m: Method, p: warp::path::FullPath, h: HeaderMap| {
            let r = check(&state, &m, p.as_str(), &h);
            async move { r.ok_or_else(warp::reject::not_found) }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the host rule: loopback names pass, others only when listed.
    #[test]
    fn hosts() {
        let allowed = vec!["vitals.lan".to_owned()];
        for ok in [
            "127.0.0.1:9777",
            "localhost",
            "LOCALHOST:1",
            "[::1]:9777",
            "127.1.2.3",
            "vitals.lan:9777",
            "app.localhost",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9777",
            "10.0.0.1",
            "[::2]:1",
            "localhost.evil",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    /// Guards the origin rule: scheme and authority must be the page's own.
    #[test]
    fn origins() {
        assert!(same_origin("http://127.0.0.1:9777", Some("127.0.0.1:9777")));
        assert!(same_origin("https://Vitals.lan", Some("vitals.lan")));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:9777")));
        assert!(!same_origin("null", Some("127.0.0.1:9777")));
        assert!(!same_origin("http://127.0.0.1:9777", None));
    }
}
