//! The connectivity task: a timed TCP connect to every broker's advertised address, all
//! brokers at once, each bounded by `check.connectivity.timeout.seconds`.
//!
//! The time measured is what a client pays to open a connection: name resolution plus the TCP
//! handshake, nothing after the connection exists. Brokers reported missing are still checked
//! at their last known address, since that is where an operator will look.

use std::io::ErrorKind;
use std::sync::Arc;
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

/// Resolves `host` and opens a TCP connection to `port`, trying each address in turn as a
/// client would. Returns the time taken to the first established connection.
pub async fn check_broker(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Duration, CheckFailure> {
    let start = Instant::now();
    let attempt = async {
        let addresses: Vec<_> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| CheckFailure {
                reason: FailureReason::NameResolution,
                detail: error.to_string(),
            })?
            .collect();
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
}

impl ConnectivityChecker {
    pub fn new(shared: Arc<ClusterShared>) -> Self {
        ConnectivityChecker {
            shared,
            throttle: Arc::new(LogThrottle::default()),
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
            checks.spawn(async move {
                let result = check_broker(&broker.host, broker.port, timeout).await;
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
        let elapsed = check_broker("127.0.0.1", port, Duration::from_secs(5))
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
        let failure = check_broker("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(failure.reason, FailureReason::Refused);
    }

    #[tokio::test]
    async fn unknown_name_is_a_resolution_failure() {
        let failure = check_broker("no-such-host.invalid", 9092, Duration::from_secs(10))
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
}
