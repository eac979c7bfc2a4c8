//! The metadata task's series: whether the cluster answers, its brokers and controller, the
//! heartbeat topic's partitions and leaders, and every change seen.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::change::Change;
use crate::clock::unix_seconds;
use crate::cluster::{Broker, ClusterSnapshot, NO_LEADER};
use crate::metrics::labels::{BrokerLabels, KindLabels, PartitionLabels};
use crate::metrics::Families;

/// Labels of `heartbeat_broker_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerInfoLabels {
    broker: String,
    host: String,
    port: String,
    rack: String,
}

impl BrokerInfoLabels {
    fn of(broker: &Broker) -> Self {
        BrokerInfoLabels {
            broker: broker.id.to_string(),
            host: broker.host.clone(),
            port: broker.port.to_string(),
            rack: broker.rack.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct MetadataMetrics {
    up: Gauge,
    brokers: Gauge,
    controller_id: Gauge,
    broker_info: Family<BrokerInfoLabels, Gauge>,
    broker_missing: Family<BrokerLabels, Gauge>,
    refresh_failures: Counter,
    changes: Family<KindLabels, Counter>,
    last_refresh: Gauge<f64, AtomicU64>,
    topic_partitions: Gauge,
    partition_leader: Family<PartitionLabels, Gauge>,
    partitions_led: Family<BrokerLabels, Gauge>,
    brokers_without_leadership: Gauge,
}

impl MetadataMetrics {
    /// Every change kind at zero (but the cluster id changes seen before these tasks, which
    /// started afresh because of them), the controller unknown.
    pub(super) fn new(cluster_id_changes: u64) -> Self {
        let metrics = MetadataMetrics::default();
        for kind in Change::KINDS {
            drop(metrics.changes.get_or_create(&KindLabels::new(kind)));
        }
        metrics
            .changes
            .get_or_create(&KindLabels::new("cluster_id_changed"))
            .inc_by(cluster_id_changes);
        metrics.controller_id.set(-1);
        metrics
    }

    /// A refresh failed: the cluster is not up.
    pub(super) fn record_failure(&self) {
        self.up.set(0);
        self.refresh_failures.inc();
    }

    /// A refresh failed on its connection while the brokers answered otherwise: counted, the
    /// cluster up.
    pub(super) fn record_delayed(&self) {
        self.refresh_failures.inc();
    }

    /// A refresh succeeded with `snapshot` after `previous`, seeing `changes`.
    pub(super) fn record(
        &self,
        previous: &ClusterSnapshot,
        snapshot: &ClusterSnapshot,
        changes: &[Change],
    ) {
        self.up.set(1);
        self.last_refresh.set(unix_seconds());
        self.brokers.set(snapshot.listed_brokers().count() as i64);
        self.controller_id
            .set(snapshot.controller_id.map_or(-1, i64::from));
        for change in changes {
            self.changes
                .get_or_create(&KindLabels::new(change.kind()))
                .inc();
            if let Change::BrokerForgotten(broker) = change {
                self.broker_info.remove(&BrokerInfoLabels::of(broker));
                self.broker_missing.remove(&BrokerLabels::new(broker.id));
                self.partitions_led.remove(&BrokerLabels::new(broker.id));
            }
        }
        for broker in snapshot.brokers.values() {
            if let Some(old) = previous.brokers.get(&broker.id) {
                if old.host != broker.host || old.port != broker.port || old.rack != broker.rack {
                    self.broker_info.remove(&BrokerInfoLabels::of(old));
                }
            }
            self.broker_info
                .get_or_create(&BrokerInfoLabels::of(broker))
                .set(1);
            self.broker_missing
                .get_or_create(&BrokerLabels::new(broker.id))
                .set(i64::from(broker.missing_since.is_some()));
        }
        self.topic_partitions.set(snapshot.partitions.len() as i64);
        for (id, partition) in &snapshot.partitions {
            self.partition_leader
                .get_or_create(&PartitionLabels::new(*id))
                .set(i64::from(partition.leader.unwrap_or(NO_LEADER)));
        }
        self.record_leadership(snapshot);
    }

    /// How many heartbeat partitions each broker leads: one that leads none is not proven by
    /// the heartbeat (after a failover, leadership may stay on the others).
    fn record_leadership(&self, snapshot: &ClusterSnapshot) {
        let mut led: BTreeMap<i32, i64> = snapshot.brokers.keys().map(|id| (*id, 0)).collect();
        for leader in snapshot
            .partitions
            .values()
            .filter_map(|partition| partition.leader)
        {
            *led.entry(leader).or_default() += 1;
        }
        for (id, count) in &led {
            if snapshot.brokers.contains_key(id) {
                self.partitions_led
                    .get_or_create(&BrokerLabels::new(id))
                    .set(*count);
            }
        }
        let without = snapshot
            .listed_brokers()
            .filter(|broker| led.get(&broker.id).copied().unwrap_or(0) == 0)
            .count();
        self.brokers_without_leadership.set(without as i64);
    }
}

impl Families for MetadataMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "up",
            "1 while the cluster answers: its last metadata request succeeded, or failed on its connection only (timed out, or the connection broke) while brokers acknowledged or returned heartbeats or throttled a client; else 0",
            self.up.clone(),
        );
        registry.register(
            "brokers",
            "Brokers listed in the latest metadata",
            self.brokers.clone(),
        );
        registry.register(
            "controller_id",
            "Broker id of the active controller where it is known (Metadata named it 30 refreshes in a row, as ZooKeeper-based clusters do), else -1: KRaft clusters name a random broker, and their controllers are not reachable by clients",
            self.controller_id.clone(),
        );
        registry.register(
            "broker_info",
            "Always 1 for each known broker; labelled with its advertised host, port and rack",
            self.broker_info.clone(),
        );
        registry.register(
            "broker_missing",
            "1 when the broker was seen before but is absent from the latest metadata",
            self.broker_missing.clone(),
        );
        registry.register(
            "metadata_refresh_failures",
            "Metadata requests that failed or timed out",
            self.refresh_failures.clone(),
        );
        registry.register(
            "metadata_changes",
            "Changes seen in cluster metadata, by kind",
            self.changes.clone(),
        );
        registry.register_with_unit(
            "metadata_last_refresh_timestamp",
            "Unix time of the last successful metadata refresh",
            Unit::Seconds,
            self.last_refresh.clone(),
        );
        registry.register(
            "topic_partitions",
            "Partitions of the heartbeat topic in the latest metadata",
            self.topic_partitions.clone(),
        );
        registry.register(
            "partition_leader",
            "Broker id leading each heartbeat topic partition (-1 when leaderless)",
            self.partition_leader.clone(),
        );
        registry.register(
            "broker_partitions_led",
            "Heartbeat topic partitions each broker leads; a listed broker leading none is not proven by the heartbeat",
            self.partitions_led.clone(),
        );
        registry.register(
            "brokers_without_leadership",
            "Listed brokers that lead no heartbeat topic partition",
            self.brokers_without_leadership.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::cluster::Partition;
    use crate::metrics::encode_alone;

    #[test]
    fn a_broker_leading_no_heartbeat_partition_is_counted() {
        let broker = |id: i32, missing: bool| Broker {
            id,
            host: "h".into(),
            port: 9092,
            rack: None,
            missing_since: missing.then(Instant::now),
        };
        let partition = |id: i32, leader: i32| Partition {
            id,
            replicas: vec![1, 2, 3],
            leader: Some(leader),
        };
        let snapshot = ClusterSnapshot {
            brokers: [(1, false), (2, false), (3, false), (4, true)]
                .into_iter()
                .map(|(id, missing)| (id, broker(id, missing)))
                .collect(),
            partitions: [(0, 1), (1, 1), (2, 2)]
                .into_iter()
                .map(|(id, leader)| (id, partition(id, leader)))
                .collect(),
            refreshed_at: Some(Instant::now()),
            ..ClusterSnapshot::default()
        };
        let metrics = MetadataMetrics::new(0);
        metrics.record(&ClusterSnapshot::default(), &snapshot, &[]);
        let text = encode_alone(&metrics);
        for line in [
            "heartbeat_broker_partitions_led{broker=\"1\"} 2",
            "heartbeat_broker_partitions_led{broker=\"2\"} 1",
            "heartbeat_broker_partitions_led{broker=\"3\"} 0",
            "heartbeat_broker_partitions_led{broker=\"4\"} 0",
            "heartbeat_brokers_without_leadership 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
