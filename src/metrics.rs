//! Every metric cc-heartbeat exports, declared in one place with its help text and unit.
//!
//! Tasks record into a [`Metrics`] value (cheap handles around atomics); `/metrics` encodes it
//! from memory. The `cluster` (configured name) and `cluster_id` labels are added to every
//! series at encoding time, the id from the cluster's latest metadata, so a series never needs
//! relabelling when the id becomes known (before the cluster has answered once it reads
//! [`UNKNOWN_CLUSTER_ID`]). [`merge_families`] joins several clusters into one exposition.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::client_stats::ClientBrokerMetrics;
use crate::config::AdminSettings;
use crate::connectivity::Phase;
use crate::recent::{QuantileFamily, RecentLatencies};

/// `cluster_id` label value before the cluster has been reached.
pub const UNKNOWN_CLUSTER_ID: &str = "unknown";

/// Latency bucket bounds in seconds (about 1 ms up); cut at each histogram's deadline.
const LATENCY_BUCKETS: [f64; 21] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75,
    1.0, 1.5, 2.5, 5.0, 10.0, 20.0,
];

/// Buckets from 1 ms to `deadline` (inclusive), the last one being the deadline itself.
pub fn buckets_up_to(deadline: Duration) -> Vec<f64> {
    let deadline = deadline.as_secs_f64();
    let mut buckets: Vec<f64> = LATENCY_BUCKETS
        .iter()
        .copied()
        .filter(|bound| *bound < deadline)
        .collect();
    buckets.push(deadline);
    buckets
}

/// Builds histograms with fixed buckets inside a [`Family`].
#[derive(Clone, Debug)]
pub struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type HistogramFamily<L> = Family<L, Histogram, Buckets>;

/// A latency: a histogram to aggregate and alert on, and exact quantiles of the recent window.
#[derive(Clone, Debug)]
pub struct Latency {
    pub histogram: HistogramFamily<PartitionLeaderLabels>,
    pub recent: QuantileFamily,
    samples: Arc<RecentLatencies>,
}

impl Latency {
    fn new(buckets: Buckets, window: Duration) -> Self {
        Latency {
            histogram: Family::new_with_constructor(buckets),
            recent: QuantileFamily::default(),
            samples: Arc::new(RecentLatencies::new(window)),
        }
    }

    /// Records one latency of `partition` led by `leader`.
    pub fn observe(&self, partition: i32, leader: i32, latency: Duration, now: Instant) {
        let labels = PartitionLeaderLabels::new(partition, leader);
        let seconds = latency.as_secs_f64();
        self.histogram.get_or_create(&labels).observe(seconds);
        self.samples.record(&labels, seconds, now);
    }

    fn publish(&self, now: Instant) {
        self.samples.publish(&self.recent, now);
    }
}

/// Labels of a per-broker series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabels {
    pub broker: String,
}

impl BrokerLabels {
    pub fn new(broker: i32) -> Self {
        BrokerLabels {
            broker: broker.to_string(),
        }
    }
}

/// Labels of `heartbeat_broker_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerInfoLabels {
    pub broker: String,
    pub host: String,
    pub port: String,
    pub rack: String,
}

/// Labels of a per-broker failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerReasonLabels {
    pub broker: String,
    pub phase: String,
    pub reason: String,
}

/// Labels of a per-broker, per-phase series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerPhaseLabels {
    pub broker: String,
    pub phase: String,
}

/// Labels of a per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: String,
}

impl PartitionLabels {
    pub fn new(partition: i32) -> Self {
        PartitionLabels {
            partition: partition.to_string(),
        }
    }
}

/// Labels of a per-partition series that also names the partition's leader at the time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLeaderLabels {
    pub partition: String,
    pub leader: String,
}

impl PartitionLeaderLabels {
    pub fn new(partition: i32, leader: i32) -> Self {
        PartitionLeaderLabels {
            partition: partition.to_string(),
            leader: leader.to_string(),
        }
    }
}

/// Labels of `heartbeat_produce_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProduceFailureLabels {
    pub partition: String,
    pub leader: String,
    pub reason: String,
}

/// Labels of a series broken down by kind only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Labels of a per-consumer-group series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

/// Labels of a per-group, per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

/// Labels of a per-partition series of any topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct TopicPartitionLabels {
    pub topic: String,
    pub partition: String,
}

/// Labels of `heartbeat_consumer_group_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupStateLabels {
    pub group: String,
    pub state: String,
}

/// Labels of `heartbeat_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    /// Not `instance`: Prometheus gives that name to the scrape target.
    pub instance_id: String,
}

/// All metrics of one monitored cluster.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub build_info: Family<BuildLabels, Gauge>,
    pub up: Gauge,
    pub brokers: Gauge,
    pub controller_id: Gauge,
    pub broker_info: Family<BrokerInfoLabels, Gauge>,
    pub broker_up: Family<BrokerLabels, Gauge>,
    pub broker_missing: Family<BrokerLabels, Gauge>,
    pub metadata_refresh_failures: Counter,
    pub metadata_changes: Family<KindLabels, Counter>,
    pub metadata_last_refresh: Gauge<f64, AtomicU64>,
    pub topic_partitions: Gauge,
    pub topic_ok: Gauge,
    pub partition_leader: Family<PartitionLabels, Gauge>,
    pub connection_checks: Family<BrokerLabels, Counter>,
    pub connection_failures: Family<BrokerReasonLabels, Counter>,
    pub connection_seconds: HistogramFamily<BrokerLabels>,
    pub connection_phase_seconds: HistogramFamily<BrokerPhaseLabels>,
    pub certificate_expiry: Family<BrokerLabels, Gauge<f64, AtomicU64>>,
    pub messages_produced: Family<PartitionLabels, Counter>,
    pub produce_failures: Family<ProduceFailureLabels, Counter>,
    pub produce_latency: Latency,
    pub messages_consumed: Family<PartitionLabels, Counter>,
    pub end_to_end_latency: Latency,
    pub messages_lost: Family<PartitionLeaderLabels, Counter>,
    pub messages_duplicated: Family<PartitionLabels, Counter>,
    pub messages_skipped: Family<KindLabels, Counter>,
    pub messages_in_flight: Gauge,
    pub beat_delay: Histogram,
    pub beats_missed: Counter,
    pub client_brokers: ClientBrokerMetrics,
    pub cluster_topics: Gauge,
    pub cluster_partitions: Gauge,
    pub cluster_under_replicated_partitions: Gauge,
    pub cluster_offline_partitions: Gauge,
    pub cluster_scan_duration: Gauge<f64, AtomicU64>,
    pub cluster_scan_failures: Family<KindLabels, Counter>,
    pub consumer_groups: Gauge,
    pub consumer_groups_by_state: Family<KindLabels, Gauge>,
    pub consumer_group_state: Family<GroupStateLabels, Gauge>,
    pub consumer_group_members: Family<GroupLabels, Gauge>,
    pub consumer_group_committed_offset: Family<GroupPartitionLabels, Gauge>,
    pub consumer_group_lag: Family<GroupPartitionLabels, Gauge>,
    pub consumer_group_lag_seconds: Family<GroupPartitionLabels, Gauge<f64, AtomicU64>>,
    pub consumer_group_total_lag: Family<GroupLabels, Gauge>,
    pub consumer_group_max_lag: Family<GroupLabels, Gauge>,
    pub consumer_group_max_lag_seconds: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    pub consumer_group_offset_races: Counter,
    pub consumer_group_lag_probes: Family<KindLabels, Counter>,
    pub partition_log_end_offset: Family<TopicPartitionLabels, Gauge>,
}

impl Metrics {
    /// Metrics whose latency histograms end at `lost_after` and connection histograms at
    /// `connect_timeout`.
    pub fn new(admin: &AdminSettings, instance: &str) -> Self {
        let latency = Buckets(buckets_up_to(admin.lost_after).into());
        let connect = Buckets(buckets_up_to(admin.check_connectivity_timeout).into());
        let metrics = Metrics {
            build_info: Family::default(),
            up: Gauge::default(),
            brokers: Gauge::default(),
            controller_id: Gauge::default(),
            broker_info: Family::default(),
            broker_up: Family::default(),
            broker_missing: Family::default(),
            metadata_refresh_failures: Counter::default(),
            metadata_changes: Family::default(),
            metadata_last_refresh: Gauge::default(),
            topic_partitions: Gauge::default(),
            topic_ok: Gauge::default(),
            partition_leader: Family::default(),
            connection_checks: Family::default(),
            connection_failures: Family::default(),
            connection_seconds: Family::new_with_constructor(connect.clone()),
            connection_phase_seconds: Family::new_with_constructor(connect),
            certificate_expiry: Family::default(),
            messages_produced: Family::default(),
            produce_failures: Family::default(),
            produce_latency: Latency::new(latency.clone(), admin.latency_window),
            messages_consumed: Family::default(),
            end_to_end_latency: Latency::new(latency, admin.latency_window),
            messages_lost: Family::default(),
            messages_duplicated: Family::default(),
            messages_skipped: Family::default(),
            messages_in_flight: Gauge::default(),
            beat_delay: Histogram::new(buckets_up_to(Duration::from_secs(1))),
            beats_missed: Counter::default(),
            client_brokers: ClientBrokerMetrics::default(),
            cluster_topics: Gauge::default(),
            cluster_partitions: Gauge::default(),
            cluster_under_replicated_partitions: Gauge::default(),
            cluster_offline_partitions: Gauge::default(),
            cluster_scan_duration: Gauge::default(),
            cluster_scan_failures: Family::default(),
            consumer_groups: Gauge::default(),
            consumer_groups_by_state: Family::default(),
            consumer_group_state: Family::default(),
            consumer_group_members: Family::default(),
            consumer_group_committed_offset: Family::default(),
            consumer_group_lag: Family::default(),
            consumer_group_lag_seconds: Family::default(),
            consumer_group_total_lag: Family::default(),
            consumer_group_max_lag: Family::default(),
            consumer_group_max_lag_seconds: Family::default(),
            consumer_group_offset_races: Counter::default(),
            consumer_group_lag_probes: Family::default(),
            partition_log_end_offset: Family::default(),
        };
        metrics
            .build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                instance_id: instance.to_string(),
            })
            .set(1);
        metrics.controller_id.set(-1);
        metrics
    }

    /// Creates a broker's counters at zero (under its `broker` label), so dashboards and
    /// alerts see 0, not no data. Idempotent.
    pub fn init_broker_label(&self, broker: &str, tls: bool) {
        drop(self.connection_checks.get_or_create(&BrokerLabels {
            broker: broker.to_string(),
        }));
        for phase in Phase::ALL
            .into_iter()
            .filter(|phase| tls || *phase != Phase::Tls)
        {
            for reason in phase.reasons() {
                drop(self.connection_failures.get_or_create(&BrokerReasonLabels {
                    broker: broker.to_string(),
                    phase: phase.as_str().to_string(),
                    reason: reason.as_str().to_string(),
                }));
            }
        }
    }

    /// Creates a partition's counters at zero for its current leader.
    pub fn init_partition(&self, partition: i32, leader: i32) {
        let labels = PartitionLabels::new(partition);
        drop(self.messages_produced.get_or_create(&labels));
        drop(self.messages_consumed.get_or_create(&labels));
        drop(self.messages_duplicated.get_or_create(&labels));
        drop(
            self.messages_lost
                .get_or_create(&PartitionLeaderLabels::new(partition, leader)),
        );
        for reason in ["timed_out", "rejected"] {
            drop(self.produce_failures.get_or_create(&ProduceFailureLabels {
                partition: labels.partition.clone(),
                leader: leader.to_string(),
                reason: reason.to_string(),
            }));
        }
    }

    /// Removes every series of a broker that has been gone longer than the retention.
    pub fn forget_broker(&self, broker: i32) {
        self.forget_broker_label(&broker.to_string());
    }

    /// Removes every per-broker series under this `broker` label.
    pub fn forget_broker_label(&self, broker: &str) {
        let labels = BrokerLabels {
            broker: broker.to_string(),
        };
        self.broker_up.remove(&labels);
        self.broker_missing.remove(&labels);
        self.connection_checks.remove(&labels);
        self.connection_seconds.remove(&labels);
        self.certificate_expiry.remove(&labels);
        self.client_brokers.forget(broker);
        for phase in Phase::ALL {
            self.connection_phase_seconds.remove(&BrokerPhaseLabels {
                broker: broker.to_string(),
                phase: phase.as_str().to_string(),
            });
            for reason in phase.reasons() {
                self.connection_failures.remove(&BrokerReasonLabels {
                    broker: broker.to_string(),
                    phase: phase.as_str().to_string(),
                    reason: reason.as_str().to_string(),
                });
            }
        }
    }

    /// Appends the OpenMetrics text of these metrics, every series labelled with the
    /// configured `cluster` name and the `cluster_id`, without the final `# EOF`.
    pub fn encode(&self, out: &mut String, cluster: &str, cluster_id: &str) -> std::fmt::Result {
        let now = Instant::now();
        self.produce_latency.publish(now);
        self.end_to_end_latency.publish(now);
        let labels = [
            (Cow::Borrowed("cluster"), Cow::Owned(cluster.to_string())),
            (
                Cow::Borrowed("cluster_id"),
                Cow::Owned(cluster_id.to_string()),
            ),
        ];
        let mut registry = Registry::with_prefix_and_labels("heartbeat", labels.into_iter());
        self.register(&mut registry);
        prometheus_client::encoding::text::encode_registry(out, &registry)
    }

    fn register(&self, registry: &mut Registry) {
        let m = self.clone();
        registry.register(
            "build_info",
            "Always 1; labelled with the version and this running instance's id (written into every heartbeat)",
            m.build_info,
        );
        registry.register(
            "up",
            "1 when the last metadata request to the cluster succeeded, else 0",
            m.up,
        );
        registry.register(
            "brokers",
            "Brokers listed in the latest metadata",
            m.brokers,
        );
        registry.register(
            "controller_id",
            "Broker id of the active controller (-1 when unknown)",
            m.controller_id,
        );
        registry.register(
            "broker_info",
            "Always 1 for each known broker; labelled with its advertised host, port and rack",
            m.broker_info,
        );
        registry.register(
            "broker_up",
            "1 when the broker is in the latest metadata and its last connection check succeeded",
            m.broker_up,
        );
        registry.register(
            "broker_missing",
            "1 when the broker was seen before but is absent from the latest metadata",
            m.broker_missing,
        );
        registry.register(
            "metadata_refresh_failures",
            "Metadata requests that failed or timed out",
            m.metadata_refresh_failures,
        );
        registry.register(
            "metadata_changes",
            "Changes seen in cluster metadata, by kind",
            m.metadata_changes,
        );
        registry.register_with_unit(
            "metadata_last_refresh_timestamp",
            "Unix time of the last successful metadata refresh",
            Unit::Seconds,
            m.metadata_last_refresh,
        );
        registry.register(
            "topic_partitions",
            "Partitions of the heartbeat topic in the latest metadata",
            m.topic_partitions,
        );
        registry.register(
            "topic_ok",
            "1 when the heartbeat topic exists with at least one partition per broker",
            m.topic_ok,
        );
        registry.register(
            "partition_leader",
            "Broker id leading each heartbeat topic partition (-1 when leaderless)",
            m.partition_leader,
        );
        registry.register(
            "connection_checks",
            "Connection checks made to each broker",
            m.connection_checks,
        );
        registry.register(
            "connection_failures",
            "Failed connection checks, by broker, phase and reason",
            m.connection_failures,
        );
        registry.register_with_unit(
            "connection",
            "Time to an established connection: name resolution, TCP and (with TLS) TLS handshakes",
            Unit::Seconds,
            m.connection_seconds,
        );
        registry.register_with_unit(
            "connection_phase",
            "Time of each phase of a successful connection check: dns, tcp, tls",
            Unit::Seconds,
            m.connection_phase_seconds,
        );
        registry.register_with_unit(
            "broker_certificate_expiry_timestamp",
            "Unix time at which the broker's TLS certificate expires",
            Unit::Seconds,
            m.certificate_expiry,
        );
        registry.register(
            "messages_produced",
            "Heartbeats acknowledged by the partition leader",
            m.messages_produced,
        );
        registry.register(
            "produce_failures",
            "Heartbeats the producer failed to deliver, by partition, leader and reason",
            m.produce_failures,
        );
        registry.register_with_unit(
            "produce_latency",
            "Time from sending a heartbeat to the leader's acknowledgement",
            Unit::Seconds,
            m.produce_latency.histogram,
        );
        registry.register_with_unit(
            "produce_latency_recent",
            "Exact quantiles of the acknowledgement latency over the last latency.window.seconds",
            Unit::Seconds,
            m.produce_latency.recent,
        );
        registry.register(
            "messages_consumed",
            "Heartbeats of this instance read back from the topic",
            m.messages_consumed,
        );
        registry.register_with_unit(
            "end_to_end_latency",
            "Time from sending a heartbeat to reading it back",
            Unit::Seconds,
            m.end_to_end_latency.histogram,
        );
        registry.register_with_unit(
            "end_to_end_latency_recent",
            "Exact quantiles of the end-to-end latency over the last latency.window.seconds",
            Unit::Seconds,
            m.end_to_end_latency.recent,
        );
        registry.register(
            "messages_lost",
            "Acknowledged or pending heartbeats not read back within the deadline",
            m.messages_lost,
        );
        registry.register(
            "messages_duplicated",
            "Heartbeats of this instance read back more than once",
            m.messages_duplicated,
        );
        registry.register(
            "messages_skipped",
            "Records on the heartbeat topic that were not measured, by kind",
            m.messages_skipped,
        );
        registry.register_with_unit(
            "beat_delay",
            "How late each beat started against its slot on the produce grid",
            Unit::Seconds,
            m.beat_delay,
        );
        registry.register(
            "beats_missed",
            "Beats skipped because an earlier one started a whole period late",
            m.beats_missed,
        );
        registry.register(
            "cluster_topics",
            "Topics in the cluster (internal ones included), at the last scan",
            m.cluster_topics,
        );
        registry.register(
            "cluster_partitions",
            "Partitions of all topics, at the last scan",
            m.cluster_partitions,
        );
        registry.register(
            "cluster_under_replicated_partitions",
            "Partitions with fewer in-sync replicas than replicas, at the last scan",
            m.cluster_under_replicated_partitions,
        );
        registry.register(
            "cluster_offline_partitions",
            "Partitions without a leader, at the last scan",
            m.cluster_offline_partitions,
        );
        registry.register_with_unit(
            "cluster_scan_duration",
            "How long the last cluster scan took",
            Unit::Seconds,
            m.cluster_scan_duration,
        );
        registry.register(
            "cluster_scan_failures",
            "Cluster scans that failed or timed out, by what was scanned (kind: topics, groups)",
            m.cluster_scan_failures,
        );
        registry.register(
            "consumer_groups",
            "Consumer groups reported (listed within consumer.group.allow/deny, or named in consumer.group.names), at the last scan",
            m.consumer_groups,
        );
        registry.register(
            "consumer_groups_by_state",
            "Consumer groups by state (kind: Stable, Empty, PreparingRebalance, …; Unknown when they could not be listed)",
            m.consumer_groups_by_state,
        );
        registry.register(
            "consumer_group_state",
            "1 for each consumer group's current state; idle and empty groups keep theirs",
            m.consumer_group_state,
        );
        registry.register(
            "consumer_group_members",
            "Members of each consumer group",
            m.consumer_group_members,
        );
        registry.register(
            "consumer_group_committed_offset",
            "Each group's committed offset per partition (within consumer.group.topic.allow/deny)",
            m.consumer_group_committed_offset,
        );
        registry.register(
            "consumer_group_lag",
            "Messages between each group's committed offset and the log end offset, never negative",
            m.consumer_group_lag,
        );
        registry.register_with_unit(
            "consumer_group_lag",
            "Age of the oldest unconsumed record (the one at the committed offset) per partition; 0 without lag",
            Unit::Seconds,
            m.consumer_group_lag_seconds,
        );
        registry.register(
            "consumer_group_total_lag",
            "Messages behind, summed over each group's partitions",
            m.consumer_group_total_lag,
        );
        registry.register(
            "consumer_group_max_lag",
            "Messages behind on each group's partition furthest behind",
            m.consumer_group_max_lag,
        );
        registry.register_with_unit(
            "consumer_group_max_lag",
            "Age of each group's oldest unconsumed record over its partitions",
            Unit::Seconds,
            m.consumer_group_max_lag_seconds,
        );
        registry.register(
            "consumer_group_offset_races",
            "Committed offsets found past the log end offset (read at another instant): lag clamped to 0",
            m.consumer_group_offset_races,
        );
        registry.register(
            "consumer_group_lag_probes",
            "Partitions whose oldest unconsumed record was looked up for lag in seconds, by outcome (kind: read, cached, no_record, timed_out, failed)",
            m.consumer_group_lag_probes,
        );
        registry.register(
            "partition_log_end_offset",
            "Log end offset (high watermark) of each partition some reported group has committed on",
            m.partition_log_end_offset,
        );
        let client = m.client_brokers;
        registry.register(
            "client_broker_state",
            "1 for the producer client's current connection state of each broker (librdkafka: INIT, DOWN, CONNECT, AUTH, APIVERSION_QUERY, AUTH_HANDSHAKE, UP, UPDATE)",
            client.state,
        );
        registry.register(
            "client_broker_connects",
            "Connections the producer client opened to each broker",
            client.connects,
        );
        registry.register(
            "client_broker_disconnects",
            "Connections to each broker the producer client lost",
            client.disconnects,
        );
        registry.register(
            "client_broker_request_timeouts",
            "Requests of the producer client to each broker that timed out",
            client.request_timeouts,
        );
        registry.register_with_unit(
            "client_broker_rtt",
            "Producer request round-trip time quantiles per broker over the last statistics interval (windowed)",
            Unit::Seconds,
            client.rtt,
        );
        registry.register(
            "messages_in_flight",
            "Heartbeats sent and not yet read back, failed or lost",
            m.messages_in_flight,
        );
    }
}

/// Joins the expositions of several clusters into one: each metric family's `# HELP`,
/// `# TYPE` and `# UNIT` lines once, followed by the samples of every cluster, in first-seen
/// family order (OpenMetrics allows a family only once).
pub fn merge_families(expositions: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: std::collections::HashMap<String, (String, String)> = Default::default();
    for exposition in expositions {
        let mut current: Option<String> = None;
        for line in exposition.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                let entry = families.entry(name.clone()).or_insert_with(|| {
                    order.push(name.clone());
                    (String::new(), String::new())
                });
                // The descriptor is taken from the first cluster only.
                if entry.0.is_empty() {
                    entry.0.push_str(line);
                    entry.0.push('\n');
                    current = Some(name);
                } else {
                    current = Some(format!("{name}\u{0}samples"));
                }
                continue;
            }
            let Some(name) = current.as_deref() else {
                continue;
            };
            let (name, descriptor_open) = match name.strip_suffix("\u{0}samples") {
                Some(name) => (name, false),
                None => (name, true),
            };
            let Some(entry) = families.get_mut(name) else {
                continue;
            };
            if line.starts_with("# ") {
                if descriptor_open {
                    entry.0.push_str(line);
                    entry.0.push('\n');
                }
            } else {
                entry.1.push_str(line);
                entry.1.push('\n');
            }
        }
    }
    let mut out = String::new();
    for name in order {
        if let Some((descriptor, samples)) = families.get(&name) {
            out.push_str(descriptor);
            out.push_str(samples);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_end_at_the_deadline() {
        assert_eq!(buckets_up_to(Duration::from_secs(20)).last(), Some(&20.0));
        assert_eq!(buckets_up_to(Duration::from_secs(20)).first(), Some(&0.001));
        let short = buckets_up_to(Duration::from_secs(5));
        assert_eq!(short.last(), Some(&5.0));
        assert_eq!(short.iter().filter(|b| **b == 5.0).count(), 1);
    }

    #[test]
    fn every_series_carries_the_cluster_id() {
        let config =
            crate::config::Config::from_ini("", std::path::Path::new("t.ini"), std::iter::empty())
                .unwrap();
        let metrics = Metrics::new(&config.admin, "i");
        metrics
            .messages_produced
            .get_or_create(&PartitionLabels::new(0))
            .inc();
        metrics
            .produce_latency
            .observe(0, 1, Duration::from_millis(4), Instant::now());
        let mut out = String::new();
        metrics.encode(&mut out, "prod", "abc").unwrap();
        for line in out.lines().filter(|line| !line.starts_with('#')) {
            assert!(line.contains("cluster_id=\"abc\""), "{line}");
            assert!(line.contains("cluster=\"prod\""), "{line}");
        }
        assert!(out.contains("heartbeat_messages_produced_total{"));
        assert!(out.contains("# TYPE heartbeat_produce_latency_seconds histogram"));
        assert!(!out.contains("# EOF"));
    }

    #[test]
    fn clusters_share_each_family_once() {
        let config =
            crate::config::Config::from_ini("", std::path::Path::new("t.ini"), std::iter::empty())
                .unwrap();
        let first = Metrics::new(&config.admin, "a");
        let second = Metrics::new(&config.admin, "b");
        first
            .messages_produced
            .get_or_create(&PartitionLabels::new(0))
            .inc();
        second
            .messages_produced
            .get_or_create(&PartitionLabels::new(0))
            .inc_by(2);
        let mut one = String::new();
        let mut two = String::new();
        first.encode(&mut one, "east", "id1").unwrap();
        second.encode(&mut two, "west", "id2").unwrap();
        let merged = merge_families(&[one, two]);
        assert_eq!(
            merged
                .matches("# TYPE heartbeat_messages_produced counter")
                .count(),
            1
        );
        assert!(merged.contains("heartbeat_messages_produced_total{cluster=\"east\",cluster_id=\"id1\",partition=\"0\"} 1"), "{merged}");
        assert!(merged.contains("heartbeat_messages_produced_total{cluster=\"west\",cluster_id=\"id2\",partition=\"0\"} 2"), "{merged}");
        let help = merged.find("# HELP heartbeat_messages_produced ").unwrap();
        let east = merged
            .find("cluster=\"east\",cluster_id=\"id1\",partition")
            .unwrap();
        let west = merged
            .find("cluster=\"west\",cluster_id=\"id2\",partition")
            .unwrap();
        assert!(
            help < east && east < west,
            "descriptor first, then both clusters' samples"
        );
    }
}
