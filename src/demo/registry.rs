//! The demo's Schema Registry: the part of Confluent's REST API the probe uses (register a
//! schema under a subject, read a schema by id, read a subject's latest version), in memory,
//! on a loopback port, so that the Schema Registry panels move in demo mode too. It can be
//! taken down (every request answered 503) and brought back from the demo's HTTP control.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// The most schemas kept: the probe registers one; anything beyond is refused, so a local
/// client cannot grow the demo without bound.
const MAX_SCHEMAS: usize = 100;

/// What the registry holds.
#[derive(Debug, Default)]
struct Schemas {
    /// Schema texts; the id of each is its index plus one.
    texts: Vec<String>,
    /// Each subject's versions, oldest first, as schema ids.
    subjects: BTreeMap<String, Vec<usize>>,
}

#[derive(Debug, Default)]
struct Inner {
    schemas: Mutex<Schemas>,
    /// Taken down from the demo's control: every request answers 503.
    down: AtomicBool,
}

/// A running demo registry; it stops when this is dropped.
#[derive(Debug)]
pub(super) struct DemoRegistry {
    address: SocketAddr,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

impl DemoRegistry {
    /// Starts serving on a free loopback port, on the current tokio runtime.
    pub(super) fn start() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let inner = Arc::new(Inner::default());
        let stop = CancellationToken::new();
        let routes = Router::new()
            .route("/subjects/{subject}/versions", post(register))
            .route("/subjects/{subject}/versions/latest", get(latest))
            .route("/schemas/ids/{id}", get(by_id))
            .with_state(inner.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let shutdown = async move { stopped.cancelled().await };
            if let Err(error) = axum::serve(listener, routes)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!("the demo's Schema Registry stopped: {error}");
            }
        });
        Ok(DemoRegistry {
            address,
            inner,
            stop,
        })
    }

    /// Its base URL.
    pub(super) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Takes it down (503 to every request) or brings it back.
    pub(super) fn set_up(&self, up: bool) {
        self.inner.down.store(!up, Ordering::Relaxed);
    }
}

impl Drop for DemoRegistry {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An answer in the registry's media type, with Confluent's error body when it is one.
fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/vnd.schemaregistry.v1+json",
        )],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    answer(status, json!({ "error_code": code, "message": message }))
}

/// 503 while the registry is taken down.
fn unavailable(inner: &Inner) -> Option<Response> {
    inner.down.load(Ordering::Relaxed).then(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            50301,
            "the demo's Schema Registry was taken down (POST /demo/schema-registry/up)",
        )
    })
}

/// POST /subjects/{subject}/versions: the id of the schema, registered if new (the same schema
/// again gives the same id and no new version).
async fn register(
    State(inner): State<Arc<Inner>>,
    Path(subject): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    if let Some(response) = unavailable(&inner) {
        return response;
    }
    let Some(schema) = body
        .as_ref()
        .and_then(|Json(body)| body.get("schema"))
        .and_then(Value::as_str)
        .filter(|schema| serde_json::from_str::<Value>(schema).is_ok())
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "Invalid schema: expected {\"schema\": \"<JSON>\"}",
        );
    };
    let mut schemas = lock(&inner.schemas);
    let id = match schemas.texts.iter().position(|text| text == schema) {
        Some(index) => index + 1,
        None if schemas.texts.len() >= MAX_SCHEMAS => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                "the demo's Schema Registry holds at most 100 schemas",
            );
        }
        None => {
            schemas.texts.push(schema.to_string());
            schemas.texts.len()
        }
    };
    let versions = schemas.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    answer(StatusCode::OK, json!({ "id": id }))
}

/// GET /subjects/{subject}/versions/latest.
async fn latest(State(inner): State<Arc<Inner>>, Path(subject): Path<String>) -> Response {
    if let Some(response) = unavailable(&inner) {
        return response;
    }
    let schemas = lock(&inner.schemas);
    let Some((version, id)) = schemas
        .subjects
        .get(&subject)
        .and_then(|versions| versions.iter().enumerate().next_back())
    else {
        return error(StatusCode::NOT_FOUND, 40401, "Subject not found.");
    };
    answer(
        StatusCode::OK,
        json!({
            "subject": subject,
            "version": version + 1,
            "id": id,
            "schema": schemas.texts[id - 1],
        }),
    )
}

/// GET /schemas/ids/{id}.
async fn by_id(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    if let Some(response) = unavailable(&inner) {
        return response;
    }
    let schemas = lock(&inner.schemas);
    match id
        .parse::<usize>()
        .ok()
        .and_then(|id| schemas.texts.get(id.checked_sub(1)?))
    {
        Some(schema) => answer(StatusCode::OK, json!({ "schema": schema })),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}
