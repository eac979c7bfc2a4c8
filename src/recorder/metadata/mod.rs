//! What the metadata refreshes found, recorded: the cluster's series, how long the last
//! answer took, why refreshes fail (a readiness cause), the published view the other tasks
//! follow, and what the log says of each change and of each outage.
//!
//! - `change`: a change between two views (the `kind` label);
//! - `metrics`: the series.

pub(crate) mod change;
mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::change::{describe_broker, Change};
use self::metrics::MetadataMetrics;
use crate::cluster::ClusterSnapshot;
use crate::logging::LogThrottle;
use crate::metrics::Families;
use crate::recorder::stores::Stores;

/// How recent a client's statistics showing throttling must be to explain a metadata
/// request that timed out: two of the users' statistics intervals (15 s).
pub(crate) const THROTTLE_FRESH: Duration = Duration::from_secs(30);

/// A metadata request was answered after `took`.
#[derive(Debug)]
pub(crate) struct MetadataAnswered {
    pub(crate) took: Duration,
}

/// A refresh failed on its connection while the brokers answered heartbeats: one slow or
/// broken connection, not the cluster down.
#[derive(Debug)]
pub(crate) struct MetadataDelayed {
    pub(crate) error: String,
}

/// A refresh failed: the cluster cannot be reached.
#[derive(Debug)]
pub(crate) struct MetadataFailed {
    pub(crate) error: String,
}

/// A refresh turned the previous view into `snapshot`, seeing `changes`.
#[derive(Debug)]
pub(crate) struct MetadataRefreshed {
    pub(crate) previous: Arc<ClusterSnapshot>,
    pub(crate) snapshot: ClusterSnapshot,
    pub(crate) changes: Vec<Change>,
}

/// The metadata refreshes' part of the record.
pub(super) struct Metadata {
    metrics: Arc<MetadataMetrics>,
    throttle: LogThrottle,
    /// Whether the last refresh reached the cluster.
    reachable: AtomicBool,
}

impl Metadata {
    /// `cluster_id_changes`: how often the cluster's id changed before this generation.
    pub(super) fn new(cluster_id_changes: u64) -> Self {
        Metadata {
            metrics: Arc::new(MetadataMetrics::new(cluster_id_changes)),
            throttle: LogThrottle::default(),
            reachable: AtomicBool::new(false),
        }
    }

    pub(super) fn families(&self) -> Arc<dyn Families> {
        self.metrics.clone()
    }

    pub(super) fn answered(&self, stores: &Stores<'_>, answered: MetadataAnswered) {
        stores.observed.metadata_answered(answered.took);
    }

    /// Counted as a failed refresh, and said with what is known of the cause; the cluster
    /// stays up.
    pub(super) fn delayed(&self, stores: &Stores<'_>, delayed: MetadataDelayed) {
        self.metrics.record_delayed();
        let cause = {
            let facts = stores.status.lock();
            let throttled: Vec<String> = [&facts.producer_throttled, &facts.consumer_throttled]
                .into_iter()
                .flatten()
                .filter(|(_, at)| at.elapsed() <= THROTTLE_FRESH)
                .map(|(what, _)| what.clone())
                .collect();
            if throttled.is_empty() {
                let failing: Vec<String> = stores
                    .observed
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
                 heartbeats (the cluster is up; {cause}): {}",
                delayed.error
            );
        }
    }

    pub(super) fn failed(&self, stores: &Stores<'_>, failed: MetadataFailed) {
        self.metrics.record_failure();
        let message = failed.error;
        let cause = {
            let mut facts = stores.status.lock();
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

    /// Publishes the new view, unless another cluster answers at these addresses now (the
    /// cluster's tasks then start afresh, with a fresh record).
    pub(super) fn refreshed(&self, stores: &Stores<'_>, refreshed: MetadataRefreshed) {
        let MetadataRefreshed {
            previous,
            snapshot,
            changes,
        } = refreshed;
        {
            let mut facts = stores.status.lock();
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
            // What was measured so far was of the old cluster.
            tracing::warn!(
                "the bootstrap servers lead to another cluster now: monitoring it afresh"
            );
            return;
        }
        stores.view.send_replace(Arc::new(snapshot));
    }
}

/// Whether the brokers answered since `since`: a heartbeat was acknowledged or returned, or a
/// client's latest statistics (at most [`THROTTLE_FRESH`] old) show brokers throttling it,
/// which they say in their answers.
pub(super) fn answered_since(stores: &Stores<'_>, since: Instant) -> bool {
    let facts = stores.status.lock();
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
