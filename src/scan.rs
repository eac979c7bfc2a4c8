//! The cluster scan: a slow, separate look at the whole cluster, every
//! `check.consumer.group.period.seconds` (60 s by default): how many topics and partitions it
//! has, and how many partitions are under-replicated (fewer in-sync replicas than replicas) or
//! offline (no leader).
//!
//! It has its own client and its own task, and asks for the metadata of every topic on a
//! blocking thread, so a large cluster's slow answer never delays a heartbeat. (Consumer-group
//! lag is to be scanned here too.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::client::{client_config, ClientLog, Role};
use crate::cluster::ClusterShared;
use crate::logging::LogThrottle;

/// One partition as the scan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Leader broker id, `None` when offline.
    pub leader: Option<i32>,
    pub replicas: usize,
    pub in_sync: usize,
}

/// What one scan counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterOverview {
    pub topics: usize,
    pub partitions: usize,
    pub under_replicated: usize,
    pub offline: usize,
}

/// Counts topics and partitions, and the unhealthy ones, from each topic's partitions.
pub fn overview<'a>(topics: impl IntoIterator<Item = &'a [PartitionHealth]>) -> ClusterOverview {
    let mut overview = ClusterOverview::default();
    for partitions in topics {
        overview.topics += 1;
        for partition in partitions {
            overview.partitions += 1;
            if partition.leader.is_none() {
                overview.offline += 1;
            }
            if partition.in_sync < partition.replicas {
                overview.under_replicated += 1;
            }
        }
    }
    overview
}

/// Asks for the metadata of every topic. Blocking.
fn fetch_overview(
    client: &AdminClient<ClientLog>,
    timeout: Duration,
) -> Result<ClusterOverview, KafkaError> {
    let metadata = client.inner().fetch_metadata(None, timeout)?;
    let topics: Vec<Vec<PartitionHealth>> = metadata
        .topics()
        .iter()
        .map(|topic| {
            topic
                .partitions()
                .iter()
                .map(|partition| PartitionHealth {
                    leader: (partition.leader() >= 0).then_some(partition.leader()),
                    replicas: partition.replicas().len(),
                    in_sync: partition.isr().len(),
                })
                .collect()
        })
        .collect();
    Ok(overview(topics.iter().map(Vec::as_slice)))
}

/// Why the scan's client could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the cluster scan's client: {0}")]
pub struct ScanError(#[from] KafkaError);

/// The cluster scan task of one cluster.
pub struct ClusterScan {
    shared: Arc<ClusterShared>,
    client: Arc<AdminClient<ClientLog>>,
    throttle: LogThrottle,
}

impl ClusterScan {
    pub fn new(shared: Arc<ClusterShared>) -> Result<Self, ScanError> {
        let config = client_config(&shared.config, Role::Admin);
        let client = config.create_with_context(ClientLog::new(
            &shared.config.name,
            Role::Admin,
            shared.status.clone(),
        ))?;
        Ok(ClusterScan {
            shared,
            client: Arc::new(client),
            throttle: LogThrottle::default(),
        })
    }

    /// Scans every `check.consumer.group.period.seconds` until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut interval =
            tokio::time::interval(self.shared.config.admin.check_consumer_group_period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.scan() => {}
            }
        }
        let client = self.client;
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    }

    async fn scan(&self) {
        let client = self.client.clone();
        // A whole-cluster answer can be large: more time than a heartbeat-topic request.
        let timeout = self.shared.config.admin.check_metadata_timeout * 3;
        let start = Instant::now();
        let result = tokio::task::spawn_blocking(move || fetch_overview(&client, timeout)).await;
        let metrics = &self.shared.metrics;
        match result {
            Ok(Ok(overview)) => {
                metrics.cluster_topics.set(overview.topics as i64);
                metrics.cluster_partitions.set(overview.partitions as i64);
                metrics
                    .cluster_under_replicated_partitions
                    .set(overview.under_replicated as i64);
                metrics
                    .cluster_offline_partitions
                    .set(overview.offline as i64);
                metrics
                    .cluster_scan_duration
                    .set(start.elapsed().as_secs_f64());
                self.throttle.reset("failing");
            }
            Ok(Err(error)) => self.failed(&error.to_string()),
            Err(error) => self.failed(&error.to_string()),
        }
    }

    fn failed(&self, error: &str) {
        self.shared.metrics.cluster_scan_failures.inc();
        if let Some(held_back) = self.throttle.admit("failing") {
            tracing::warn!(held_back, "cluster scan failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_partitions_are_counted() {
        let healthy = PartitionHealth {
            leader: Some(1),
            replicas: 3,
            in_sync: 3,
        };
        let lagging = PartitionHealth {
            leader: Some(2),
            replicas: 3,
            in_sync: 2,
        };
        let offline = PartitionHealth {
            leader: None,
            replicas: 3,
            in_sync: 0,
        };
        let topics = [vec![healthy, lagging], vec![offline], vec![]];
        assert_eq!(
            overview(topics.iter().map(Vec::as_slice)),
            ClusterOverview {
                topics: 3,
                partitions: 3,
                under_replicated: 2,
                offline: 1
            }
        );
    }
}
