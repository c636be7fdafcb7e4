//! The monitor's read routes: snapshot, health, history, collector views, event streams, errors, metrics.

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use serde::Deserialize;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::{
    base, boxed, error_response, event_stream, exposition, health, json, json_bytes, last_event_id,
    range, reject, sse, ApiState, Boxed, MAX_ERRORS_LIMIT, OPENAPI,
};
use crate::config::Role;

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

/// One collector's section, status and history, or 404 naming it.
fn collector_view(s: &ApiState, name: &str) -> Response {
    match s.store.collector_view(name) {
        Some(v) => json(StatusCode::OK, &v),
        None => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no collector named `{name}` is configured"),
        ),
    }
}

/// The API's own request figures and each collector's collect figures.
fn metrics_report(s: &ApiState) -> Response {
    let collectors: BTreeMap<String, serde_json::Value> = s
        .store
        .statuses()
        .into_iter()
        .map(|(k, c)| {
            (
                k,
                serde_json::json!({
                    "state": c.state,
                    "collects_total": c.collects_total,
                    "errors_total": c.errors_total,
                    "consecutive_failures": c.consecutive_failures,
                    "last_duration_ms": c.last_duration_ms,
                }),
            )
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "requests": s.metrics.report(), "collectors": collectors }),
    )
}

/// The read routes, the metrics reset and the Prometheus exposition.
pub(super) fn routes<V, A, S>(viewer: V, admin: A, st: S) -> Vec<Boxed>
where
    V: Filter<Extract = (Role,), Error = Rejection> + Clone + Send + Sync + 'static,
    A: Filter<Extract = (Role,), Error = Rejection> + Clone + Send + Sync + 'static,
    S: Filter<Extract = (ApiState,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let get = move || warp::get().and(viewer.clone());
    let system = base()
        .and(warp::path!("system"))
        .and(get())
        .and(st.clone())
        .map(|_, s: ApiState| json_bytes(StatusCode::OK, s.store.snapshot_json()));
    let health = base()
        .and(warp::path!("health"))
        .and(get())
        .and(st.clone())
        .map(|_, s: ApiState| {
            let open = s.streams_open.load(std::sync::atomic::Ordering::Relaxed);
            let h = health::health(&s.store, open).with_alerts(&s.alerts.view());
            json(h.status.http_status(), &h)
        });
    // Without `series`: the live window kept in memory, as the page reads it at load; with
    // `series`: a range query over the durable history.
    let history = base()
        .and(warp::path!("history"))
        .and(get())
        .and(warp::query::<range::RangeQuery>())
        .and(st.clone())
        .then(|_, q: range::RangeQuery, s: ApiState| async move {
            let absent = |p: &Option<String>| p.as_deref().is_none_or(|v| v.trim().is_empty());
            let json_or_absent = absent(&q.format) || q.format.as_deref() == Some("json");
            if absent(&q.series)
                && absent(&q.from)
                && absent(&q.to)
                && absent(&q.step)
                && json_or_absent
            {
                json(StatusCode::OK, &s.store.history(q.collector.as_deref()))
            } else {
                range::history(&s, q).await
            }
        });
    let events = base()
        .and(warp::path!("events"))
        .and(get())
        .and(warp::query::<range::EventsQuery>())
        .and(st.clone())
        .then(|_, q: range::EventsQuery, s: ApiState| async move { range::events(&s, q).await });
    // `/gpu` is the seed's name for the GPU collector's view; every collector has one under `/sections`.
    let gpu = base()
        .and(warp::path!("gpu"))
        .and(get())
        .and(st.clone())
        .map(|_, s: ApiState| collector_view(&s, "gpu"));
    let gpu_stream = base()
        .and(warp::path!("gpu" / "stream"))
        .and(get())
        .and(last_event_id())
        .and(st.clone())
        .map(|_, id, s: ApiState| event_stream(&s, sse::Topic::Collector("gpu".to_owned()), id));
    let section = base()
        .and(warp::path!("sections" / String))
        .and(get())
        .and(st.clone())
        .map(|name: String, _, s: ApiState| collector_view(&s, &name));
    let section_stream = base()
        .and(warp::path!("sections" / String / "stream"))
        .and(get())
        .and(last_event_id())
        .and(st.clone())
        .map(|name: String, _, id, s: ApiState| event_stream(&s, sse::Topic::Collector(name), id));
    let stream = base()
        .and(warp::path!("stream"))
        .and(get())
        .and(last_event_id())
        .and(st.clone())
        .map(|_, id, s: ApiState| event_stream(&s, sse::Topic::Snapshot, id));
    let metrics = base()
        .and(warp::path!("metrics"))
        .and(get())
        .and(st.clone())
        .map(|_, s: ApiState| metrics_report(&s));
    let reset = base()
        .and(warp::path!("metrics" / "reset"))
        .and(warp::post())
        .and(admin)
        .and(st.clone())
        .map(|_, s: ApiState| {
            s.metrics.reset();
            json(
                StatusCode::OK,
                &serde_json::json!({ "reset": true, "since": s.metrics.report().since }),
            )
        });
    let errors = base()
        .and(warp::path!("errors"))
        .and(get())
        .and(warp::query::<LimitQuery>())
        .and(st.clone())
        .and_then(|_, q: LimitQuery, s: ApiState| async move {
            let limit = q.limit.unwrap_or(50);
            if limit > MAX_ERRORS_LIMIT {
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("limit must be at most {MAX_ERRORS_LIMIT}"),
                ));
            }
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "errors": s.store.errors(limit) }),
            ))
        });
    let openapi = base()
        .and(warp::path!("openapi.json"))
        .and(get())
        .map(|_| json_bytes(StatusCode::OK, Bytes::from_static(OPENAPI.as_bytes())));
    let prometheus = warp::path!("metrics")
        .and(get())
        .and(st)
        .map(|_, s: ApiState| {
            let text = exposition::render(
                &s.exposition,
                &s.store,
                &s.metrics.report(),
                &s.alerts.firing(),
            );
            warp::reply::with_header(text, header::CONTENT_TYPE, exposition::CONTENT_TYPE)
                .into_response()
        });
    vec![
        boxed(system),
        boxed(health),
        boxed(history),
        boxed(events),
        boxed(gpu),
        boxed(gpu_stream),
        boxed(section),
        boxed(section_stream),
        boxed(stream),
        boxed(metrics),
        boxed(reset),
        boxed(errors),
        boxed(openapi),
        boxed(prometheus),
    ]
}
