//! The admin HTTP API under `/admin/monitor` (plus `/metrics`), served by warp from the snapshot store.

pub mod alerts;
pub mod auth;
pub mod collectors;
pub mod exposition;
pub mod guard;
pub mod health;
mod monitor;
pub mod range;
pub mod request_metrics;
pub mod routes;
pub mod serve;
mod session;
pub mod sse;

pub use health::{health, ComponentHealth, Health, HealthStatus};

use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::config::{Mode, Role};
use crate::control::Control;
use crate::store::Store;
use auth::{Auth, Denied, SESSION_COOKIE};
use request_metrics::RequestMetrics;

/// The OpenAPI 3 description of every route.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The largest `limit` of `/admin/monitor/errors`.
pub const MAX_ERRORS_LIMIT: usize = 10_000;

/// The largest request body any route accepts.
pub const MAX_BODY_BYTES: u64 = 4096;

/// What the routes share.
#[derive(Clone)]
pub struct ApiState {
    /// The snapshot store.
    pub store: Arc<Store>,
    /// Tokens, roles and sessions.
    pub auth: Arc<Auth>,
    /// The API's own request counters.
    pub metrics: Arc<RequestMetrics>,
    /// Event streams open now.
    pub streams_open: Arc<AtomicUsize>,
    /// The most event streams open at once.
    pub max_streams: usize,
    /// How often an idle stream gets a keep-alive comment.
    pub keep_alive: Duration,
    /// Turns true when the host shuts down; streams end then.
    pub shutdown: watch::Receiver<bool>,
    /// `cloud` hides every monitor route.
    pub mode: Mode,
    /// Runtime control of the collectors.
    pub control: Arc<Control>,
    /// Host-name, origin and proxy rules checked before any route.
    pub guard: Arc<guard::GuardConfig>,
    /// The alerts the evaluator keeps.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// The Prometheus exposition of the store's current version.
    pub exposition: Arc<exposition::Cache>,
}

impl ApiState {
    /// State for `store` with the server settings of `server`.
    pub fn new(
        store: Arc<Store>,
        server: &crate::config::ServerConfig,
        shutdown: watch::Receiver<bool>,
        control: Arc<Control>,
    ) -> Self {
        Self {
            store,
            auth: Arc::new(Auth::new(server.mode, &server.tokens)),
            metrics: Arc::new(RequestMetrics::default()),
            streams_open: Arc::new(AtomicUsize::new(0)),
            max_streams: server.max_streams,
            keep_alive: server.keep_alive,
            shutdown,
            mode: server.mode,
            control,
            guard: Arc::new(guard::GuardConfig::new(server)),
            alerts: crate::alerts::Alerts::empty(),
            exposition: Arc::default(),
        }
    }
}

/// A refusal with its status, carried through warp's rejections.
#[derive(Debug)]
pub struct ApiReject {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl warp::reject::Reject for ApiReject {}

/// A rejection that answers `status` with a JSON error.
pub fn reject(status: StatusCode, error: &'static str, message: impl Into<String>) -> Rejection {
    warp::reject::custom(ApiReject {
        status,
        error,
        message: message.into(),
    })
}

fn deny(d: Denied) -> Rejection {
    match d {
        Denied::Hidden => warp::reject::not_found(),
        Denied::Unauthorized(m) => reject(StatusCode::UNAUTHORIZED, "unauthorized", m),
        Denied::Forbidden(role) => reject(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {role:?} role may not use this route; it needs an admin token")
                .to_lowercase(),
        ),
    }
}

/// A JSON response from pre-serialised bytes.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    warp::http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body.into())
        .unwrap_or_default()
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
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

/// The caller's credentials: the `Authorization` header and the session cookie, if any.
fn credentials(
) -> impl Filter<Extract = (Option<String>, Option<String>), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::cookie::optional::<String>(SESSION_COOKIE))
}

/// The caller's role for a route that needs `need`.
fn access(
    state: &ApiState,
    need: Role,
) -> impl Filter<Extract = (Role,), Error = Rejection> + Clone {
    let auth = state.auth.clone();
    credentials().and_then(move |authz: Option<String>, cookie: Option<String>| {
        let auth = auth.clone();
        async move {
            auth.authorize(authz.as_deref(), cookie.as_deref(), need)
                .map_err(deny)
        }
    })
}

/// Passes unless the monitor is hidden from the caller (cloud mode, `web` role); no token needed.
fn visible(state: &ApiState) -> impl Filter<Extract = (Option<Role>,), Error = Rejection> + Clone {
    let auth = state.auth.clone();
    credentials().and_then(move |authz: Option<String>, cookie: Option<String>| {
        let auth = auth.clone();
        async move {
            match auth.identify(authz.as_deref(), cookie.as_deref()) {
                Err(Denied::Hidden) | Ok(Some(Role::Web)) => Err(warp::reject::not_found()),
                Err(_) => Ok(None),
                Ok(role) => Ok(role),
            }
        }
    })
}

fn with<T: Clone + Send>(v: T) -> impl Filter<Extract = (T,), Error = Infallible> + Clone {
    warp::any().map(move || v.clone())
}

fn last_event_id() -> impl Filter<Extract = (Option<u64>,), Error = Infallible> + Clone {
    warp::header::optional::<String>("last-event-id")
        .or(warp::any().map(|| None))
        .unify()
        .map(|h: Option<String>| h.and_then(|v| v.trim().parse().ok()))
}

fn event_stream(state: &ApiState, topic: sse::Topic, last_id: Option<u64>) -> Response {
    if let sse::Topic::Collector(name) = &topic {
        if state.store.collector_version(name).is_none() {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no collector named `{name}` is configured"),
            );
        }
    }
    let Some(slot) = sse::StreamSlot::acquire(&state.streams_open, state.max_streams) else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "{} event streams are open, the most this host serves",
                state.max_streams
            ),
        );
    };
    let stream = sse::stream(
        state.store.clone(),
        topic,
        state.shutdown.clone(),
        last_id,
        slot,
    );
    let mut resp = warp::sse::reply(
        warp::sse::keep_alive()
            .interval(state.keep_alive)
            .stream(stream),
    )
    .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// A route as a boxed filter: keeps warp's filter types (and compile times) small.
type Boxed = warp::filters::BoxedFilter<(Response,)>;

fn boxed<F, R>(f: F) -> Boxed
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply + 'static,
{
    f.map(Reply::into_response).boxed()
}

/// The path prefix of the monitor.
fn base() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path("admin").and(warp::path("monitor"))
}

/// Every route of the admin API, with request metrics and JSON errors.
pub fn routes(state: ApiState) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let viewer = access(&state, Role::Viewer);
    let admin = access(&state, Role::Admin);
    let st = with(state.clone());
    let mut table = monitor::routes(viewer.clone(), admin.clone(), st.clone());
    table.extend(session::routes(&state, st.clone()));
    table.push(boxed(alerts::route(base(), viewer.clone(), st.clone())));
    table.push(boxed(collectors::routes(base(), viewer, admin, st)));
    table.push(boxed(
        warp::path::end()
            .and(warp::get())
            .and(visible(&state))
            .map(|_| {
                warp::http::Response::builder()
                    .status(StatusCode::SEE_OTHER)
                    .header(header::LOCATION, "/admin/monitor/")
                    .body(warp::reply::Response::default().into_body())
                    .unwrap_or_default()
            }),
    ));
    table.push(boxed(
        base()
            .and(visible(&state))
            .and(crate::web::routes())
            .map(|_, r| r),
    ));
    let all = table
        .into_iter()
        .reduce(|a, b| a.or(b).unify().boxed())
        .unwrap_or_else(|| {
            warp::any()
                .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
                .boxed()
        })
        .recover(handle_rejection)
        .unify();
    let all = guard::filter(state.clone()).or(all).unify();

    let metrics = state.metrics.clone();
    let store = state.store.clone();
    warp::any()
        .map(Instant::now)
        .and(warp::method())
        .and(warp::path::full())
        .and(all)
        .map(
            move |start: Instant,
                  method: warp::http::Method,
                  path: warp::path::FullPath,
                  mut resp: Response| {
                let status = resp.status().as_u16();
                if status == 405 {
                    let allow = routes::allowed_methods(path.as_str()).join(", ");
                    if let Ok(v) = header::HeaderValue::from_str(&allow) {
                        resp.headers_mut().insert(header::ALLOW, v);
                    }
                }
                let bytes = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
                let route = request_metrics::route_label(method.as_str(), path.as_str());
                metrics.record(route, status, bytes, start.elapsed());
                if status >= 400 {
                    let shown: String = path.as_str().chars().take(200).collect();
                    store.push_error("request", &format!("{method} {shown}: {status}"));
                }
                resp
            },
        )
}

async fn handle_rejection(r: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    // A combined rejection lists every route's refusal; the most specific one wins: a route
    // that matched path and method (auth, body, query) over a method mismatch over not-found.
    Ok(if let Some(e) = r.find::<ApiReject>() {
        error_response(e.status, e.error, e.message.clone())
    } else if r.find::<reject::PayloadTooLarge>().is_some() {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
    } else if r.find::<reject::LengthRequired>().is_some() {
        error_response(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send a Content-Length header with the body".to_owned(),
        )
    } else if r.find::<reject::UnsupportedMediaType>().is_some() {
        error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json".to_owned(),
        )
    } else if let Some(e) = r.find::<warp::filters::body::BodyDeserializeError>() {
        error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("malformed JSON body: {e}"),
        )
    } else if let Some(e) = r.find::<reject::InvalidQuery>() {
        error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{e}: the route's parameters are in /admin/monitor/openapi.json"),
        )
    } else if let Some(e) = r.find::<reject::InvalidHeader>() {
        error_response(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    } else if let Some(e) = r.find::<reject::MissingHeader>() {
        error_response(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    } else if let Some(e) = r.find::<reject::MissingCookie>() {
        error_response(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    } else if r.find::<reject::MethodNotAllowed>().is_some() {
        error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method".to_owned(),
        )
    } else if r.is_not_found() {
        error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route".to_owned(),
        )
    } else {
        tracing::debug!("unexpected rejection: {r:?}");
        error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request cannot be served".to_owned(),
        )
    })
}
