//! The admin HTTP API under `/admin/monitor`, served by warp from the snapshot store.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::config::Mode;
use crate::store::{State, Store};

/// What the routes share.
#[derive(Clone)]
pub struct ApiState {
    /// The snapshot store.
    pub store: Arc<Store>,
    /// `cloud` hides every monitor route.
    pub mode: Mode,
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    warp::http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body.into())
        .unwrap_or_default()
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(v) => json_bytes(status, Bytes::from(v)),
        Err(_) => json_bytes(StatusCode::INTERNAL_SERVER_ERROR, Bytes::from_static(b"{}")),
    }
}

/// The body of every error response.
#[derive(Debug, Serialize)]
pub struct ApiError {
    /// The HTTP status code.
    pub status: u16,
    /// A short name of the error.
    pub error: &'static str,
    /// What is wrong.
    pub message: String,
}

fn error_response(status: StatusCode, error: &'static str, message: String) -> Response {
    json(
        status,
        &ApiError {
            status: status.as_u16(),
            error,
            message,
        },
    )
}

/// The health document.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok` or `failed`.
    pub status: &'static str,
    /// Why the status is `failed`.
    pub problems: Vec<String>,
    /// Each component: `http`, `history`, and `collector:NAME`.
    pub components: BTreeMap<String, ComponentHealth>,
}

/// The health of one component.
#[derive(Debug, Serialize)]
pub struct ComponentHealth {
    /// `ok`, `pending`, `unavailable`, `failed` or `disabled`.
    pub state: State,
    /// True when data is kept from before a failure.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// Why it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Extra figures (history size, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<&'static str, serde_json::Value>,
}

/// Builds the health document from the store.
pub fn health(store: &Store) -> Health {
    let mut components = BTreeMap::new();
    let mut problems = Vec::new();
    components.insert(
        "http".to_owned(),
        ComponentHealth {
            state: State::Ok,
            stale: false,
            reason: None,
            details: BTreeMap::new(),
        },
    );
    let (series, points) = store.history_size();
    components.insert(
        "history".to_owned(),
        ComponentHealth {
            state: State::Ok,
            stale: false,
            reason: None,
            details: BTreeMap::from([("series", series.into()), ("points", points.into())]),
        },
    );
    for (name, s) in store.statuses() {
        if s.state == State::Failed {
            problems.push(format!(
                "collector `{name}` failed: {}",
                s.reason.as_deref().unwrap_or("unknown error")
            ));
        }
        components.insert(
            format!("collector:{name}"),
            ComponentHealth {
                state: s.state,
                stale: s.stale,
                reason: s.reason,
                details: BTreeMap::new(),
            },
        );
    }
    Health {
        status: if problems.is_empty() { "ok" } else { "failed" },
        problems,
        components,
    }
}

/// Every route of the admin API.
pub fn routes(state: ApiState) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let visible = {
        let mode = state.mode;
        warp::any()
            .and_then(move || async move {
                if mode == Mode::Cloud {
                    Err(warp::reject::not_found())
                } else {
                    Ok(())
                }
            })
            .untuple_one()
    };
    let with_state = {
        let s = state.clone();
        warp::any().map(move || s.clone())
    };
    let base = warp::path!("admin" / "monitor" / ..).and(visible);

    let system = base
        .and(warp::path!("system"))
        .and(warp::get())
        .and(with_state.clone())
        .map(|s: ApiState| json_bytes(StatusCode::OK, s.store.snapshot_json()));

    let health_route = base
        .and(warp::path!("health"))
        .and(warp::get())
        .and(with_state.clone())
        .map(|s: ApiState| {
            let h = health(&s.store);
            let code = if h.status == "ok" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(code, &h)
        });

    let history = base
        .and(warp::path!("history"))
        .and(warp::get())
        .and(warp::query::<BTreeMap<String, String>>())
        .and(with_state.clone())
        .map(|q: BTreeMap<String, String>, s: ApiState| {
            let collector = q.get("collector").map(String::as_str);
            json(StatusCode::OK, &s.store.history(collector))
        });

    let dashboard = base.and(crate::web::routes());

    system
        .or(health_route)
        .or(history)
        .or(dashboard)
        .recover(handle_rejection)
}

async fn handle_rejection(r: Rejection) -> Result<Response, Infallible> {
    Ok(if r.is_not_found() {
        error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route".to_owned(),
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method".to_owned(),
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        error_response(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    } else {
        error_response(StatusCode::BAD_REQUEST, "bad_request", format!("{r:?}"))
    })
}
