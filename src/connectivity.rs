//! The connectivity task: a timed TCP connect to every broker's advertised address, all
//! brokers at once, each bounded by `check.connectivity.timeout.seconds`.
//!
//! The time measured is what a client pays to open a connection: name resolution plus the TCP
//! handshake, nothing after the connection exists. Brokers reported missing are still checked
//! at their last known address, since that is where an operator will look.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Broker, ClusterShared};
use crate::logging::LogThrottle;
use crate::metrics::{BrokerLabels, BrokerReasonLabels};

/// Why a connection check failed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No answer within the timeout (resolution and handshake together).
    Timeout,
    /// The host answered with a reset: nothing listens on the port.
    Refused,
    /// The host name did not resolve.
    NameResolution,
    /// No route to the host or network.
    Unreachable,
    /// Anything else.
    Other,
}

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::Timeout,
        FailureReason::Refused,
        FailureReason::NameResolution,
        FailureReason::Unreachable,
        FailureReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Refused => "refused",
            FailureReason::NameResolution => "name_resolution",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Other => "other",
        }
    }

    fn from_io(error: &std::io::Error) -> Self {
        match error.kind() {
            ErrorKind::ConnectionRefused => FailureReason::Refused,
            ErrorKind::TimedOut => FailureReason::Timeout,
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                FailureReason::Unreachable
            }
            _ => FailureReason::Other,
        }
    }
}

/// A failed check, with the reason and the underlying message for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({detail})", reason.as_str())]
pub struct CheckFailure {
    pub reason: FailureReason,
    pub detail: String,
}

/// Name lookups go through the system resolver on blocking threads, which a timeout cannot
/// stop. A host whose previous lookup is still running is not looked up again, so a hanging
/// resolver costs one thread per host, not one per host per round.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pending: Arc<Mutex<HashSet<(String, u16)>>>,
}

impl Resolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, CheckFailure> {
        let key = (host.to_string(), port);
        if !self.lock().insert(key.clone()) {
            return Err(CheckFailure {
                reason: FailureReason::Timeout,
                detail: format!("the previous lookup of {host} has not finished"),
            });
        }
        let pending = self.pending.clone();
        let lookup = tokio::task::spawn_blocking(move || {
            let result = (key.0.as_str(), key.1)
                .to_socket_addrs()
                .map(Iterator::collect);
            pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&key);
            result
        });
        match lookup.await {
            Ok(Ok(addresses)) => Ok(addresses),
            Ok(Err(error)) => Err(CheckFailure {
                reason: FailureReason::NameResolution,
                detail: format!("{host}: {error}"),
            }),
            Err(error) => Err(CheckFailure {
                reason: FailureReason::Other,
                detail: format!("lookup of {host} failed: {error}"),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u16)>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Resolves `host` and opens a TCP connection to `port`, trying each address in turn as a
/// client would. Returns the time taken to the first established connection.
pub async fn check_broker(
    resolver: &Resolver,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Duration, CheckFailure> {
    let start = Instant::now();
    let attempt = async {
        let addresses = resolver.resolve(host, port).await?;
        let mut last = CheckFailure {
            reason: FailureReason::NameResolution,
            detail: format!("{host} resolved to no address"),
        };
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    let elapsed = start.elapsed();
                    drop(stream);
                    return Ok(elapsed);
                }
                Err(error) => {
                    last = CheckFailure {
                        reason: FailureReason::from_io(&error),
                        detail: format!("{address}: {error}"),
                    }
                }
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(CheckFailure {
            reason: FailureReason::Timeout,
            detail: format!("no connection within {}s", timeout.as_secs_f64()),
        }),
    }
}

/// The connectivity task of one cluster.
pub struct ConnectivityChecker {
    shared: Arc<ClusterShared>,
    throttle: Arc<LogThrottle>,
    resolver: Resolver,
}

impl ConnectivityChecker {
    pub fn new(shared: Arc<ClusterShared>) -> Self {
        ConnectivityChecker {
            shared,
            throttle: Arc::new(LogThrottle::default()),
            resolver: Resolver::default(),
        }
    }

    /// Checks every broker each `check.connectivity.period.seconds`, and at once when the set
    /// of known brokers changes, until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut interval =
            tokio::time::interval(self.shared.config.admin.check_connectivity_period);
        // Checks stay on their grid; a round that overran does not cause a burst.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut view = self.shared.view.subscribe();
        let mut checked: Vec<i32> = Vec::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
                changed = view.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let known: Vec<i32> = view.borrow_and_update().brokers.keys().copied().collect();
                    if known == checked {
                        continue;
                    }
                }
            }
            checked = self.shared.snapshot().brokers.keys().copied().collect();
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.check_all() => {}
            }
        }
    }

    /// One round: every known broker concurrently; returns when all have finished.
    pub async fn check_all(&self) {
        let snapshot = self.shared.snapshot();
        let timeout = self.shared.config.admin.check_connectivity_timeout;
        let mut checks = JoinSet::new();
        for broker in snapshot.brokers.values().cloned() {
            let shared = self.shared.clone();
            let throttle = self.throttle.clone();
            let resolver = self.resolver.clone();
            checks.spawn(async move {
                let result = check_broker(&resolver, &broker.host, broker.port, timeout).await;
                record(&shared, &throttle, &broker, result);
            });
        }
        while checks.join_next().await.is_some() {}
    }
}

fn record(
    shared: &ClusterShared,
    throttle: &LogThrottle,
    broker: &Broker,
    result: Result<Duration, CheckFailure>,
) {
    if !shared.snapshot().brokers.contains_key(&broker.id) {
        // Forgotten while its check ran: recording now would bring back its removed series.
        return;
    }
    let metrics = &shared.metrics;
    let labels = BrokerLabels::new(broker.id);
    metrics.connection_checks.get_or_create(&labels).inc();
    let failing_key = format!("broker {} failing", broker.id);
    let ok_key = format!("broker {} ok", broker.id);
    match result {
        Ok(elapsed) => {
            metrics
                .connection_seconds
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
            let listed = broker.missing_since.is_none();
            metrics
                .broker_up
                .get_or_create(&labels)
                .set(i64::from(listed));
            throttle.reset(&failing_key);
            // Say once that a broker recovered, not at every successful check.
            if throttle.admit(&ok_key) == Some(0) {
                tracing::debug!(broker = broker.id, address = %broker.address(), "connection check ok");
            }
        }
        Err(failure) => {
            metrics
                .connection_failures
                .get_or_create(&BrokerReasonLabels {
                    broker: labels.broker.clone(),
                    reason: failure.reason.as_str().to_string(),
                })
                .inc();
            metrics.broker_up.get_or_create(&labels).set(0);
            throttle.reset(&ok_key);
            if let Some(held_back) = throttle.admit(&failing_key) {
                tracing::warn!(
                    broker = broker.id,
                    address = %broker.address(),
                    reason = failure.reason.as_str(),
                    held_back,
                    "connection check failed: {}",
                    failure.detail
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_to_a_listening_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let elapsed = check_broker(
            &Resolver::default(),
            "127.0.0.1",
            port,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(elapsed < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let failure = check_broker(
            &Resolver::default(),
            "127.0.0.1",
            port,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(failure.reason, FailureReason::Refused);
    }

    #[tokio::test]
    async fn unknown_name_is_a_resolution_failure() {
        let failure = check_broker(
            &Resolver::default(),
            "no-such-host.invalid",
            9092,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                failure.reason,
                FailureReason::NameResolution | FailureReason::Timeout
            ),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn unanswered_handshake_is_a_timeout() {
        // A listener whose accept queue is full drops new handshakes: the client hears nothing.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket.listen(0).unwrap();
        let address = socket.local_addr().unwrap().as_socket().unwrap();
        // Each successful check leaves its (closed, never accepted) connection in the queue.
        let mut timed_out = None;
        for _ in 0..8 {
            let result = check_broker(
                &Resolver::default(),
                "127.0.0.1",
                address.port(),
                Duration::from_millis(300),
            )
            .await;
            if let Err(failure) = result {
                assert_eq!(failure.reason, FailureReason::Timeout, "{failure}");
                timed_out = Some(failure);
                break;
            }
        }
        assert!(timed_out.is_some(), "the handshake never timed out");
        drop(socket);
    }
}
