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
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use self::metrics::MetadataMetrics;
use self::racks::Racks;
use self::snapshot::{describe_broker, fetch_metadata, next_snapshot, Change, MetadataResponse};
use crate::cluster::{ClusterShared, ClusterSnapshot};
use crate::kafka::handle::AnyClient;
use crate::logging::LogThrottle;

/// Why a metadata refresh failed.
#[derive(Debug, thiserror::Error)]
enum MetadataError {
    #[error("metadata request failed: {0}")]
    Request(#[from] KafkaError),
    #[error("metadata request task failed: {0}")]
    Task(String),
}

/// The metadata task of one cluster.
pub(crate) struct MetadataRefresher {
    shared: Arc<ClusterShared>,
    client: Arc<dyn AnyClient>,
    metrics: Arc<MetadataMetrics>,
    throttle: LogThrottle,
    reachable: AtomicBool,
    racks: Racks,
}

impl MetadataRefresher {
    pub(crate) fn new(shared: &Arc<ClusterShared>, client: Arc<dyn AnyClient>) -> Self {
        let metrics = Arc::new(MetadataMetrics::new(shared.cluster_id_changes));
        shared.metrics.add(metrics.clone());
        MetadataRefresher {
            shared: shared.clone(),
            client,
            metrics,
            throttle: LogThrottle::default(),
            reachable: AtomicBool::new(false),
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
        // The last holder of the client destroys it, which blocks: not on a worker.
        let client = self.client;
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    }

    /// One refresh: request, compare, publish, record.
    async fn refresh(&self) {
        let client = self.client.clone();
        let topic = self.shared.config.admin.heartbeat_topic.clone();
        let timeout = self.shared.config.admin.check_metadata_timeout;
        let started = Instant::now();
        let result =
            tokio::task::spawn_blocking(move || fetch_metadata(client.requests(), &topic, timeout))
                .await
                .map_err(|error| MetadataError::Task(error.to_string()))
                .and_then(|result| result.map_err(MetadataError::from));
        match result {
            Ok(response) => {
                self.shared.observed.metadata_answered(started.elapsed());
                self.apply(response);
            }
            Err(error) => self.record_failure(error),
        }
    }

    fn record_failure(&self, error: MetadataError) {
        self.metrics.record_failure();
        let message = error.to_string();
        let cause = {
            let mut facts = self.shared.status.lock();
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
            let mut facts = self.shared.status.lock();
            facts.metadata_error = None;
            facts.client_error = None;
            facts.authentication_error = None;
        }
        let outage = self.throttle.reset("failing");
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
        self.shared.view.send_replace(Arc::new(snapshot));
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
