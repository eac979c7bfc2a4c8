//! The heartbeat's series: what was produced, acknowledged, read back, lost, duplicated or
//! skipped, per partition (and leader), with latencies; and how well the beats keep their grid.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::outcome::{ProduceFailure, SkipKind};
use crate::cluster::{ClusterSnapshot, NO_LEADER};
use crate::config::{AdminSettings, LatencyGranularity};
use crate::metrics::labels::{KindLabels, PartitionLabels, PartitionLeaderLabels};
use crate::metrics::latency::{buckets_up_to, Latency, LatencyLabels};
use crate::metrics::Families;
use crate::sync::lock;

/// Labels of `heartbeat_produce_failures_total`: the latency series' (partition and leader, or
/// the leader only at broker granularity) and the reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ProduceFailureLabels {
    series: LatencyLabels,
    reason: &'static str,
}

impl EncodeLabelSet for ProduceFailureLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.series.encode(encoder)?;
        ("reason", self.reason).encode(encoder.encode_label())
    }
}

#[derive(Debug)]
pub(super) struct HeartbeatMetrics {
    pub(super) messages_produced: Family<PartitionLabels, Counter>,
    produce_failures: Family<ProduceFailureLabels, Counter>,
    pub(super) produce_latency: Latency,
    pub(super) messages_consumed: Family<PartitionLabels, Counter>,
    pub(super) end_to_end_latency: Latency,
    messages_lost: Family<PartitionLeaderLabels, Counter>,
    pub(super) messages_duplicated: Family<PartitionLabels, Counter>,
    /// The transaction probe's committed heartbeats read back.
    pub(super) transactional_consumed: Counter,
    messages_skipped: Family<KindLabels, Counter>,
    pub(super) messages_in_flight: Gauge,
    pub(super) beat_delay: Histogram,
    pub(super) beats_missed: Counter,
    partition_monitored: Family<PartitionLabels, Gauge>,
    /// Since when each (partition, leader) has not been the partition's leader: its series go
    /// once that is longer ago than the retention, so leadership moves add no series forever.
    retired: Mutex<BTreeMap<(i32, i32), Instant>>,
    /// `heartbeat.latency.granularity` (`None`: auto).
    latency_granularity: Option<LatencyGranularity>,
    /// Whether the transaction probe runs (its heartbeats' counter is exported only then).
    transactions: bool,
}

impl HeartbeatMetrics {
    /// Latency histograms ending at `heartbeat.lost.after.seconds`, quantiles over
    /// `latency.window.seconds`; every skip kind at zero.
    pub(super) fn new(admin: &AdminSettings) -> Self {
        let metrics = HeartbeatMetrics {
            messages_produced: Family::default(),
            produce_failures: Family::default(),
            produce_latency: Latency::new(admin.lost_after, admin.latency_window),
            messages_consumed: Family::default(),
            end_to_end_latency: Latency::new(admin.lost_after, admin.latency_window),
            messages_lost: Family::default(),
            messages_duplicated: Family::default(),
            transactional_consumed: Counter::default(),
            messages_skipped: Family::default(),
            messages_in_flight: Gauge::default(),
            beat_delay: Histogram::new(buckets_up_to(Duration::from_secs(1))),
            beats_missed: Counter::default(),
            partition_monitored: Family::default(),
            retired: Mutex::default(),
            latency_granularity: admin.latency_granularity,
            transactions: admin.probe_transactions,
        };
        for kind in SkipKind::ALL {
            drop(
                metrics
                    .messages_skipped
                    .get_or_create(&KindLabels::new(kind.as_str())),
            );
        }
        metrics
    }

    /// Creates the counters of the partitions whose leader is new in `snapshot` (all of them
    /// at first) at zero, for that leader.
    /// Follows a new metadata view: every partition's monitoring gauge, the series of a new
    /// leader created at zero, and those of a leader that has not led its partition for
    /// `retention` (as of `now`) removed.
    pub(super) fn follow_leaders(
        &self,
        previous: &ClusterSnapshot,
        snapshot: &ClusterSnapshot,
        now: Instant,
        retention: Duration,
    ) {
        // A view without the topic's partitions (it could not be read) keeps the shape.
        let changed = !snapshot.partitions.is_empty() && {
            let by_partition = LatencyGranularity::by_partition(
                self.latency_granularity,
                snapshot.partitions.len(),
            );
            self.end_to_end_latency.set_by_partition(by_partition);
            self.produce_latency.set_by_partition(by_partition)
        };
        if changed {
            // The topic crossed the size of the automatic granularity: the series of the other
            // shape go, and every partition starts again at zero in the new one.
            self.produce_latency.clear();
            self.end_to_end_latency.clear();
            self.produce_failures.clear();
        }
        // Every partition of the topic is accounted for: not monitored until beats go to it.
        for id in snapshot.partitions.keys() {
            let labels = PartitionLabels::new(*id);
            if self.partition_monitored.get(&labels).is_none() {
                self.partition_monitored.get_or_create(&labels).set(0);
            }
        }
        for id in previous.partitions.keys() {
            if !snapshot.partitions.contains_key(id) {
                self.partition_monitored.remove(&PartitionLabels::new(*id));
            }
        }
        let mut retired = lock(&self.retired);
        for (id, partition) in &snapshot.partitions {
            let leader = partition.leader.unwrap_or(NO_LEADER);
            let old = previous.partitions.get(id).map(|old| old.leader);
            if changed || old != Some(partition.leader) {
                self.init_partition(*id, leader);
                if let Some(old) = old.filter(|old| *old != partition.leader) {
                    retired.insert((*id, old.unwrap_or(NO_LEADER)), now);
                }
            }
            retired.remove(&(*id, leader));
        }
        retired.retain(|(partition, leader), since| {
            let expired = now.saturating_duration_since(*since) >= retention;
            if expired {
                self.forget_leader(*partition, *leader);
                // A broker's own latency series go once it has led nothing that long.
                if !snapshot
                    .partitions
                    .values()
                    .any(|led| led.leader.unwrap_or(NO_LEADER) == *leader)
                {
                    let labels = LatencyLabels::new(None, *leader);
                    self.produce_latency.histogram.remove(&labels);
                    self.end_to_end_latency.histogram.remove(&labels);
                    self.remove_failures(&labels);
                }
            }
            !expired
        });
    }

    /// Removes every series of `partition` labelled with `leader`.
    fn forget_leader(&self, partition: i32, leader: i32) {
        let labels = PartitionLeaderLabels::new(partition, leader);
        self.messages_lost.remove(&labels);
        let latency = LatencyLabels::new(Some(partition), leader);
        self.produce_latency.histogram.remove(&latency);
        self.end_to_end_latency.histogram.remove(&latency);
        self.remove_failures(&latency);
    }

    fn remove_failures(&self, series: &LatencyLabels) {
        for reason in ProduceFailure::ALL {
            self.produce_failures.remove(&ProduceFailureLabels {
                series: series.clone(),
                reason: reason.as_str(),
            });
        }
    }

    /// Whether heartbeats go to `partition` with its reader positioned.
    pub(super) fn set_monitored(&self, partition: i32, monitored: bool) {
        self.partition_monitored
            .get_or_create(&PartitionLabels::new(partition))
            .set(i64::from(monitored));
    }

    fn init_partition(&self, partition: i32, leader: i32) {
        let labels = PartitionLabels::new(partition);
        drop(self.messages_produced.get_or_create(&labels));
        drop(self.messages_consumed.get_or_create(&labels));
        drop(self.messages_duplicated.get_or_create(&labels));
        drop(
            self.messages_lost
                .get_or_create(&PartitionLeaderLabels::new(partition, leader)),
        );
        let series = self.produce_latency.labels(partition, leader);
        for reason in ProduceFailure::ALL {
            drop(self.produce_failures.get_or_create(&ProduceFailureLabels {
                series: series.clone(),
                reason: reason.as_str(),
            }));
        }
    }

    /// Counts a failed heartbeat of `partition` (led by `leader`): per partition, or at broker
    /// granularity per leader only (eight reasons of a thousand partitions, nearly always zero,
    /// would be a third of `/metrics`; which partitions fail still shows in their
    /// acknowledgements, which stay per partition).
    pub(super) fn count_failure(&self, partition: i32, leader: i32, reason: ProduceFailure) {
        self.produce_failures
            .get_or_create(&ProduceFailureLabels {
                series: self.produce_latency.labels(partition, leader),
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(super) fn count_lost(&self, partition: i32, leader: i32) {
        self.messages_lost
            .get_or_create(&PartitionLeaderLabels::new(partition, leader))
            .inc();
    }

    pub(super) fn count_skipped(&self, kind: SkipKind) {
        self.messages_skipped
            .get_or_create(&KindLabels::new(kind.as_str()))
            .inc();
    }
}

impl Families for HeartbeatMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "messages_produced",
            "Heartbeats acknowledged by the partition leader",
            self.messages_produced.clone(),
        );
        registry.register(
            "produce_failures",
            "Heartbeats the producer failed to deliver, by partition (at partition granularity), leader and reason",
            self.produce_failures.clone(),
        );
        registry.register_with_unit(
            "produce_latency",
            "Time from sending a heartbeat to the leader's acknowledgement",
            Unit::Seconds,
            self.produce_latency.histogram.clone(),
        );
        registry.register(
            "messages_consumed",
            "Heartbeats of this instance read back from the topic",
            self.messages_consumed.clone(),
        );
        registry.register_with_unit(
            "end_to_end_latency",
            "Time from sending a heartbeat to reading it back",
            Unit::Seconds,
            self.end_to_end_latency.histogram.clone(),
        );
        registry.register(
            "messages_lost",
            "Acknowledged or pending heartbeats not read back within the deadline",
            self.messages_lost.clone(),
        );
        registry.register(
            "messages_duplicated",
            "Heartbeats of this instance read back more than once",
            self.messages_duplicated.clone(),
        );
        if self.transactions {
            registry.register(
                "transactional_messages_consumed",
                "The transaction probe's committed heartbeats read back (not in the per-partition counts)",
                self.transactional_consumed.clone(),
            );
        }
        registry.register(
            "messages_skipped",
            "Records on the heartbeat topic that were not measured, by kind",
            self.messages_skipped.clone(),
        );
        registry.register(
            "messages_in_flight",
            "Heartbeats sent and not yet read back, failed or lost",
            self.messages_in_flight.clone(),
        );
        registry.register_with_unit(
            "beat_delay",
            "How late each beat started against its slot on the produce grid",
            Unit::Seconds,
            self.beat_delay.clone(),
        );
        registry.register(
            "partition_monitored",
            "1 while heartbeats go to the partition and its reader is positioned, else 0 (a partition the heartbeat does not measure)",
            self.partition_monitored.clone(),
        );
        registry.register(
            "beats_missed",
            "Beats skipped because an earlier one started a whole period late",
            self.beats_missed.clone(),
        );
    }

    fn refresh(&self, now: Instant) {
        self.produce_latency.publish(now);
        self.end_to_end_latency.publish(now);
    }

    fn encode_summaries(&self, out: &mut String, cluster: &str) {
        self.produce_latency.recent.encode(
            out,
            "produce_latency_recent",
            "Quantiles of the acknowledgement latency over the last latency.window.seconds (exact, or within 0.1 % at high rates), with the sum and count of that window's samples",
            cluster,
        );
        self.end_to_end_latency.recent.encode(
            out,
            "end_to_end_latency_recent",
            "Quantiles of the end-to-end latency over the last latency.window.seconds (exact, or within 0.1 % at high rates), with the sum and count of that window's samples",
            cluster,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::Partition;
    use crate::config::{Config, LATENCY_PARTITIONS_AUTO};
    use crate::metrics::encode_alone;

    fn snapshot(leaders: &[Option<i32>]) -> ClusterSnapshot {
        let partitions: BTreeMap<i32, Partition> = leaders
            .iter()
            .enumerate()
            .map(|(id, leader)| {
                let id = id as i32;
                let partition = Partition {
                    id,
                    replicas: vec![1, 2, 3],
                    leader: *leader,
                };
                (id, partition)
            })
            .collect();
        ClusterSnapshot {
            partitions,
            ..ClusterSnapshot::default()
        }
    }

    #[test]
    fn a_new_leader_gets_its_partitions_series_at_zero() {
        let config = Config::for_test("", &[]).unwrap();
        let metrics = HeartbeatMetrics::new(&config.admin);
        let first = snapshot(&[Some(1), Some(2)]);
        let now = Instant::now();
        let retention = Duration::from_secs(3600);
        metrics.follow_leaders(&ClusterSnapshot::default(), &first, now, retention);
        metrics.follow_leaders(&first, &snapshot(&[Some(1), None]), now, retention);
        let text = encode_alone(&metrics);
        for series in [
            "heartbeat_messages_produced_total{partition=\"1\"} 0",
            "heartbeat_messages_lost_total{partition=\"1\",leader=\"2\"} 0",
            "heartbeat_messages_lost_total{partition=\"1\",leader=\"-1\"} 0",
            "heartbeat_produce_failures_total{partition=\"0\",leader=\"1\",reason=\"timed_out\"} 0",
            "heartbeat_produce_failures_total{partition=\"1\",leader=\"-1\",reason=\"rejected\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        for reason in ProduceFailure::ALL {
            let series = format!(
                "heartbeat_produce_failures_total{{partition=\"0\",leader=\"1\",reason=\"{}\"}} 0",
                reason.as_str()
            );
            assert!(text.contains(&series), "{series} missing");
        }
        assert_eq!(
            text.matches("heartbeat_messages_skipped_total{").count(),
            SkipKind::ALL.len()
        );
    }

    #[test]
    fn a_former_leaders_series_go_after_the_retention() {
        let config = Config::for_test("", &[]).unwrap();
        let metrics = HeartbeatMetrics::new(&config.admin);
        let start = Instant::now();
        let retention = Duration::from_secs(60);
        let first = snapshot(&[Some(1)]);
        let moved = snapshot(&[Some(2)]);
        metrics.follow_leaders(&ClusterSnapshot::default(), &first, start, retention);
        metrics
            .produce_latency
            .observe(0, 1, Duration::from_millis(3), start);
        metrics.follow_leaders(&first, &moved, start, retention);
        // The windowed quantiles leave with their window; the others are removed.
        let leader_1 = "_total{partition=\"0\",leader=\"1\"";
        let histogram_1 = "latency_seconds_count{partition=\"0\",leader=\"1\"}";
        let within = start + Duration::from_secs(30);
        metrics.follow_leaders(&moved, &moved, within, retention);
        assert!(
            encode_alone(&metrics).contains(leader_1),
            "kept within the retention"
        );
        metrics.follow_leaders(&moved, &moved, start + retention, retention);
        let text = encode_alone(&metrics);
        assert!(!text.contains(leader_1), "{text}");
        assert!(!text.contains(histogram_1), "{text}");
        assert!(text.contains("partition=\"0\",leader=\"2\""));
        // A leader that leads the partition again keeps its series.
        metrics.follow_leaders(&moved, &first, start + retention, retention);
        metrics.follow_leaders(&first, &moved, start + retention, retention);
        metrics.follow_leaders(&moved, &first, start + retention * 2, retention);
        metrics.follow_leaders(&first, &first, start + retention * 3, retention);
        assert!(encode_alone(&metrics).contains(leader_1));
    }

    #[test]
    fn by_broker_latency_and_failures_name_the_leader_only_and_counters_stay_per_partition() {
        let config =
            Config::for_test("[admin]\nheartbeat.latency.granularity = broker\n", &[]).unwrap();
        let metrics = HeartbeatMetrics::new(&config.admin);
        let start = Instant::now();
        let retention = Duration::from_secs(60);
        let first = snapshot(&[Some(1), Some(1)]);
        metrics.follow_leaders(&ClusterSnapshot::default(), &first, start, retention);
        for partition in 0..2 {
            metrics
                .end_to_end_latency
                .observe(partition, 1, Duration::from_millis(3), start);
        }
        metrics.refresh(start);
        let text = encode_alone(&metrics);
        assert!(
            text.contains("heartbeat_end_to_end_latency_seconds_count{leader=\"1\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "heartbeat_end_to_end_latency_recent_seconds{leader=\"1\",quantile=\"0.99\"}"
        ));
        assert!(!text.contains("latency_seconds_count{partition"), "{text}");
        assert!(text.contains("heartbeat_messages_lost_total{partition=\"1\",leader=\"1\"} 0"));
        assert!(
            text.contains("heartbeat_produce_failures_total{leader=\"1\",reason=\"queue_full\"} 0")
        );
        assert!(
            !text.contains("heartbeat_produce_failures_total{partition"),
            "{text}"
        );
        metrics.count_failure(0, 1, ProduceFailure::TimedOut);
        metrics.count_failure(1, 1, ProduceFailure::TimedOut);
        let text = encode_alone(&metrics);
        assert!(
            text.contains("heartbeat_produce_failures_total{leader=\"1\",reason=\"timed_out\"} 2"),
            "{text}"
        );
        // The broker's series go once it has led nothing for the retention.
        let moved = snapshot(&[Some(2), Some(2)]);
        metrics.follow_leaders(&first, &moved, start, retention);
        metrics.follow_leaders(&moved, &moved, start + retention, retention);
        let text = encode_alone(&metrics);
        assert!(
            !text.contains("latency_seconds_count{leader=\"1\"}"),
            "{text}"
        );
        assert!(!text.contains("failures_total{leader=\"1\""), "{text}");
        assert!(text.contains("failures_total{leader=\"2\",reason=\"timed_out\"} 0"));

        // auto: by partition up to 100 partitions, by broker beyond.
        let auto = Config::for_test("", &[]).unwrap();
        let auto = auto.admin.latency_granularity;
        assert!(LatencyGranularity::by_partition(auto, 100));
        assert!(!LatencyGranularity::by_partition(auto, 101));
    }

    #[test]
    fn a_topic_growing_past_the_automatic_size_keeps_one_shape_of_series() {
        let config = Config::for_test("", &[]).unwrap();
        let metrics = HeartbeatMetrics::new(&config.admin);
        let start = Instant::now();
        let retention = Duration::from_secs(60);
        let small = snapshot(&[Some(1); 2]);
        metrics.follow_leaders(&ClusterSnapshot::default(), &small, start, retention);
        metrics
            .produce_latency
            .observe(0, 1, Duration::from_millis(3), start);
        let text = encode_alone(&metrics);
        assert!(
            text.contains("failures_total{partition=\"0\",leader=\"1\",reason=\"timed_out\"} 0")
        );
        assert!(text.contains("latency_seconds_count{partition=\"0\",leader=\"1\"} 1"));
        metrics.refresh(start);
        assert!(
            encode_alone(&metrics).contains("recent_seconds_count{partition=\"0\",leader=\"1\"} 1")
        );
        let large = snapshot(&[Some(1); LATENCY_PARTITIONS_AUTO + 1]);
        metrics.follow_leaders(&small, &large, start, retention);
        // A view without partitions (the topic unreadable) changes nothing.
        metrics.follow_leaders(&large, &ClusterSnapshot::default(), start, retention);
        metrics.refresh(start);
        let text = encode_alone(&metrics);
        assert!(!text.contains("recent_seconds_count{partition"), "{text}");
        assert!(!text.contains("failures_total{partition"), "{text}");
        assert!(!text.contains("latency_seconds_count{partition"), "{text}");
        assert!(text.contains("failures_total{leader=\"1\",reason=\"timed_out\"} 0"));
        assert!(text.contains("heartbeat_messages_lost_total{partition=\"100\",leader=\"1\"} 0"));
    }
}
