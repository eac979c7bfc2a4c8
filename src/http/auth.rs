//! Basic authentication of every endpoint but `/healthz`, against the bcrypt hashes of the web
//! configuration's `basic_auth_users`.
//!
//! A wrong user and a wrong password get the same 401, after the same work: an unknown user
//! is checked against a hash of its own so that timing tells nothing either. bcrypt is slow by
//! design (tens of milliseconds), so it runs off the runtime's workers, and a pair that passed
//! is remembered (as a digest, never the password) so that a scraper every few seconds costs
//! one bcrypt, not one per scrape.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::sync::lock;

/// Passed pairs kept at most; beyond it the memory starts again.
const REMEMBERED: usize = 1024;

/// The users and what has passed.
pub(crate) struct BasicAuth {
    users: BTreeMap<String, String>,
    passed: Mutex<HashSet<[u8; 32]>>,
}

impl BasicAuth {
    pub(crate) fn new(users: BTreeMap<String, String>) -> Arc<BasicAuth> {
        Arc::new(BasicAuth {
            users,
            passed: Mutex::default(),
        })
    }

    /// Whether `authorization` (the header's value) names a user with its password.
    async fn allows(self: &Arc<Self>, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let digest = digest(&user, &password);
        if lock(&self.passed).contains(&digest) {
            return true;
        }
        let hash = self.users.get(&user).cloned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| unknown_user_hash().to_string());
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let allowed = known && verified;
        if allowed {
            let mut passed = lock(&self.passed);
            if passed.len() >= REMEMBERED {
                passed.clear();
            }
            passed.insert(digest);
        }
        allowed
    }
}

/// User and password from `Basic <base64 of user:password>`.
fn credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A digest of the pair (the users do not change while the process runs).
fn digest(user: &str, password: &str) -> [u8; 32] {
    let mut hasher = openssl::sha::Sha256::new();
    hasher.update(user.as_bytes());
    hasher.update(&[0]);
    hasher.update(password.as_bytes());
    hasher.finish()
}

/// A hash no password is known for, at the usual cost, checked for unknown users.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let random = uuid::Uuid::new_v4().to_string();
        bcrypt::hash(random, bcrypt::DEFAULT_COST).unwrap_or_default()
    })
}

/// The middleware: `/healthz` passes, the rest need a user.
pub(crate) async fn require(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if auth.allows(authorization).await {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"cc-heartbeat\"")],
        "Unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[tokio::test]
    async fn only_a_user_with_its_password_passes() {
        let users = BTreeMap::from([("alice".to_string(), bcrypt::hash("s3cret", 4).unwrap())]);
        let auth = BasicAuth::new(users);
        assert!(auth.allows(Some(&basic("alice", "s3cret"))).await);
        // Remembered now, and still only for that password.
        assert!(auth.allows(Some(&basic("alice", "s3cret"))).await);
        assert!(!auth.allows(Some(&basic("alice", "wrong"))).await);
        assert!(!auth.allows(Some(&basic("bob", "s3cret"))).await);
        assert!(!auth.allows(Some(&basic("", ""))).await);
        assert!(!auth.allows(None).await);
        for garbage in ["Basic", "Basic !!!", "Bearer abc", "Basic YWxpY2U=", ""] {
            assert!(!auth.allows(Some(garbage)).await, "{garbage}");
        }
    }
}
