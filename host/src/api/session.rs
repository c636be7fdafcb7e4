//! The dashboard's login: a token becomes a session cookie; the session route says who the caller is.

use std::convert::Infallible;

use serde::Deserialize;
use warp::http::{header, HeaderMap, StatusCode};
use warp::{Filter, Rejection};

use super::auth::{self, SESSION_COOKIE};
use super::guard::over_tls;
use super::serve::Peer;
use super::{base, boxed, deny, json, visible, ApiState, Boxed, MAX_BODY_BYTES};
use crate::config::Role;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    token: String,
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    )
}

/// The request facts that decide whether the cookie is `Secure`.
fn tls() -> impl Filter<Extract = (Option<Peer>, HeaderMap), Error = Infallible> + Clone {
    warp::ext::optional::<Peer>().and(warp::header::headers_cloned())
}

/// `GET /session`, `POST /login`, `POST /logout`.
pub(super) fn routes<S>(state: &ApiState, st: S) -> Vec<Boxed>
where
    S: Filter<Extract = (ApiState,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let session = base()
        .and(warp::path!("session"))
        .and(warp::get())
        .and(visible(state))
        .and(st.clone())
        .map(|role: Option<Role>, s: ApiState| {
            json(
                StatusCode::OK,
                &serde_json::json!({ "auth_required": s.auth.required(), "role": role }),
            )
        });
    let login = base()
        .and(warp::path!("login"))
        .and(warp::post())
        .and(visible(state))
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::body::json::<LoginBody>())
        .and(tls())
        .and(st.clone())
        .and_then(
            |_, body: LoginBody, peer: Option<Peer>, h: HeaderMap, s: ApiState| async move {
                let (id, role) = s.auth.login(&body.token).map_err(deny)?;
                let secure = over_tls(&s, peer, &h);
                let mut resp = json(StatusCode::OK, &serde_json::json!({ "role": role }));
                if let Ok(v) = header::HeaderValue::from_str(&session_cookie(
                    &id,
                    auth::SESSION_TTL.as_secs(),
                    secure,
                )) {
                    resp.headers_mut().insert(header::SET_COOKIE, v);
                }
                Ok::<_, Rejection>(resp)
            },
        );
    let logout = base()
        .and(warp::path!("logout"))
        .and(warp::post())
        .and(visible(state))
        .and(warp::cookie::optional::<String>(SESSION_COOKIE))
        .and(tls())
        .and(st)
        .map(
            |_, cookie: Option<String>, peer: Option<Peer>, h: HeaderMap, s: ApiState| {
                if let Some(id) = cookie {
                    s.auth.logout(&id);
                }
                let secure = over_tls(&s, peer, &h);
                let mut resp = json(StatusCode::OK, &serde_json::json!({ "logged_out": true }));
                if let Ok(v) = header::HeaderValue::from_str(&session_cookie("", 0, secure)) {
                    resp.headers_mut().insert(header::SET_COOKIE, v);
                }
                resp
            },
        );
    vec![boxed(session), boxed(login), boxed(logout)]
}
