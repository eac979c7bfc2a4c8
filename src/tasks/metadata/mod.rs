//! The metadata task: refreshes what the cluster says about itself (id, controller, brokers,
//! the heartbeat topic's partitions and leaders), publishes it for the other tasks, and counts
//! and logs every change. A broker that vanishes is kept, marked missing, until
//! `broker.missing.retention.seconds` have passed, so a dead broker never silently disappears.
//!
//! - [`snapshot`]: the request, and the pure rules from one view to the next;
//! - [`racks`]: broker racks from DescribeCluster;
//! - [`metrics`]: this task's series.

mod metrics;
mod racks;
mod snapshot;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use self::metrics::MetadataMetrics;
use self::racks::Racks;
use self::snapshot::{describe_broker, fetch_metadata, next_snapshot, Change, MetadataResponse};
use crate::cluster::ClusterSnapshot;
use crate::kafka::handle::AnyClient;
use crate::logging::LogThrottle;
use crate::shared::ClusterShared;
use crate::sync::lock;

/// Why a metadata refresh failed.
#[derive(Debug, thiserror::Error)]
enum MetadataError {
    #[error("metadata request failed: {0}")]
    Request(#[from] KafkaError),
    #[error("metadata request task failed: {0}")]
    Task(String),
}

impl MetadataError {
    /// Whether the connection the request went on broke (rather than the request running out
    /// of time or being refused).
    fn connection_broke(&self) -> bool {
        matches!(
            self,
            MetadataError::Request(KafkaError::MetadataFetch(
                RDKafkaErrorCode::BrokerTransportFailure
            ))
        )
    }

    /// Whether the request failed for the connection it went on only: it ran out of time
    /// (a throttled connection, a broker that froze with it) or its connection broke (a
    /// broker that died with it), rather than being refused by the cluster.
    fn connection_only(&self) -> bool {
        matches!(
            self,
            MetadataError::Request(KafkaError::MetadataFetch(
                RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::BrokerTransportFailure
            ))
        )
    }
}

/// The pause before a request that failed on a broken connection is asked again: librdkafka
/// has marked that broker down by then, and goes to another.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// How recent a client's statistics showing throttling must be to explain a metadata
/// request that timed out: two of the users' statistics intervals (15 s).
const THROTTLE_FRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// The metadata task of one cluster.
pub(crate) struct MetadataRefresher {
    shared: Arc<ClusterShared>,
    /// The heartbeat producer's client, which the topic task shares.
    client: Arc<dyn AnyClient>,
    /// A second client asked at the same time (the end-to-end consumer's): a request that
    /// waits behind one client's throttled connection, or went to a broker that died with it,
    /// does not hold the answer the other client gets.
    second: Option<Arc<dyn AnyClient>>,
    metrics: Arc<MetadataMetrics>,
    throttle: LogThrottle,
    reachable: AtomicBool,
    /// When the refresh before this one started.
    previous_start: std::sync::Mutex<Option<Instant>>,
    racks: Racks,
}

impl MetadataRefresher {
    pub(crate) fn new(
        shared: &Arc<ClusterShared>,
        client: Arc<dyn AnyClient>,
        second: Option<Arc<dyn AnyClient>>,
    ) -> Self {
        let metrics = Arc::new(MetadataMetrics::new(shared.cluster_id_changes));
        shared.recorder.metrics().add(metrics.clone());
        MetadataRefresher {
            shared: shared.clone(),
            client,
            second,
            metrics,
            throttle: LogThrottle::default(),
            reachable: AtomicBool::new(false),
            previous_start: std::sync::Mutex::default(),
            racks: Racks::new(),
        }
    }

    /// Refreshes every `check.metadata.period.seconds`, or at once when asked to, until cancelled.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.shared.config.admin.check_metadata_period);
        // A refresh that overran is not worth catching up on: the next one sees the same cluster.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
                _ = self.shared.refresh_now.notified() => {}
            }
            // A blocking request cannot be interrupted; cancellation is checked around it.
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.refresh() => {}
            }
        }
        // The last holder of a client destroys it, which blocks: not on a worker.
        let clients = (self.client, self.second);
        let _ = tokio::task::spawn_blocking(move || drop(clients)).await;
    }

    /// One refresh: request, compare, publish, record.
    async fn refresh(&self) {
        let started = Instant::now();
        let since = lock(&self.previous_start)
            .replace(started)
            .unwrap_or(started);
        let limit = self.shared.config.admin.check_metadata_timeout;
        let mut result = self.request(limit).await;
        // A broken connection (a broker that died with the request, or stopped) fails the
        // request at once: asked again, librdkafka goes to another broker. So while the time
        // a request may take lasts.
        while let Err(error) = &result {
            let left = limit.saturating_sub(started.elapsed() + RETRY_PAUSE);
            if !error.connection_broke() || left.is_zero() {
                break;
            }
            tracing::debug!("metadata request failed on a broken connection, asked again: {error}");
            tokio::time::sleep(RETRY_PAUSE).await;
            result = self.request(left).await;
        }
        match result {
            Ok(response) => {
                self.shared
                    .recorder
                    .observed()
                    .metadata_answered(started.elapsed());
                self.apply(response);
            }
            Err(error) if error.connection_only() && self.answered_since(since) => {
                self.record_delayed(&error);
            }
            Err(error) => self.record_failure(error),
        }
    }

    /// Asks every client at once, each for at most `timeout`: the first answer wins; the last
    /// failure when none answers.
    async fn request(
        &self,
        timeout: std::time::Duration,
    ) -> Result<MetadataResponse, MetadataError> {
        let topic = self.shared.config.admin.heartbeat_topic.clone();
        let asks = [Some(&self.client), self.second.as_ref()]
            .into_iter()
            .flatten()
            .map(|client| {
                let (client, topic) = (client.clone(), topic.clone());
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || {
                        fetch_metadata(client.requests(), &topic, timeout)
                    })
                    .await
                    .map_err(|error| MetadataError::Task(error.to_string()))
                    .and_then(|result| result.map_err(MetadataError::from))
                })
            });
        // A request still waiting is left to end by its own timeout.
        futures::future::select_ok(asks)
            .await
            .map(|(response, _waiting)| response)
    }

    /// Whether the brokers answered since `since` (the start of the refresh before): a
    /// heartbeat was acknowledged or returned, or a client's latest statistics (at most
    /// [`THROTTLE_FRESH`] old) show brokers throttling it, which they say in their answers.
    /// A throttled connection holds every request behind the throttle time, which can be
    /// longer than a metadata request may take, and its first statistics may come later. So
    /// the cluster down is said one refresh later than a refused request would say it.
    fn answered_since(&self, since: Instant) -> bool {
        let facts = self.shared.recorder.status().lock();
        let throttled = [&facts.producer_throttled, &facts.consumer_throttled]
            .into_iter()
            .flatten()
            .any(|(_, at)| at.elapsed() <= THROTTLE_FRESH);
        throttled
            || [facts.last_acknowledged, facts.last_round_trip]
                .into_iter()
                .flatten()
                .any(|at| at >= since)
    }

    /// A refresh that failed on its connection while the brokers answered heartbeats: one
    /// slow or broken connection (a throttled client, a broker that died with the request),
    /// not the cluster down. It
    /// is counted as a failed refresh, and said with what is known of the cause; the cluster
    /// stays up.
    fn record_delayed(&self, error: &MetadataError) {
        self.metrics.record_delayed();
        let cause = {
            let facts = self.shared.recorder.status().lock();
            let throttled: Vec<String> = [&facts.producer_throttled, &facts.consumer_throttled]
                .into_iter()
                .flatten()
                .filter(|(_, at)| at.elapsed() <= THROTTLE_FRESH)
                .map(|(what, _)| what.clone())
                .collect();
            if throttled.is_empty() {
                let failing: Vec<String> = self
                    .shared
                    .recorder
                    .observed()
                    .connections()
                    .into_iter()
                    .filter_map(|connection| {
                        let failure = connection.failure?;
                        Some(format!(
                            "broker {} at {} fails its connection check ({} {})",
                            connection.target, connection.address, failure.phase, failure.reason
                        ))
                    })
                    .collect();
                match (failing.is_empty(), &facts.client_error) {
                    (false, _) => failing.join(", "),
                    // librdkafka names the broker whose connection broke.
                    (true, Some(said)) => format!("the {said}"),
                    (true, None) => "one connection was slow or broke".to_string(),
                }
            } else {
                format!("throttled: {}", throttled.join(", "))
            }
        };
        if let Some(held_back) = self.throttle.admit("delayed") {
            tracing::warn!(
                held_back,
                "a metadata request failed on its connection while the brokers answered \
                 heartbeats (the cluster is up; {cause}): {error}"
            );
        }
    }

    fn record_failure(&self, error: MetadataError) {
        self.metrics.record_failure();
        let message = error.to_string();
        let cause = {
            let mut facts = self.shared.recorder.status().lock();
            facts.metadata_error = Some(message.clone());
            facts.client_error.clone()
        };
        self.reachable.store(false, Ordering::Relaxed);
        if let Some(held_back) = self.throttle.admit("failing") {
            tracing::error!(
                held_back,
                client_error = cause.as_deref().unwrap_or("none"),
                "cannot reach the cluster: {message}"
            );
        }
    }

    fn apply(&self, response: MetadataResponse) {
        let now = Instant::now();
        let retention = self.shared.config.admin.broker_missing_retention;
        let previous = self.shared.snapshot();
        let racks = self.racks.known();
        let (snapshot, changes) = next_snapshot(&previous, response, &racks, now, retention);
        {
            let mut facts = self.shared.recorder.status().lock();
            facts.metadata_error = None;
            facts.client_error = None;
            facts.authentication_error = None;
        }
        let outage = self.throttle.reset("failing");
        if let Some(spell) = self.throttle.reset("delayed") {
            tracing::info!(
                "metadata requests answered again, {} after the first failed ({} failed)",
                spell.seconds(),
                spell.counted
            );
        }
        let racks_changed = snapshot.brokers.iter().any(|(id, broker)| {
            previous
                .brokers
                .get(id)
                .is_some_and(|old| old.rack != broker.rack)
        });
        if !self.reachable.swap(true, Ordering::Relaxed) {
            let verb = match (previous.refreshed_at, outage) {
                (None, _) => "connected to".to_string(),
                (Some(_), Some(outage)) => format!(
                    "after {} and {} failed metadata request(s), reconnected to",
                    outage.seconds(),
                    outage.counted
                ),
                (Some(_), None) => "reconnected to".to_string(),
            };
            log_cluster(&snapshot, &verb);
        } else if racks_changed {
            log_cluster(&snapshot, "racks known for");
        }
        let brokers_changed = changes.iter().any(|change| {
            matches!(
                change,
                Change::BrokerAdded(_)
                    | Change::BrokerReturned(_)
                    | Change::BrokerAddressChanged { .. }
            )
        });
        self.racks
            .look_up(&self.client, &self.shared, brokers_changed);
        for change in &changes {
            if change.is_trouble() {
                tracing::warn!(kind = change.kind(), "{change}");
            } else {
                tracing::info!(kind = change.kind(), "{change}");
            }
        }
        self.metrics.record(&previous, &snapshot, &changes);
        if changes
            .iter()
            .any(|change| matches!(change, Change::ClusterIdChanged { .. }))
        {
            // Another cluster answers at these addresses: what was measured so far was of the
            // old one. The cluster's tasks start afresh, their series from zero.
            tracing::warn!(
                "the bootstrap servers lead to another cluster now: monitoring it afresh"
            );
            self.shared.cluster_changed.notify_one();
            return;
        }
        self.shared.recorder.view().send_replace(Arc::new(snapshot));
    }
}

/// Logs the cluster the way the original tool did at start-up (and after an outage).
fn log_cluster(snapshot: &ClusterSnapshot, verb: &str) {
    let brokers: Vec<String> = snapshot.listed_brokers().map(describe_broker).collect();
    tracing::info!(
        cluster_id = snapshot.cluster_id_label(),
        controller = snapshot
            .controller_id
            .map_or_else(|| "unknown".to_string(), |id| id.to_string()),
        partitions = snapshot.partitions.len(),
        "{verb} cluster {} with {} broker(s): {}",
        snapshot.cluster_id_label(),
        brokers.len(),
        brokers.join(", ")
    );
}
