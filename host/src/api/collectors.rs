//! The collectors API: list the collectors, show one, and change one at run time.

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::api::{json, reject, ApiState, MAX_BODY_BYTES};
use crate::config::Role;
use crate::control::{CollectorPatch, PatchError};

/// `GET /admin/monitor/collectors`, `GET` and `PUT /admin/monitor/collectors/{name}`.
pub fn routes<B, V, A, S>(
    base: B,
    viewer: V,
    admin: A,
    st: S,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
where
    B: Filter<Extract = (), Error = Rejection> + Clone + Send + Sync + 'static,
    V: Filter<Extract = (Role,), Error = Rejection> + Clone + Send + Sync + 'static,
    A: Filter<Extract = (Role,), Error = Rejection> + Clone + Send + Sync + 'static,
    S: Filter<Extract = (ApiState,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let list = base
        .clone()
        .and(warp::path!("collectors"))
        .and(warp::get())
        .and(viewer.clone())
        .and(st.clone())
        .then(|_, s: ApiState| async move {
            json(
                StatusCode::OK,
                &serde_json::json!({ "collectors": s.control.list().await }),
            )
        });
    let one = base
        .clone()
        .and(warp::path!("collectors" / String))
        .and(warp::get())
        .and(viewer)
        .and(st.clone())
        .and_then(|name: String, _, s: ApiState| async move {
            let views = s.control.list().await;
            match views.into_iter().find(|v| v.name == name) {
                Some(v) => Ok(json(StatusCode::OK, &v)),
                None => Err(reject(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no collector named `{name}` is configured"),
                )),
            }
        });
    let put = base
        .and(warp::path!("collectors" / String))
        .and(warp::put())
        .and(admin)
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::body::json::<CollectorPatch>())
        .and(st)
        .and_then(
            |name: String, _, patch: CollectorPatch, s: ApiState| async move {
                match s.control.patch(&name, patch).await {
                    Ok(report) => {
                        let view = s.control.list().await.into_iter().find(|v| v.name == name);
                        Ok(json(
                            StatusCode::OK,
                            &serde_json::json!({ "changes": report, "collector": view }),
                        ))
                    }
                    Err(e @ PatchError::UnknownCollector(_)) => {
                        Err(reject(StatusCode::NOT_FOUND, "not_found", e.to_string()))
                    }
                    Err(e @ PatchError::OutOfRange(_)) => Err(reject(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        e.to_string(),
                    )),
                }
            },
        );
    list.or(one).unify().or(put).unify()
}
