//! `GET /admin/monitor/alerts` and its event stream: the active and recently resolved alerts the evaluator keeps.

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::api::{event_stream, json, last_event_id, sse, ApiState};
use crate::config::Role;

/// `GET /admin/monitor/alerts` and `GET /admin/monitor/alerts/stream` (`event: alerts` on
/// every change of the alerts or their rules).
pub fn route<B, V, S>(
    base: B,
    viewer: V,
    st: S,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
where
    B: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
    V: Filter<Extract = (Role,), Error = Rejection> + Clone + Send + Sync + 'static,
    S: Filter<Extract = (ApiState,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let document = base
        .clone()
        .and(warp::path!("alerts"))
        .and(warp::get())
        .and(viewer.clone())
        .and(st.clone())
        .map(|_, s: ApiState| json(StatusCode::OK, &s.alerts.view()));
    let stream = base
        .and(warp::path!("alerts" / "stream"))
        .and(warp::get())
        .and(viewer)
        .and(last_event_id())
        .and(st)
        .map(|_, id, s: ApiState| event_stream(&s, sse::Topic::Alerts(s.alerts.clone()), id));
    document.or(stream).unify()
}
