//! A real Schema Registry for tests: Apicurio Registry (its Confluent-compatible API under
//! `/apis/ccompat/v7`, in-memory storage), whose Java runner `scripts/test.sh` fetches with
//! Maven into `target/test-tools/apicurio` (or wherever `APICURIO_DIR` points); and a proxy in
//! front of it that answers as a failing registry does on demand (401, 429, 5xx, another
//! schema), with Confluent's error bodies, and asks for basic authentication.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::tls::free_port;

/// Where Apicurio's runner is.
fn runner() -> PathBuf {
    let dir = std::env::var_os("APICURIO_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/apicurio"),
        PathBuf::from,
    );
    let runner = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|entry| entry.path())
            .find(|path| path.to_string_lossy().ends_with("-runner.jar"))
    });
    runner.unwrap_or_else(|| {
        panic!(
            "Apicurio Registry's runner is not in {}: run scripts/test.sh (it fetches it with \
             Maven), or set APICURIO_DIR",
            dir.display()
        )
    })
}

/// A running Apicurio Registry on a loopback port.
pub struct Registry {
    child: Child,
    pub port: u16,
}

impl Registry {
    /// Starts it and waits until it is ready (a few seconds).
    pub async fn start() -> Registry {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("java")
            .args(["-Xms64m", "-Xmx256m", "-XX:+UseSerialGC"])
            .arg(format!("-Dquarkus.http.port={port}"))
            .arg("-Dquarkus.http.host=127.0.0.1")
            .arg("-jar")
            .arg(runner())
            .stdout(Stdio::from(log.reopen().unwrap()))
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .expect("java");
        let registry = Registry { child, port };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = client
                .get(format!("http://127.0.0.1:{port}/health/ready"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return registry;
            }
            assert!(
                Instant::now() < deadline,
                "Apicurio Registry not ready within 120 s:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The Confluent-compatible API's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/apis/ccompat/v7", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the proxy answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// As the registry behind it does.
    Forward,
    /// Every request with this status and Confluent's error body.
    Fail(u16),
    /// A schema by id answered with another schema.
    OtherSchema,
}

struct ProxyState {
    upstream: String,
    mode: Mutex<Mode>,
    /// The Authorization header a request must carry (`Basic …`), else 401.
    authorization: Mutex<Option<String>>,
    client: reqwest::Client,
}

/// An HTTP proxy in front of a registry, on a loopback port.
pub struct Proxy {
    state: Arc<ProxyState>,
    pub address: SocketAddr,
    _server: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy forwarding to `upstream` (a registry's base URL), asking for basic
    /// authentication as `user:password`.
    pub async fn start(upstream: &str, user_info: &str) -> Proxy {
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            mode: Mutex::new(Mode::Forward),
            authorization: Mutex::new(Some(basic(user_info))),
            client: reqwest::Client::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = handler_state.clone();
                async move { answer(&state, method, uri, headers, body).await }
            },
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy {
            state,
            address,
            _server: server,
        }
    }

    /// The base URL clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// From now on, only `user_info` is let in.
    pub fn require(&self, user_info: &str) {
        *self.state.authorization.lock().unwrap() = Some(basic(user_info));
    }
}

/// `Basic base64(user_info)`, as a client sends it.
fn basic(user_info: &str) -> String {
    format!(
        "Basic {}",
        openssl::base64::encode_block(user_info.as_bytes())
    )
}

fn error_body(status: u16, message: &str) -> Response {
    let body = serde_json::json!({ "error_code": status, "message": message }).to_string();
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/vnd.schemaregistry.v1+json")],
        body,
    )
        .into_response()
}

async fn answer(
    state: &ProxyState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let wanted = state.authorization.lock().unwrap().clone();
    let given = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    if wanted.is_some() && given != wanted {
        return error_body(401, "Unauthorized");
    }
    let mode = state.mode.lock().unwrap().clone();
    match mode {
        Mode::Fail(429) => return error_body(429, "Too Many Requests"),
        Mode::Fail(status) => return error_body(status, "Internal Server Error"),
        Mode::OtherSchema if uri.path().contains("/schemas/ids/") => {
            let other = r#"{"type":"record","name":"Other","fields":[]}"#;
            return (
                StatusCode::OK,
                serde_json::json!({ "schema": other }).to_string(),
            )
                .into_response();
        }
        _ => {}
    }
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let mut request = state
        .client
        .request(method, format!("{}{path}", state.upstream))
        .body(body);
    if let Some(content_type) = headers.get("content-type") {
        request = request.header("content-type", content_type);
    }
    match request.send().await {
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            let text = response.text().await.unwrap_or_default();
            (status, text).into_response()
        }
        Err(error) => error_body(502, &error.to_string()),
    }
}
