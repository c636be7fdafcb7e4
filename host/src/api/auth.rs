//! Access control: tokens bound to roles (stored hashed), login sessions in HttpOnly cookies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Mode, Role, TokenConfig};

/// The name of the session cookie the dashboard's login sets.
pub const SESSION_COOKIE: &str = "vitals_session";
/// How long a login session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions one token may hold; its own oldest is dropped past it, never another's.
pub const MAX_SESSIONS_PER_TOKEN: usize = 64;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or credentials that match no token or session (401).
    Unauthorized(&'static str),
    /// A valid token whose role is too weak for the route (403).
    Forbidden(Role),
    /// The route is hidden from this caller (cloud mode, `web` role): answer 404.
    Hidden,
}

/// `sha256:<hex>` of a token, the form the config stores.
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// A fresh random token (32 bytes, hex).
///
/// # Errors
/// When the OS random source fails.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

struct Token {
    name: String,
    role: Role,
    digest: [u8; 32],
}

struct Session {
    role: Role,
    /// The name of the token that opened it.
    token: String,
    expires: Instant,
}

/// The tokens of the config and the open login sessions.
pub struct Auth {
    mode: Mode,
    tokens: Vec<Token>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Auth {
    /// Access control for `mode` with the configured tokens (hashes already validated).
    pub fn new(mode: Mode, tokens: &[TokenConfig]) -> Self {
        let tokens = tokens
            .iter()
            .filter_map(|t| {
                let hex_digest = t.hash.strip_prefix("sha256:")?;
                let bytes = hex::decode(hex_digest).ok()?;
                Some(Token {
                    name: t.name.clone(),
                    role: t.role,
                    digest: bytes.try_into().ok()?,
                })
            })
            .collect();
        Self {
            mode,
            tokens,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// True when requests must carry a token or a session.
    pub fn required(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The token matching `secret`, compared in constant time against every token.
    fn token_role(&self, secret: &str) -> Option<(Role, &str)> {
        let d = digest(secret);
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.digest.ct_eq(&d)) {
                found = Some((t.role, t.name.as_str()));
            }
        }
        found
    }

    fn session_role(&self, id: &str) -> Option<Role> {
        let key = digest(id);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.role),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Who the caller is, from an `Authorization: Bearer` header or the session cookie.
    ///
    /// # Errors
    /// [`Denied::Hidden`] in cloud mode; [`Denied::Unauthorized`] when credentials are needed
    /// and missing or wrong.
    pub fn identify(
        &self,
        authorization: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<Option<Role>, Denied> {
        if self.mode == Mode::Cloud {
            return Err(Denied::Hidden);
        }
        if !self.required() {
            return Ok(Some(Role::Admin));
        }
        if let Some(header) = authorization {
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .ok_or(Denied::Unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ))?;
            return match self.token_role(token.trim()) {
                Some((role, _)) => Ok(Some(role)),
                None => Err(Denied::Unauthorized("the token is not valid")),
            };
        }
        if let Some(id) = cookie {
            return match self.session_role(id) {
                Some(role) => Ok(Some(role)),
                None => Err(Denied::Unauthorized(
                    "the session has expired or is not valid: log in again",
                )),
            };
        }
        Ok(None)
    }

    /// Checks that the caller may use a route that needs `need`.
    ///
    /// # Errors
    /// A [`Denied`] saying why not.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        cookie: Option<&str>,
        need: Role,
    ) -> Result<Role, Denied> {
        match self.identify(authorization, cookie)? {
            None => Err(Denied::Unauthorized(
                "this route needs a token: `Authorization: Bearer <token>` or a login session",
            )),
            Some(Role::Web) => Err(Denied::Hidden),
            Some(role) if role < need => Err(Denied::Forbidden(role)),
            Some(role) => Ok(role),
        }
    }

    /// Opens a session for `token`; returns the session id (the cookie value) and the role.
    ///
    /// # Errors
    /// [`Denied::Unauthorized`] for an unknown token, [`Denied::Hidden`] in cloud mode.
    pub fn login(&self, token: &str) -> Result<(String, Role), Denied> {
        if self.mode == Mode::Cloud {
            return Err(Denied::Hidden);
        }
        let (role, name) = self
            .token_role(token.trim())
            .ok_or(Denied::Unauthorized("the token is not valid"))?;
        if role == Role::Web {
            // The monitor is hidden from this role: it has nothing to log in to.
            return Err(Denied::Hidden);
        }
        let id =
            generate_token().map_err(|_| Denied::Unauthorized("no random source for a session"))?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
        let own = sessions.values().filter(|s| s.token == name).count();
        if own >= MAX_SESSIONS_PER_TOKEN {
            if let Some(oldest) = sessions
                .iter()
                .filter(|(_, s)| s.token == name)
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            digest(&id),
            Session {
                role,
                token: name.to_owned(),
                expires: now + SESSION_TTL,
            },
        );
        tracing::info!(token = name, ?role, "login");
        Ok((id, role))
    }

    /// Ends the session with this id, if any.
    pub fn logout(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            Mode::Local,
            &[
                TokenConfig {
                    name: "ops".into(),
                    role: Role::Admin,
                    hash: hash_token("admin-secret"),
                },
                TokenConfig {
                    name: "dash".into(),
                    role: Role::Viewer,
                    hash: hash_token("viewer-secret"),
                },
                TokenConfig {
                    name: "site".into(),
                    role: Role::Web,
                    hash: hash_token("web-secret"),
                },
            ],
        )
    }

    /// Guards the role rules: viewer reads, admin writes, web never sees the monitor.
    #[test]
    fn roles_grant_what_they_should() {
        let a = auth();
        assert_eq!(
            a.authorize(Some("Bearer admin-secret"), None, Role::Admin),
            Ok(Role::Admin)
        );
        assert_eq!(
            a.authorize(Some("Bearer viewer-secret"), None, Role::Viewer),
            Ok(Role::Viewer)
        );
        assert_eq!(
            a.authorize(Some("Bearer viewer-secret"), None, Role::Admin),
            Err(Denied::Forbidden(Role::Viewer))
        );
        assert_eq!(
            a.authorize(Some("Bearer web-secret"), None, Role::Viewer),
            Err(Denied::Hidden)
        );
        assert!(matches!(
            a.authorize(None, None, Role::Viewer),
            Err(Denied::Unauthorized(_))
        ));
        assert!(matches!(
            a.authorize(Some("Bearer nope"), None, Role::Viewer),
            Err(Denied::Unauthorized(_))
        ));
        assert!(matches!(
            a.authorize(Some("Basic x"), None, Role::Viewer),
            Err(Denied::Unauthorized(_))
        ));
    }

    /// Guards sessions: a login cookie carries the role until logout.
    #[test]
    fn sessions_carry_the_role_until_logout() {
        let a = auth();
        let (id, role) = a.login("viewer-secret").expect("login");
        assert_eq!(role, Role::Viewer);
        assert_eq!(a.authorize(None, Some(&id), Role::Viewer), Ok(Role::Viewer));
        a.logout(&id);
        assert!(matches!(
            a.authorize(None, Some(&id), Role::Viewer),
            Err(Denied::Unauthorized(_))
        ));
        assert!(a.login("wrong").is_err());
    }

    /// Guards open mode and cloud mode.
    #[test]
    fn no_tokens_means_admin_and_cloud_hides_everything() {
        let open = Auth::new(Mode::Local, &[]);
        assert_eq!(open.authorize(None, None, Role::Admin), Ok(Role::Admin));
        let cloud = Auth::new(Mode::Cloud, &[]);
        assert_eq!(
            cloud.authorize(None, None, Role::Viewer),
            Err(Denied::Hidden)
        );
    }

    /// Guards the stored form of tokens.
    #[test]
    fn hashes_are_sha256_hex() {
        let h = hash_token("abc");
        assert_eq!(
            h,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(generate_token().expect("random").len(), 64);
    }
}
