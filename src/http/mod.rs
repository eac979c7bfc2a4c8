//! The HTTP server: `/metrics` (OpenMetrics or the Prometheus text format, as the scraper
//! asks; from memory only), `/healthz`, `/ready`, and the
//! status page at `/` with the document it reads, `/api/status`. A scrape never calls Kafka
//! and never resets anything. Also the client side of `/healthz`, for the `healthcheck`
//! subcommand.
//!
//! - `status`: the `/api/status` document (the page itself is `status.html`, embedded);
//! - [`web_config`]: `--web.config.file`, TLS and users in the exporter-toolkit's format;
//! - `auth`: basic authentication of every endpoint but `/healthz`.

mod auth;
mod status;
pub mod web_config;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::logging;
use crate::metrics::merge_families;
use crate::metrics::text_format;
use crate::shared::ClusterHandle;
use web_config::{Tls, WebConfig};

/// The OpenMetrics content type Prometheus negotiates.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One encode at a time, shared by the scrapes waiting for it: a scrape is answered by the first
/// encode that started after it arrived, so fifty scrapers at once cost a few encodes, not
/// fifty, and none gets figures older than its request. Encoding runs on a blocking thread, so
/// however many clients scrape, the runtime's workers stay free for the beats.
#[derive(Debug, Default)]
pub(crate) struct SharedEncode {
    /// Scrapes so far; a scrape's ticket is its place in that order.
    arrivals: AtomicU64,
    /// The last body, with the number of scrapes that had arrived when its encode started.
    last: Arc<tokio::sync::Mutex<Option<(u64, Bytes)>>>,
}

impl SharedEncode {
    /// The body of an `encode` that started after this call, run on a blocking thread; `None`
    /// if it failed.
    pub(crate) async fn get<F>(&self, encode: F) -> Option<Bytes>
    where
        F: FnOnce() -> Result<String, std::fmt::Error> + Send + 'static,
    {
        let ticket = self.arrivals.fetch_add(1, Ordering::SeqCst);
        let mut last = self.last.clone().lock_owned().await;
        if let Some((started, body)) = last.as_ref() {
            if *started > ticket {
                return Some(body.clone());
            }
        }
        // Every scrape with a lower ticket arrived before this encode starts.
        let started = self.arrivals.load(Ordering::SeqCst);
        // The encode and the lock belong to a task of their own: a scrape given up (its client
        // gone, or timed out) leaves the result to those waiting, rather than letting the next
        // one start a second encode beside it.
        let encoding = tokio::spawn(async move {
            let body = Bytes::from(tokio::task::spawn_blocking(encode).await.ok()?.ok()?);
            *last = Some((started, body.clone()));
            Some(body)
        });
        encoding.await.ok()?
    }
}

/// Endpoints served beside the standard ones (the demo's control), and what the status page
/// says of them.
pub struct Extension {
    pub routes: Router,
    /// HTML appended to the status page.
    pub landing: String,
}

/// What the handlers read: the clusters' shared state.
#[derive(Clone)]
pub(crate) struct HttpState {
    clusters: Arc<Vec<Arc<ClusterHandle>>>,
    encodes: Arc<SharedEncode>,
    landing: Arc<str>,
    /// The cluster the demo's control acts on, in demo mode.
    demo_cluster: Option<Arc<str>>,
}

impl HttpState {
    /// The state for `clusters`, the status page saying `landing_note` too (HTML);
    /// `demo_cluster`: the cluster the demo's control breaks, in demo mode.
    pub(crate) fn new(
        clusters: Vec<Arc<ClusterHandle>>,
        landing_note: &str,
        demo_cluster: Option<&str>,
    ) -> Self {
        HttpState {
            clusters: Arc::new(clusters),
            encodes: Arc::default(),
            landing: STATUS_PAGE.replace("NOTE", landing_note).into(),
            demo_cluster: demo_cluster.map(Arc::from),
        }
    }
}

/// The status page: HTML and a little JavaScript, no external assets.
const STATUS_PAGE: &str = include_str!("status.html");

/// The router with what the web configuration asks for: its users required on every
/// endpoint but `/healthz`, its headers on every response.
pub(crate) fn protect(mut router: Router, web: &WebConfig) -> Router {
    if !web.users.is_empty() {
        let users = auth::BasicAuth::new(web.users.clone());
        router = router.layer(axum::middleware::from_fn_with_state(users, auth::require));
    }
    for (name, value) in &web.headers {
        router = router.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            name.clone(),
            value.clone(),
        ));
    }
    router
}

/// The router, for serving and for tests.
pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .route("/api/status", get(api_status))
        .route("/debug/events", get(debug_events))
        .with_state(state)
}

/// Binds the listener; errors name the address.
pub(crate) async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((host, port)).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("cannot listen on {host}:{port}: {error}"),
        )
    })
}

/// Connections served at once; beyond it new ones wait in the listen queue. Far above what
/// scrapers need, far below what would exhaust the process's file descriptors.
const MAX_CONNECTIONS: usize = 1024;

/// How long a client may take to send a request's headers, the first or the next on a
/// kept-alive connection; then the connection is closed (slow or idle clients hold nothing).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request may take to be answered (an encode waiting its turn included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves until cancelled, within the limits above: however many clients connect, and however
/// slowly they talk, `/metrics` keeps answering.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<Tls>>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    if let Some(address) = address {
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("serving metrics on {scheme}://{address}/metrics");
    }
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        REQUEST_TIMEOUT,
    ));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return Ok(()),
            },
        };
        let stream = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, or a connection reset while queued: wait a
                    // moment and go on; the server itself must not end.
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let cancel = cancel.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, router, cancel).await,
                Some(tls) => {
                    // The handshake within the time a request's headers get: a client that
                    // connects and says nothing holds nothing.
                    let handshake = async {
                        let ssl = openssl::ssl::Ssl::new(tls.acceptor().context()).ok()?;
                        let mut stream = tokio_openssl::SslStream::new(ssl, stream).ok()?;
                        std::pin::Pin::new(&mut stream).accept().await.ok()?;
                        Some(stream)
                    };
                    if let Ok(Some(stream)) =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, handshake).await
                    {
                        serve_connection(stream, router, cancel).await;
                    }
                }
            }
        });
    }
}

/// Serves one connection (plain or TLS) until it ends or the server stops.
async fn serve_connection<S>(stream: S, router: Router, cancel: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
        }
    }
}

/// OpenMetrics to a scraper that asks for it, the Prometheus text format 0.0.4 to the rest.
async fn metrics(State(state): State<HttpState>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok());
    let openmetrics = text_format::wants_openmetrics(accept);
    let clusters = state.clusters.clone();
    let Some(body) = state.encodes.get(move || encode(&clusters)).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response();
    };
    let (content_type, body) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, body)
    } else {
        // Rewritten per scrape, off the runtime's workers like the encode itself.
        let rewritten = tokio::task::spawn_blocking(move || {
            text_format::to_text(std::str::from_utf8(&body).unwrap_or_default())
        });
        match rewritten.await {
            Ok(text) => (text_format::TEXT_CONTENT_TYPE, Bytes::from(text)),
            Err(_) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response()
            }
        }
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The body depends on the Accept header: a cache must not give one to the other.
            (header::VARY, "Accept"),
        ],
        body,
    )
        .into_response()
}

/// The OpenMetrics text of every cluster, from memory.
fn encode(clusters: &[Arc<ClusterHandle>]) -> Result<String, std::fmt::Error> {
    let mut expositions = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        let cluster = cluster.current();
        let cluster_id = cluster.snapshot().cluster_id_label().to_string();
        let mut text = String::with_capacity(64 * 1024);
        cluster
            .recorder
            .encode(&mut text, &cluster.config.name, &cluster_id)?;
        expositions.push(text);
    }
    let mut body = if expositions.len() == 1 {
        expositions.pop().unwrap_or_default()
    } else {
        merge_families(&expositions)
    };
    body.push_str("# EOF\n");
    Ok(body)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness of one cluster, as `/ready` reports it.
#[derive(Debug, serde::Serialize)]
struct ClusterReadiness {
    cluster: String,
    cluster_id: String,
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Heartbeat partitions that failed within the last minute, and why (the latest failure):
    /// a cluster stays ready while others make the round trip, but says which do not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing_partitions: Vec<FailingPartition>,
}

/// A heartbeat partition failing now, as `/ready` names it.
#[derive(Debug, serde::Serialize)]
struct FailingPartition {
    partition: i32,
    failures_last_minute: usize,
    why: String,
}

/// 200 when every cluster is ready, else 503; the body says which are not, and why.
async fn ready(State(state): State<HttpState>) -> Response {
    let now = Instant::now();
    let clusters: Vec<ClusterReadiness> = state
        .clusters
        .iter()
        .map(|cluster| {
            let cluster = cluster.current();
            let reason = cluster.recorder.readiness(now).err();
            let failing_partitions = cluster
                .recorder
                .observed()
                .partitions(now)
                .into_iter()
                .filter(|view| view.failures_last_minute > 0)
                .filter_map(|view| {
                    Some(FailingPartition {
                        partition: view.partition,
                        failures_last_minute: view.failures_last_minute,
                        why: view.last_failure?.what,
                    })
                })
                .collect();
            ClusterReadiness {
                cluster: cluster.config.name.clone(),
                cluster_id: cluster.snapshot().cluster_id_label().to_string(),
                ready: reason.is_none(),
                reason,
                failing_partitions,
            }
        })
        .collect();
    let ready = clusters.iter().all(|cluster| cluster.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ready": ready, "clusters": clusters });
    (status, axum::Json(body)).into_response()
}

/// What the status page shows, as JSON.
async fn api_status(State(state): State<HttpState>) -> Response {
    let document = status::StatusDocument::new(&state.clusters, state.demo_cluster.as_deref());
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(document)).into_response()
}

/// The last warnings and errors logged (at most [`logging::EVENTS_KEPT`]), secrets masked.
async fn debug_events() -> Response {
    let events = logging::recent_events();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "kept": logging::EVENTS_KEPT, "events": events })),
    )
        .into_response()
}

/// The status page, its `HOST` placeholders replaced by the address the client used.
async fn landing(State(state): State<HttpState>, headers: axum::http::HeaderMap) -> Html<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost:8080");
    Html(state.landing.replace("HOST", host))
}

/// GET /healthz over HTTP/1.1 (over TLS when `tls` is given), with a short timeout: no
/// client library, no runtime.
pub fn healthcheck(address: &str, tls: Option<&web_config::TlsSettings>) -> Result<(), String> {
    let timeout = Duration::from_secs(3);
    let target = address
        .to_socket_addrs()
        .map_err(|error| format!("{address}: {error}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))?;
    let stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|error| format!("{address}: {error}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|error| error.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|error| error.to_string())?;
    match tls {
        None => ask_healthz(stream, address),
        Some(tls) => {
            let stream =
                healthcheck_tls(stream, tls).map_err(|error| format!("{address}: TLS: {error}"))?;
            ask_healthz(stream, address)
        }
    }
}

/// The TLS client of the health check: the exporter beside it is not verified (it answers on
/// loopback, under a name its certificate need not carry); where client certificates are
/// required, the server's own is shown.
fn healthcheck_tls(
    stream: TcpStream,
    tls: &web_config::TlsSettings,
) -> Result<openssl::ssl::SslStream<TcpStream>, String> {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    builder.set_verify(SslVerifyMode::NONE);
    // Shown only where one is required: where it is merely verified if given, showing one
    // the client CA did not sign would fail a handshake that passes without.
    if matches!(
        tls.client_auth,
        web_config::ClientAuth::RequireAnyClientCert
            | web_config::ClientAuth::RequireAndVerifyClientCert
    ) {
        builder
            .set_certificate_chain_file(&tls.cert_file)
            .map_err(|e| e.to_string())?;
        builder
            .set_private_key_file(&tls.key_file, SslFiletype::PEM)
            .map_err(|e| e.to_string())?;
    }
    let connector = builder.build();
    let mut configuration = connector.configure().map_err(|e| e.to_string())?;
    configuration.set_verify_hostname(false);
    configuration.set_use_server_name_indication(false);
    configuration
        .connect("localhost", stream)
        .map_err(|e| e.to_string())
}

fn ask_healthz(mut stream: impl Read + Write, address: &str) -> Result<(), String> {
    stream
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|error| format!("{address}: {error}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|error| format!("{address}: {error}"))?;
    match &head[9..12] {
        b"200" => Ok(()),
        status => Err(format!(
            "{address}/healthz answered {}",
            String::from_utf8_lossy(status)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (yielding) until `done`, at most 10 s.
    async fn until(done: impl Fn() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while !done() {
                tokio::task::yield_now().await;
            }
        });
        assert!(waited.await.is_ok(), "condition not reached within 10 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scrapes_at_once_share_an_encode_that_started_after_they_arrived() {
        let shared = Arc::new(SharedEncode::default());
        let encodes = Arc::new(AtomicU64::new(0));
        // The encode holds a gate the test opens only once every scrape is waiting.
        let gate = Arc::new(std::sync::Barrier::new(2));
        let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first = {
            let (shared, encodes, gate) = (shared.clone(), encodes.clone(), gate.clone());
            let running = running.clone();
            tokio::spawn(async move {
                shared
                    .get(move || {
                        running.store(true, Ordering::SeqCst);
                        gate.wait();
                        Ok(format!("{}", encodes.fetch_add(1, Ordering::SeqCst)))
                    })
                    .await
            })
        };
        // Wait until the first encode runs, then queue twenty more.
        until(|| running.load(Ordering::SeqCst)).await;
        let waiting: Vec<_> = (0..20)
            .map(|_| {
                let (shared, encodes) = (shared.clone(), encodes.clone());
                tokio::spawn(async move {
                    shared
                        .get(move || Ok(format!("{}", encodes.fetch_add(1, Ordering::SeqCst))))
                        .await
                })
            })
            .collect();
        until(|| shared.arrivals.load(Ordering::SeqCst) >= 21).await;
        gate.wait();
        assert_eq!(first.await.unwrap().as_deref(), Some(&b"0"[..]));
        for scrape in waiting {
            // Not the encode already running when they came: the one after it.
            assert_eq!(scrape.await.unwrap().as_deref(), Some(&b"1"[..]));
        }
        assert_eq!(encodes.load(Ordering::SeqCst), 2);
        // A later scrape gets a new encode, not the last body.
        let later = shared.get(|| Ok("fresh".to_string())).await;
        assert_eq!(later.as_deref(), Some(&b"fresh"[..]));
        // A failed encode answers None and keeps nothing.
        assert_eq!(shared.get(|| Err(std::fmt::Error)).await, None);
        // A scrape given up mid-encode does not let the next start a second encode beside it.
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slow_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slow = {
            let (shared, finished) = (shared.clone(), finished.clone());
            let slow_running = slow_running.clone();
            tokio::spawn(async move {
                shared
                    .get(move || {
                        slow_running.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        finished.store(true, Ordering::SeqCst);
                        Ok("slow".to_string())
                    })
                    .await
            })
        };
        until(|| slow_running.load(Ordering::SeqCst)).await;
        slow.abort();
        let after = shared
            .get(move || Ok(finished.load(Ordering::SeqCst).to_string()))
            .await;
        assert_eq!(after.as_deref(), Some(&b"true"[..]));
    }
}
