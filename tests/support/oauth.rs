//! An identity provider for tests: an OAuth token endpoint (client credentials, HTTP Basic)
//! and a JWKS, each behind its own stunnel (real TLS, a certificate from the test's CA), the
//! tokens RS256 JWTs signed with a key made here. The brokers validate them against the JWKS
//! with Kafka's own validator; the exporter asks the token endpoint. The token endpoint can be
//! stopped (connection refused) and started again on its port, while the JWKS stays up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{json, Value};

use super::tls::{free_port, Authority, Kind, Stunnel};

/// The audience the brokers expect.
pub const AUDIENCE: &str = "kafka";
/// The issuer the tokens name.
pub const ISSUER: &str = "https://idp.cc-heartbeat.test";
/// The id of the JWKS's one key.
const KEY_ID: &str = "test-key-1";

/// What the provider does, changed by the tests while it runs.
struct Behaviour {
    /// Client id → secret.
    clients: BTreeMap<String, String>,
    lifetime: Duration,
    audience: String,
    /// Token requests answered with a token, and refused.
    issued: usize,
    refused: usize,
    /// Every token issued, for the tests that look for one where it must not be.
    tokens: Vec<String>,
}

struct Provider {
    key: PKey<Private>,
    behaviour: Mutex<Behaviour>,
}

/// The running identity provider.
pub struct IdentityProvider {
    provider: Arc<Provider>,
    /// `https://127.0.0.1:PORT/oauth2/token`.
    pub token_url: String,
    /// `https://127.0.0.1:PORT/jwks`.
    pub jwks_url: String,
    token_port: u16,
    backend_port: u16,
    pem: std::path::PathBuf,
    dir: std::path::PathBuf,
    token_tunnel: Mutex<Option<Stunnel>>,
    _jwks_tunnel: Stunnel,
    runtime: Option<tokio::runtime::Runtime>,
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Provider {
    /// A signed JWT for `client`.
    fn token(&self, client: &str, lifetime: Duration, audience: &str) -> String {
        let now = unix_seconds();
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": KEY_ID});
        let claims = json!({
            "iss": ISSUER,
            "sub": client,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime.as_secs(),
            "scope": "kafka",
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key).unwrap();
        signer.update(signed.as_bytes()).unwrap();
        let signature = signer.sign_to_vec().unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn jwks(&self) -> Value {
        let rsa = self.key.rsa().unwrap();
        json!({"keys": [{
            "kty": "RSA",
            "kid": KEY_ID,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        }]})
    }
}

/// The token endpoint: client credentials in HTTP Basic, `grant_type=client_credentials`.
async fn token(
    State(provider): State<Arc<Provider>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut behaviour = provider.behaviour.lock().unwrap();
    let credentials = authorization
        .strip_prefix("Basic ")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let client = credentials.as_deref().and_then(|credentials| {
        let (id, secret) = credentials.split_once(':')?;
        (behaviour.clients.get(id).map(String::as_str) == Some(secret)).then(|| id.to_string())
    });
    let grant = body
        .split('&')
        .any(|pair| pair == "grant_type=client_credentials");
    match client {
        Some(client) if grant => {
            behaviour.issued += 1;
            let (lifetime, audience) = (behaviour.lifetime, behaviour.audience.clone());
            let token = provider.token(&client, lifetime, &audience);
            behaviour.tokens.push(token.clone());
            (
                StatusCode::OK,
                Json(json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": lifetime.as_secs(),
                })),
            )
        }
        _ => {
            behaviour.refused += 1;
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "error": "invalid_client",
                    "error_description": "Client authentication failed",
                })),
            )
        }
    }
}

impl IdentityProvider {
    /// Starts the provider, its certificate issued by `authority`, its files in `dir`.
    pub fn start(dir: &Path, authority: &Authority) -> IdentityProvider {
        let provider = Arc::new(Provider {
            key: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
            behaviour: Mutex::new(Behaviour {
                clients: BTreeMap::new(),
                lifetime: Duration::from_secs(300),
                audience: AUDIENCE.to_string(),
                issued: 0,
                refused: 0,
                tokens: Vec::new(),
            }),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("identity-provider")
            .enable_all()
            .build()
            .unwrap();
        let backend_port = free_port();
        let app = Router::new()
            .route("/oauth2/token", post(token))
            .route(
                "/jwks",
                get(|State(provider): State<Arc<Provider>>| async move { Json(provider.jwks()) }),
            )
            .with_state(provider.clone());
        // Started from inside a test's own runtime, which may not block on another: the
        // listener is bound here and handed over.
        let listener = std::net::TcpListener::bind(("127.0.0.1", backend_port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await
        });
        let pem = authority.issue(Kind::Valid).pem;
        let (token_port, jwks_port) = (free_port(), free_port());
        let token_tunnel = Stunnel::start(dir, &pem, token_port, backend_port);
        let jwks_tunnel = Stunnel::start(dir, &pem, jwks_port, backend_port);
        IdentityProvider {
            provider,
            token_url: format!("https://127.0.0.1:{token_port}/oauth2/token"),
            jwks_url: format!("https://127.0.0.1:{jwks_port}/jwks"),
            token_port,
            backend_port,
            pem,
            dir: dir.to_path_buf(),
            token_tunnel: Mutex::new(Some(token_tunnel)),
            _jwks_tunnel: jwks_tunnel,
            runtime: Some(runtime),
        }
    }

    /// Accepts `id` with `secret` (replacing its secret, if it had one).
    pub fn add_client(&self, id: &str, secret: &str) {
        let mut behaviour = self.provider.behaviour.lock().unwrap();
        behaviour.clients.insert(id.to_string(), secret.to_string());
    }

    /// How long the tokens issued from now on live.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.provider.behaviour.lock().unwrap().lifetime = lifetime;
    }

    /// The audience the tokens issued from now on name.
    pub fn set_audience(&self, audience: &str) {
        self.provider.behaviour.lock().unwrap().audience = audience.to_string();
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> usize {
        self.provider.behaviour.lock().unwrap().issued
    }

    /// Every token issued so far.
    pub fn tokens(&self) -> Vec<String> {
        self.provider.behaviour.lock().unwrap().tokens.clone()
    }

    /// Token requests refused so far.
    pub fn refused(&self) -> usize {
        self.provider.behaviour.lock().unwrap().refused
    }

    /// Stops the token endpoint: connections to it are refused.
    pub fn stop_token_endpoint(&self) {
        self.token_tunnel.lock().unwrap().take();
    }

    /// Starts the token endpoint again, on its port.
    pub fn start_token_endpoint(&self) {
        let mut tunnel = self.token_tunnel.lock().unwrap();
        if tunnel.is_none() {
            *tunnel = Some(Stunnel::start(
                &self.dir,
                &self.pem,
                self.token_port,
                self.backend_port,
            ));
        }
    }
}

impl Drop for IdentityProvider {
    // Dropped inside a test's own runtime too, where a blocking shutdown would panic.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
