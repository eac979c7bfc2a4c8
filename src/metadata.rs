//! The metadata task: refreshes what the cluster says about itself (id, controller, brokers,
//! the heartbeat topic's partitions and leaders), publishes it for the other tasks, and counts
//! and logs every change. A broker that vanishes is kept, marked missing, until
//! `broker.missing.retention.seconds` have passed, so a dead broker never silently disappears.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::client::ClientLog;
use crate::cluster::{unix_seconds, Broker, ClusterShared, ClusterSnapshot, Partition, NO_LEADER};
use crate::logging::LogThrottle;
use crate::metrics::{BrokerInfoLabels, BrokerLabels, KindLabels, PartitionLabels};
use crate::native_admin::describe_cluster;

/// Why a metadata refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata request failed: {0}")]
    Request(#[from] KafkaError),
    #[error("metadata request task failed: {0}")]
    Task(String),
}

/// What one metadata request returned, before comparison with the previous view.
#[derive(Debug, Clone, Default)]
pub struct MetadataResponse {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    pub brokers: Vec<(i32, String, u16)>,
    pub partitions: Vec<Partition>,
    pub topic_error: Option<RDKafkaErrorCode>,
}

/// Requests metadata for `topic` (and the brokers) with `client`. Blocking: run it on a
/// blocking thread.
pub fn fetch_metadata(
    client: &AdminClient<ClientLog>,
    topic: &str,
    timeout: Duration,
) -> Result<MetadataResponse, KafkaError> {
    let client = client.inner();
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let brokers = metadata
        .brokers()
        .iter()
        .map(|broker| {
            let port = u16::try_from(broker.port()).unwrap_or_default();
            (broker.id(), broker.host().to_string(), port)
        })
        .collect();
    let mut partitions = Vec::new();
    let mut topic_error = None;
    for found in metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic)
    {
        if let Some(error) = found.error() {
            topic_error = Some(RDKafkaErrorCode::from(error));
        }
        for partition in found.partitions() {
            let leader = partition.leader();
            partitions.push(Partition {
                id: partition.id(),
                replicas: partition.replicas().len(),
                leader: (leader >= 0).then_some(leader),
            });
        }
    }
    // Both answer from the metadata just fetched (librdkafka caches them).
    let cluster_id = client.fetch_cluster_id(Duration::from_millis(100));
    // SAFETY: the handle is valid for the client's lifetime; the call only reads its cache.
    let controller = unsafe { rdkafka::bindings::rd_kafka_controllerid(client.native_ptr(), 100) };
    Ok(MetadataResponse {
        cluster_id,
        controller_id: (controller >= 0).then_some(controller),
        brokers,
        partitions,
        topic_error,
    })
}

/// A change between two metadata views, as counted in `heartbeat_metadata_changes_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    ClusterIdChanged {
        from: String,
        to: String,
    },
    BrokerAdded(Broker),
    BrokerRemoved(Broker),
    BrokerReturned(Broker),
    BrokerAddressChanged {
        from: Broker,
        to: Broker,
    },
    BrokerForgotten(Broker),
    PartitionsAdded {
        from: usize,
        to: usize,
    },
    LeaderChanged {
        partition: i32,
        from: Option<i32>,
        to: Option<i32>,
    },
}

impl Change {
    /// Every `kind` label value, so each series exists (at zero) from the start.
    pub const KINDS: [&'static str; 8] = [
        "cluster_id_changed",
        "broker_added",
        "broker_removed",
        "broker_returned",
        "broker_address_changed",
        "broker_forgotten",
        "partitions_added",
        "leader_changed",
    ];

    /// The `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::ClusterIdChanged { .. } => "cluster_id_changed",
            Change::BrokerAdded(_) => "broker_added",
            Change::BrokerRemoved(_) => "broker_removed",
            Change::BrokerReturned(_) => "broker_returned",
            Change::BrokerAddressChanged { .. } => "broker_address_changed",
            Change::BrokerForgotten(_) => "broker_forgotten",
            Change::PartitionsAdded { .. } => "partitions_added",
            Change::LeaderChanged { .. } => "leader_changed",
        }
    }
}

fn describe_leader(leader: Option<i32>) -> String {
    leader.map_or_else(|| "none".to_string(), |id| id.to_string())
}

fn describe_broker(broker: &Broker) -> String {
    match &broker.rack {
        Some(rack) => format!("broker {} at {} (rack {rack})", broker.id, broker.address()),
        None => format!("broker {} at {}", broker.id, broker.address()),
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::ClusterIdChanged { from, to } => {
                write!(f, "cluster id changed from {from} to {to}")
            }
            Change::BrokerAdded(broker) => write!(f, "{} added", describe_broker(broker)),
            Change::BrokerRemoved(broker) => {
                write!(f, "{} is missing from metadata", describe_broker(broker))
            }
            Change::BrokerReturned(broker) => write!(f, "{} is back", describe_broker(broker)),
            Change::BrokerAddressChanged { from, to } => write!(
                f,
                "broker {} moved from {} to {}",
                to.id,
                describe_broker(from),
                describe_broker(to)
            ),
            Change::BrokerForgotten(broker) => write!(
                f,
                "{} has been missing longer than the retention; its series are removed",
                describe_broker(broker)
            ),
            Change::PartitionsAdded { from, to } => {
                write!(f, "heartbeat topic partitions grew from {from} to {to}")
            }
            Change::LeaderChanged {
                partition,
                from,
                to,
            } => write!(
                f,
                "leader of partition {partition} changed from {} to {}",
                describe_leader(*from),
                describe_leader(*to)
            ),
        }
    }
}

/// Builds the next view from the previous one and a response, listing what changed.
/// Pure, so the change rules are tested without a broker.
pub fn next_snapshot(
    previous: &ClusterSnapshot,
    response: MetadataResponse,
    racks: &BTreeMap<i32, String>,
    now: Instant,
    missing_retention: Duration,
) -> (ClusterSnapshot, Vec<Change>) {
    let mut changes = Vec::new();
    let first = previous.refreshed_at.is_none();
    if let (Some(from), Some(to)) = (&previous.cluster_id, &response.cluster_id) {
        if from != to {
            changes.push(Change::ClusterIdChanged {
                from: from.clone(),
                to: to.clone(),
            });
        }
    }
    // Controller moves are not counted: KRaft clusters (Confluent Cloud among them) answer
    // Metadata with a random live broker as "controller", so it changes at every refresh.

    let mut brokers = BTreeMap::new();
    for (id, host, port) in response.brokers {
        let rack = racks.get(&id).cloned();
        let broker = Broker {
            id,
            host,
            port,
            rack,
            missing_since: None,
        };
        match previous.brokers.get(&id) {
            None if !first => changes.push(Change::BrokerAdded(broker.clone())),
            None => {}
            Some(old) if old.host != broker.host || old.port != broker.port => {
                changes.push(Change::BrokerAddressChanged {
                    from: old.clone(),
                    to: broker.clone(),
                })
            }
            Some(old) if old.missing_since.is_some() => {
                changes.push(Change::BrokerReturned(broker.clone()))
            }
            Some(_) => {}
        }
        brokers.insert(id, broker);
    }
    for (id, old) in &previous.brokers {
        if brokers.contains_key(id) {
            continue;
        }
        match old.missing_since {
            None => {
                let mut missing = old.clone();
                missing.missing_since = Some(now);
                changes.push(Change::BrokerRemoved(old.clone()));
                brokers.insert(*id, missing);
            }
            Some(since) if now.saturating_duration_since(since) >= missing_retention => {
                changes.push(Change::BrokerForgotten(old.clone()));
            }
            Some(_) => {
                brokers.insert(*id, old.clone());
            }
        }
    }

    let partitions: BTreeMap<i32, Partition> = response
        .partitions
        .into_iter()
        .map(|partition| (partition.id, partition))
        .collect();
    if !previous.partitions.is_empty() && partitions.len() > previous.partitions.len() {
        changes.push(Change::PartitionsAdded {
            from: previous.partitions.len(),
            to: partitions.len(),
        });
    }
    for (id, partition) in &partitions {
        if let Some(old) = previous.partitions.get(id) {
            if old.leader != partition.leader {
                changes.push(Change::LeaderChanged {
                    partition: *id,
                    from: old.leader,
                    to: partition.leader,
                });
            }
        }
    }

    let snapshot = ClusterSnapshot {
        cluster_id: response.cluster_id.or_else(|| previous.cluster_id.clone()),
        controller_id: response.controller_id,
        brokers,
        partitions,
        topic_error: response.topic_error,
        refreshed_at: Some(now),
    };
    (snapshot, changes)
}

/// How often racks are asked again while the cluster answers DescribeCluster (and sooner when
/// brokers change), and how long to wait before asking a cluster that did not answer.
const RACKS_REFRESH: Duration = Duration::from_secs(3600);
const RACKS_RETRY: Duration = Duration::from_secs(600);

/// Racks from DescribeCluster, looked up beside the metadata refresh (never delaying it): the
/// Metadata API librdkafka exposes has no rack, and some clusters do not serve DescribeCluster.
#[derive(Debug)]
struct RackLookup {
    racks: BTreeMap<i32, String>,
    next_due: Instant,
    in_flight: bool,
}

/// The metadata task of one cluster.
pub struct MetadataRefresher {
    shared: Arc<ClusterShared>,
    client: Arc<AdminClient<ClientLog>>,
    throttle: LogThrottle,
    reachable: AtomicBool,
    racks: Arc<Mutex<RackLookup>>,
}

impl MetadataRefresher {
    pub fn new(shared: Arc<ClusterShared>, client: Arc<AdminClient<ClientLog>>) -> Self {
        for kind in Change::KINDS {
            let labels = KindLabels {
                kind: kind.to_string(),
            };
            drop(shared.metrics.metadata_changes.get_or_create(&labels));
        }
        MetadataRefresher {
            shared,
            client,
            throttle: LogThrottle::default(),
            reachable: AtomicBool::new(false),
            racks: Arc::new(Mutex::new(RackLookup {
                racks: BTreeMap::new(),
                next_due: Instant::now(),
                in_flight: false,
            })),
        }
    }

    /// Refreshes every `check.metadata.period.seconds`, or at once when asked to, until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
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
        // The last holder of the admin client destroys it, which blocks: not on a worker.
        let client = self.client;
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    }

    /// One refresh: request, compare, publish, record.
    pub async fn refresh(&self) {
        let client = self.client.clone();
        let topic = self.shared.config.admin.heartbeat_topic.clone();
        let timeout = self.shared.config.admin.check_metadata_timeout;
        let result = tokio::task::spawn_blocking(move || fetch_metadata(&client, &topic, timeout))
            .await
            .map_err(|error| MetadataError::Task(error.to_string()))
            .and_then(|result| result.map_err(MetadataError::from));
        match result {
            Ok(response) => self.apply(response),
            Err(error) => self.record_failure(error),
        }
    }

    /// Starts a DescribeCluster lookup on a blocking thread when one is due; its racks are
    /// applied by the refresh after it answers.
    fn look_up_racks(&self, brokers_changed: bool) {
        let now = Instant::now();
        {
            let mut lookup = self
                .racks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if brokers_changed {
                lookup.next_due = now;
            }
            if lookup.in_flight || now < lookup.next_due {
                return;
            }
            lookup.in_flight = true;
        }
        let client = self.client.clone();
        let racks = self.racks.clone();
        let shared = self.shared.clone();
        let timeout = self.shared.config.admin.check_metadata_timeout;
        tokio::task::spawn_blocking(move || {
            let result = describe_cluster(client.inner(), timeout);
            let mut lookup = racks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            lookup.in_flight = false;
            match result {
                Ok(description) => {
                    let found: BTreeMap<i32, String> = description
                        .nodes
                        .into_iter()
                        .filter_map(|node| node.rack.map(|rack| (node.id, rack)))
                        .collect();
                    lookup.next_due = Instant::now() + RACKS_REFRESH;
                    if found != lookup.racks {
                        lookup.racks = found;
                        shared.refresh_now.notify_one();
                    }
                }
                Err(error) => {
                    lookup.next_due = Instant::now() + RACKS_RETRY;
                    tracing::debug!("broker racks unknown (DescribeCluster): {error}");
                }
            }
        });
    }

    fn record_failure(&self, error: MetadataError) {
        let metrics = &self.shared.metrics;
        metrics.up.set(0);
        metrics.metadata_refresh_failures.inc();
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
        let racks = self
            .racks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .racks
            .clone();
        let (snapshot, changes) = next_snapshot(&previous, response, &racks, now, retention);
        {
            let mut facts = self.shared.status.lock();
            facts.metadata_error = None;
            facts.client_error = None;
        }
        self.throttle.reset("failing");
        let racks_changed = snapshot.brokers.iter().any(|(id, broker)| {
            previous
                .brokers
                .get(id)
                .is_some_and(|old| old.rack != broker.rack)
        });
        if !self.reachable.swap(true, Ordering::Relaxed) {
            let verb = if previous.refreshed_at.is_none() {
                "connected to"
            } else {
                "reconnected to"
            };
            log_cluster(&snapshot, verb);
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
        self.look_up_racks(brokers_changed);
        for change in &changes {
            tracing::warn!(kind = change.kind(), "{change}");
        }
        self.record(&previous, &snapshot, &changes);
        self.shared.view.send_replace(Arc::new(snapshot));
    }

    fn record(&self, previous: &ClusterSnapshot, snapshot: &ClusterSnapshot, changes: &[Change]) {
        let metrics = &self.shared.metrics;
        metrics.up.set(1);
        metrics.metadata_last_refresh.set(unix_seconds());
        metrics
            .brokers
            .set(snapshot.listed_brokers().count() as i64);
        metrics
            .controller_id
            .set(snapshot.controller_id.map_or(-1, i64::from));
        for change in changes {
            metrics
                .metadata_changes
                .get_or_create(&KindLabels {
                    kind: change.kind().to_string(),
                })
                .inc();
            if let Change::BrokerForgotten(broker) = change {
                metrics.broker_info.remove(&broker_info_labels(broker));
                metrics.forget_broker(broker.id);
            }
        }
        for broker in snapshot.brokers.values() {
            if let Some(old) = previous.brokers.get(&broker.id) {
                if old.host != broker.host || old.port != broker.port || old.rack != broker.rack {
                    metrics.broker_info.remove(&broker_info_labels(old));
                }
            }
            metrics
                .broker_info
                .get_or_create(&broker_info_labels(broker))
                .set(1);
            let labels = BrokerLabels::new(broker.id);
            let missing = broker.missing_since.is_some();
            metrics
                .broker_missing
                .get_or_create(&labels)
                .set(i64::from(missing));
            if missing {
                metrics.broker_up.get_or_create(&labels).set(0);
            }
        }
        metrics
            .topic_partitions
            .set(snapshot.partitions.len() as i64);
        for (id, partition) in &snapshot.partitions {
            let leader = partition.leader.unwrap_or(NO_LEADER);
            if previous.partitions.get(id).map(|old| old.leader) != Some(partition.leader) {
                metrics.init_partition(*id, leader);
            }
            metrics
                .partition_leader
                .get_or_create(&PartitionLabels::new(*id))
                .set(i64::from(leader));
        }
    }
}

fn broker_info_labels(broker: &Broker) -> BrokerInfoLabels {
    BrokerInfoLabels {
        broker: broker.id.to_string(),
        host: broker.host.clone(),
        port: broker.port.to_string(),
        rack: broker.rack.clone().unwrap_or_default(),
    }
}

/// Logs the cluster the way the original tool did at start-up (and after an outage).
fn log_cluster(snapshot: &ClusterSnapshot, verb: &str) {
    let brokers: Vec<String> = snapshot.listed_brokers().map(describe_broker).collect();
    tracing::info!(
        cluster_id = snapshot.cluster_id_label(),
        controller = describe_leader(snapshot.controller_id),
        partitions = snapshot.partitions.len(),
        "{verb} cluster {} with {} broker(s): {}",
        snapshot.cluster_id_label(),
        brokers.len(),
        brokers.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(brokers: &[(i32, &str)], leaders: &[Option<i32>]) -> MetadataResponse {
        MetadataResponse {
            cluster_id: Some("c1".to_string()),
            controller_id: Some(1),
            brokers: brokers
                .iter()
                .map(|(id, host)| (*id, host.to_string(), 9092))
                .collect(),
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(id, leader)| Partition {
                    id: id as i32,
                    replicas: 1,
                    leader: *leader,
                })
                .collect(),
            topic_error: None,
        }
    }

    fn kinds(changes: &[Change]) -> Vec<&'static str> {
        changes.iter().map(Change::kind).collect()
    }

    #[test]
    fn first_view_has_no_changes() {
        let now = Instant::now();
        let (snapshot, changes) = next_snapshot(
            &ClusterSnapshot::default(),
            response(&[(1, "a"), (2, "b")], &[Some(1), Some(2)]),
            &BTreeMap::new(),
            now,
            Duration::from_secs(3600),
        );
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(snapshot.listed_brokers().count(), 2);
        assert_eq!(snapshot.leader_of(1), 2);
        assert_eq!(snapshot.cluster_id_label(), "c1");
    }

    #[test]
    fn vanished_broker_is_missing_until_retention_ends() {
        let retention = Duration::from_secs(60);
        let start = Instant::now();
        let (first, _) = next_snapshot(
            &ClusterSnapshot::default(),
            response(&[(1, "a"), (2, "b")], &[Some(1), Some(2)]),
            &BTreeMap::new(),
            start,
            retention,
        );
        let (second, changes) = next_snapshot(
            &first,
            response(&[(1, "a")], &[Some(1), Some(1)]),
            &BTreeMap::new(),
            start,
            retention,
        );
        assert_eq!(kinds(&changes), vec!["broker_removed", "leader_changed"]);
        assert!(second.brokers[&2].missing_since.is_some());
        assert_eq!(second.listed_brokers().count(), 1);

        let (third, changes) = next_snapshot(
            &second,
            response(&[(1, "a")], &[Some(1), Some(1)]),
            &BTreeMap::new(),
            start + Duration::from_secs(30),
            retention,
        );
        assert!(changes.is_empty());
        assert!(
            third.brokers.contains_key(&2),
            "still reported within the retention"
        );

        let (fourth, changes) = next_snapshot(
            &third,
            response(&[(1, "a")], &[Some(1), Some(1)]),
            &BTreeMap::new(),
            start + retention,
            retention,
        );
        assert_eq!(kinds(&changes), vec!["broker_forgotten"]);
        assert!(!fourth.brokers.contains_key(&2));
    }

    #[test]
    fn returning_moved_and_added_brokers_are_changes() {
        let retention = Duration::from_secs(60);
        let now = Instant::now();
        let (first, _) = next_snapshot(
            &ClusterSnapshot::default(),
            response(&[(1, "a"), (2, "b")], &[Some(1)]),
            &BTreeMap::new(),
            now,
            retention,
        );
        let (second, _) = next_snapshot(
            &first,
            response(&[(1, "a")], &[Some(1)]),
            &BTreeMap::new(),
            now,
            retention,
        );
        let (_, changes) = next_snapshot(
            &second,
            response(&[(1, "moved"), (2, "b"), (3, "c")], &[Some(1), Some(3)]),
            &BTreeMap::new(),
            now,
            retention,
        );
        assert_eq!(
            kinds(&changes),
            vec![
                "broker_address_changed",
                "broker_returned",
                "broker_added",
                "partitions_added"
            ]
        );
    }

    #[test]
    fn racks_come_from_the_lookup() {
        let racks = BTreeMap::from([(1, "eu-west-1a".to_string())]);
        let (snapshot, changes) = next_snapshot(
            &ClusterSnapshot::default(),
            response(&[(1, "a"), (2, "b")], &[Some(1)]),
            &racks,
            Instant::now(),
            Duration::from_secs(60),
        );
        assert!(changes.is_empty());
        assert_eq!(snapshot.brokers[&1].rack.as_deref(), Some("eu-west-1a"));
        assert_eq!(snapshot.brokers[&2].rack, None);
    }
}
