//! `GET /admin/monitor/alerts`: the active and recently resolved alerts the evaluator keeps.

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::api::{json, ApiState};
use crate::config::Role;

/// `GET /admin/monitor/alerts`.
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
    base.and(warp::path!("alerts"))
        .and(warp::get())
        .and(viewer)
        .and(st)
        .map(|_, s: ApiState| json(StatusCode::OK, &s.alerts.view()))
}
