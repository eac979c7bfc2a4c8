//! Basic authentication of every endpoint but `/healthz`, against the bcrypt hashes of the web
//! configuration's `basic_auth_users`.
//!
//! A wrong user and a wrong password get the same 401, after the same work: an unknown user
//! is checked against a hash of its own, at the cost of the configured ones, so that timing
//! tells nothing either. bcrypt is slow by design (tens of milliseconds), so it runs off the
//! runtime's workers, one at a time: clients without credentials cannot take more than one
//! core, and while one runs the next gets 429 at once. A pair that passed is remembered (as a
//! digest, never the password), so a scraper every few seconds costs one bcrypt, not one per
//! scrape, and is not held up by anyone else's.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

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
    /// What an unknown user is checked against.
    unknown: String,
    passed: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time.
    verifying: tokio::sync::Semaphore,
}

/// What a request's credentials come to.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Refused,
    /// Another check is running: try again shortly.
    Busy,
}

impl BasicAuth {
    /// Made before serving: it runs one bcrypt, to have a hash no password is known for, at
    /// the highest cost of the users'.
    pub(crate) fn new(users: BTreeMap<String, String>) -> Arc<BasicAuth> {
        let cost = users
            .values()
            .filter_map(|hash| hash.parse::<bcrypt::HashParts>().ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let unknown = bcrypt::hash(uuid::Uuid::new_v4().to_string(), cost).unwrap_or_default();
        Arc::new(BasicAuth {
            users,
            unknown,
            passed: Mutex::default(),
            verifying: tokio::sync::Semaphore::new(1),
        })
    }

    /// Whether `authorization` (the header's value) names a user with its password.
    async fn allows(self: &Arc<Self>, authorization: Option<&str>) -> Verdict {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return Verdict::Refused;
        };
        let digest = digest(&user, &password);
        if lock(&self.passed).contains(&digest) {
            return Verdict::Allowed;
        }
        let Ok(permit) = self.verifying.try_acquire() else {
            return Verdict::Busy;
        };
        let hash = self.users.get(&user).cloned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.unknown.clone());
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        drop(permit);
        let allowed = known && verified;
        if allowed {
            let mut passed = lock(&self.passed);
            if passed.len() >= REMEMBERED {
                passed.clear();
            }
            passed.insert(digest);
            return Verdict::Allowed;
        }
        Verdict::Refused
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
    match auth.allows(authorization).await {
        Verdict::Allowed => next.run(request).await,
        Verdict::Refused => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"cc-heartbeat\"")],
            "Unauthorized\n",
        )
            .into_response(),
        Verdict::Busy => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "Too many requests\n",
        )
            .into_response(),
    }
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
        // The unknown user's hash costs what the users' do.
        assert!(auth.unknown.starts_with("$2b$04$"), "{}", auth.unknown);
        let allows = |header: Option<String>| {
            let auth = auth.clone();
            async move { auth.allows(header.as_deref()).await }
        };
        assert_eq!(
            allows(Some(basic("alice", "s3cret"))).await,
            Verdict::Allowed
        );
        // Remembered now, and still only for that password.
        assert_eq!(
            allows(Some(basic("alice", "s3cret"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            allows(Some(basic("alice", "wrong"))).await,
            Verdict::Refused
        );
        assert_eq!(allows(Some(basic("bob", "s3cret"))).await, Verdict::Refused);
        assert_eq!(allows(Some(basic("", ""))).await, Verdict::Refused);
        assert_eq!(allows(None).await, Verdict::Refused);
        for garbage in ["Basic", "Basic !!!", "Bearer abc", "Basic YWxpY2U=", ""] {
            assert_eq!(
                allows(Some(garbage.into())).await,
                Verdict::Refused,
                "{garbage}"
            );
        }
        // While a check runs, the next waits for none: busy, unless remembered.
        let permit = auth.verifying.try_acquire().unwrap();
        assert_eq!(allows(Some(basic("alice", "other"))).await, Verdict::Busy);
        assert_eq!(
            allows(Some(basic("alice", "s3cret"))).await,
            Verdict::Allowed
        );
        drop(permit);
    }
}
