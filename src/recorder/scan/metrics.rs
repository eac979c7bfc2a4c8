//! The cluster scan's series: the overview, the consumer groups (state, members) and their
//! lag, each failure by what was being scanned. Series of what is gone (a deleted group, a
//! partition no group commits on any more) are removed; a value one scan could not read is
//! not reported, rather than left stale where it could hide a growing lag.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::found::{ClusterOverview, GroupLag, GroupSummary, LagScan, ProbeOutcome};
use crate::kafka::groups::GroupProtocol;
use crate::kafka::TopicPartition;
use crate::metrics::labels::KindLabels;
use crate::metrics::Families;
use crate::sync::lock;

/// What part of a scan failed; the `kind` of `heartbeat_cluster_scan_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanPart {
    /// The metadata of every topic.
    Topics,
    /// The listing of consumer groups.
    Groups,
    /// Committed offsets.
    Offsets,
    /// Log end offsets.
    EndOffsets,
    /// The records lag in seconds is read from.
    LagSeconds,
    /// The time retention of the groups' topics (DescribeConfigs).
    Configs,
    /// Every topic's `min.insync.replicas` (DescribeConfigs).
    MinIsr,
}

impl ScanPart {
    const ALL: [ScanPart; 7] = [
        ScanPart::Topics,
        ScanPart::Groups,
        ScanPart::Offsets,
        ScanPart::EndOffsets,
        ScanPart::LagSeconds,
        ScanPart::Configs,
        ScanPart::MinIsr,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ScanPart::Topics => "topics",
            ScanPart::Groups => "groups",
            ScanPart::Offsets => "offsets",
            ScanPart::EndOffsets => "end_offsets",
            ScanPart::LagSeconds => "lag_seconds",
            ScanPart::Configs => "configs",
            ScanPart::MinIsr => "min_isr",
        }
    }
}

/// Labels of a per-consumer-group series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

impl GroupLabels {
    fn new(group: &str) -> Self {
        GroupLabels {
            group: group.to_string(),
        }
    }
}

/// Labels of `heartbeat_consumer_group_state`: the group's one identity series, which alone
/// carries its protocol, so a group moving from the classic protocol to the consumer one keeps
/// its lag series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupStateLabels {
    group: String,
    state: String,
    protocol: String,
}

impl GroupStateLabels {
    fn of(group: &GroupSummary) -> Self {
        GroupStateLabels {
            group: group.name.clone(),
            state: group.state.clone(),
            protocol: group.protocol.as_str().to_string(),
        }
    }
}

/// Labels of a per-group, per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: String,
}

/// Labels of a per-partition series of any topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TopicPartitionLabels {
    topic: String,
    partition: String,
}

impl TopicPartitionLabels {
    fn new((topic, partition): &TopicPartition) -> Self {
        TopicPartitionLabels {
            topic: topic.clone(),
            partition: partition.to_string(),
        }
    }
}

/// The series a reported group has of its own (total, max, max in seconds), and those of each
/// of its partitions (committed offset, lag, lag in seconds).
const GROUP_SERIES: usize = 3;
const PARTITION_SERIES: usize = 3;

/// What is left of `consumer.group.max.series` during one scan, and what did not fit.
struct Budget {
    left: usize,
    dropped: u64,
}

impl Budget {
    /// Takes `series` from the budget if they fit; else counts them dropped.
    fn take(&mut self, series: usize) -> bool {
        if self.left >= series {
            self.left -= series;
            true
        } else {
            self.dropped += series as u64;
            false
        }
    }
}

/// What the last scans reported, to remove the series of what is gone.
#[derive(Debug, Default)]
struct Reported {
    /// Each group as last reported, from the last listing that worked.
    states: BTreeMap<String, GroupSummary>,
    /// Every state ever counted, so a state no group is in any more reports 0.
    states_seen: BTreeSet<String>,
    /// Groups with lag series.
    lag_groups: BTreeSet<String>,
    /// (group, topic, partition) with lag series.
    lag_partitions: BTreeSet<GroupPartitionLabels>,
    /// Partitions with a log end offset series.
    end_offsets: BTreeSet<TopicPartitionLabels>,
}

#[derive(Debug, Default)]
pub(super) struct ScanMetrics {
    topics: Gauge,
    partitions: Gauge,
    under_replicated: Gauge,
    offline: Gauge,
    duration: Gauge<f64, AtomicU64>,
    failures: Family<KindLabels, Counter>,
    groups: Gauge,
    groups_by_state: Family<KindLabels, Gauge>,
    group_state: Family<GroupStateLabels, Gauge>,
    members: Family<GroupLabels, Gauge>,
    committed_offset: Family<GroupPartitionLabels, Gauge>,
    lag: Family<GroupPartitionLabels, Gauge>,
    lag_seconds: Family<GroupPartitionLabels, Gauge<f64, AtomicU64>>,
    total_lag: Family<GroupLabels, Gauge>,
    max_lag: Family<GroupLabels, Gauge>,
    max_lag_seconds: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    offset_races: Counter,
    lag_probes: Family<KindLabels, Counter>,
    log_end_offset: Family<TopicPartitionLabels, Gauge>,
    series_dropped: Counter,
    reported: Mutex<Reported>,
}

impl ScanMetrics {
    /// Every failure kind, and with `lag_seconds` every probe outcome, starts at zero, so
    /// `increase()` sees the first one.
    pub(super) fn new(lag_seconds: bool) -> Self {
        let metrics = ScanMetrics::default();
        for part in ScanPart::ALL {
            metrics
                .failures
                .get_or_create(&KindLabels::new(part.as_str()))
                .inc_by(0);
        }
        if lag_seconds {
            for kind in ProbeOutcome::KINDS {
                metrics
                    .lag_probes
                    .get_or_create(&KindLabels::new(kind))
                    .inc_by(0);
            }
        }
        metrics
    }

    pub(super) fn count_failure(&self, part: ScanPart) {
        self.failures
            .get_or_create(&KindLabels::new(part.as_str()))
            .inc();
    }

    pub(super) fn record_duration(&self, duration: Duration) {
        self.duration.set(duration.as_secs_f64());
    }

    pub(super) fn record_overview(&self, overview: &ClusterOverview) {
        self.topics.set(overview.topics as i64);
        self.partitions.set(overview.partitions as i64);
        self.under_replicated.set(overview.under_replicated as i64);
        self.offline.set(overview.offline as i64);
    }

    /// Counts series left out for lack of room (those of the min ISR's topics beyond its cap).
    pub(super) fn count_dropped(&self, series: u64) {
        self.series_dropped.inc_by(series);
    }

    /// The groups listed at the last listing that worked, with their protocol.
    pub(super) fn listed_groups(&self) -> BTreeMap<String, GroupProtocol> {
        lock(&self.reported)
            .states
            .iter()
            .map(|(name, group)| (name.clone(), group.protocol))
            .collect()
    }

    /// Each group as last reported (state, protocol, members).
    pub(super) fn reported_groups(&self) -> BTreeMap<String, GroupSummary> {
        lock(&self.reported).states.clone()
    }

    /// Reports `groups` (and only them) with their state, protocol and members.
    pub(super) fn record_groups(&self, groups: &[GroupSummary]) {
        let mut reported = lock(&self.reported);
        let current: BTreeMap<String, GroupSummary> = groups
            .iter()
            .map(|group| (group.name.clone(), group.clone()))
            .collect();
        for (name, before) in reported.states.iter() {
            if !current.contains_key(name) {
                self.members.remove(&GroupLabels::new(name));
            }
            let labels = GroupStateLabels::of(before);
            if current.get(name).map(GroupStateLabels::of).as_ref() != Some(&labels) {
                self.group_state.remove(&labels);
            }
        }
        let mut by_state: BTreeMap<String, i64> = reported
            .states_seen
            .iter()
            .map(|state| (state.clone(), 0))
            .collect();
        for group in groups {
            self.group_state
                .get_or_create(&GroupStateLabels::of(group))
                .set(1);
            let labels = GroupLabels::new(&group.name);
            match group.members {
                Some(members) => {
                    self.members.get_or_create(&labels).set(members as i64);
                }
                None => {
                    self.members.remove(&labels);
                }
            }
            *by_state.entry(group.state.clone()).or_default() += 1;
        }
        for (state, count) in &by_state {
            self.groups_by_state
                .get_or_create(&KindLabels::new(state))
                .set(*count);
        }
        self.groups.set(groups.len() as i64);
        reported.states_seen.extend(by_state.into_keys());
        reported.states = current;
    }

    /// Reports what a lag scan read, and removes what it no longer found. `per_partition`:
    /// the per-partition series too; `probing`: lag in seconds is read. At most `max_series`
    /// group and group-partition series are reported (groups first, in name order); returns
    /// how many were left out, also counted.
    pub(super) fn record_lag(
        &self,
        scan: &LagScan,
        per_partition: bool,
        probing: bool,
        max_series: usize,
    ) -> u64 {
        let mut reported = lock(&self.reported);
        let mut current = BTreeSet::new();
        let mut budget = Budget {
            left: max_series,
            dropped: 0,
        };
        let mut groups_reported = BTreeSet::new();
        for (group, answer) in &scan.groups {
            match answer {
                Ok(lag) if budget.take(GROUP_SERIES) => {
                    groups_reported.insert(group.clone());
                    self.record_group_lag(group, lag, probing);
                }
                _ => self.forget_group_lag(group),
            }
        }
        if per_partition {
            for (group, answer) in &scan.groups {
                if let (Ok(lag), true) = (answer, groups_reported.contains(group)) {
                    self.record_partition_lag(group, lag, &mut budget, &mut current);
                }
            }
        }
        for gone in reported.lag_partitions.difference(&current) {
            self.committed_offset.remove(gone);
            self.lag.remove(gone);
            self.lag_seconds.remove(gone);
        }
        for group in reported.lag_groups.difference(&groups_reported) {
            self.forget_group_lag(group);
        }
        reported.lag_partitions = current;
        reported.lag_groups = groups_reported;

        let current: BTreeSet<TopicPartitionLabels> = scan
            .end_offsets
            .iter()
            .map(|(partition, end)| {
                let labels = TopicPartitionLabels::new(partition);
                self.log_end_offset.get_or_create(&labels).set(*end);
                labels
            })
            .collect();
        for gone in reported.end_offsets.difference(&current) {
            self.log_end_offset.remove(gone);
        }
        reported.end_offsets = current;
        self.offset_races.inc_by(scan.races);
        if let Some(round) = &scan.probe {
            for (kind, count) in &round.counts {
                self.lag_probes
                    .get_or_create(&KindLabels::new(kind))
                    .inc_by(*count);
            }
        }
        self.series_dropped.inc_by(budget.dropped);
        budget.dropped
    }

    /// One group's per-partition series, as many as `budget` allows; each reported one is
    /// added to `current`.
    fn record_partition_lag(
        &self,
        group: &str,
        lag: &GroupLag,
        budget: &mut Budget,
        current: &mut BTreeSet<GroupPartitionLabels>,
    ) {
        for ((topic, partition), partition_lag) in &lag.partitions {
            if !budget.take(PARTITION_SERIES) {
                continue;
            }
            let labels = GroupPartitionLabels {
                group: group.to_string(),
                topic: topic.clone(),
                partition: partition.to_string(),
            };
            self.committed_offset
                .get_or_create(&labels)
                .set(partition_lag.committed);
            match partition_lag.messages {
                Some(messages) => {
                    self.lag.get_or_create(&labels).set(messages);
                }
                None => {
                    self.lag.remove(&labels);
                }
            }
            match partition_lag.seconds {
                Some(seconds) => {
                    self.lag_seconds.get_or_create(&labels).set(seconds);
                }
                None => {
                    self.lag_seconds.remove(&labels);
                }
            }
            current.insert(labels);
        }
    }

    /// One group's own series: totals only when every partition's lag is known.
    fn record_group_lag(&self, group: &str, lag: &GroupLag, probing: bool) {
        let labels = GroupLabels::new(group);
        if lag.partitions.values().all(|p| p.messages.is_some()) {
            self.total_lag.get_or_create(&labels).set(lag.total());
            self.max_lag.get_or_create(&labels).set(lag.max());
        } else {
            self.total_lag.remove(&labels);
            self.max_lag.remove(&labels);
        }
        let all_seconds = lag.partitions.values().all(|p| p.seconds.is_some());
        match lag.max_seconds() {
            Some(seconds) if all_seconds => {
                self.max_lag_seconds.get_or_create(&labels).set(seconds);
            }
            None if probing && lag.partitions.is_empty() => {
                self.max_lag_seconds.get_or_create(&labels).set(0.0);
            }
            _ => {
                self.max_lag_seconds.remove(&labels);
            }
        }
    }

    fn forget_group_lag(&self, group: &str) {
        let labels = GroupLabels::new(group);
        self.total_lag.remove(&labels);
        self.max_lag.remove(&labels);
        self.max_lag_seconds.remove(&labels);
    }
}

impl Families for ScanMetrics {
    fn register(&self, registry: &mut Registry) {
        self.register_overview(registry);
        self.register_groups(registry);
        self.register_lag(registry);
    }
}

impl ScanMetrics {
    fn register_overview(&self, registry: &mut Registry) {
        registry.register(
            "cluster_topics",
            "Topics in the cluster (internal ones included), at the last scan",
            self.topics.clone(),
        );
        registry.register(
            "cluster_partitions",
            "Partitions of all topics, at the last scan",
            self.partitions.clone(),
        );
        registry.register(
            "cluster_under_replicated_partitions",
            "Partitions with fewer in-sync replicas than replicas, at the last scan",
            self.under_replicated.clone(),
        );
        registry.register(
            "cluster_offline_partitions",
            "Partitions without a leader, at the last scan",
            self.offline.clone(),
        );
        registry.register_with_unit(
            "cluster_scan_duration",
            "How long the last cluster scan took",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "cluster_scan_failures",
            "Cluster scans that failed or timed out, by what was scanned (kind: topics, groups)",
            self.failures.clone(),
        );
    }

    fn register_groups(&self, registry: &mut Registry) {
        registry.register(
            "consumer_groups",
            "Consumer groups reported (listed within consumer.group.allow/deny, or named in consumer.group.names), at the last scan",
            self.groups.clone(),
        );
        registry.register(
            "consumer_groups_by_state",
            "Consumer groups by state (kind: Stable, Empty, PreparingRebalance, …; Unknown when they could not be listed)",
            self.groups_by_state.clone(),
        );
        registry.register(
            "consumer_group_state",
            "1 for each consumer group's current state and its protocol (classic, consumer); idle and empty groups keep theirs",
            self.group_state.clone(),
        );
        registry.register(
            "consumer_group_members",
            "Members of each consumer group",
            self.members.clone(),
        );
    }

    fn register_lag(&self, registry: &mut Registry) {
        registry.register(
            "consumer_group_committed_offset",
            "Each group's committed offset per partition (within consumer.group.topic.allow/deny)",
            self.committed_offset.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "Messages between each group's committed offset and the log end offset, never negative",
            self.lag.clone(),
        );
        registry.register_with_unit(
            "consumer_group_lag",
            "Age of the oldest unconsumed record (the one at the committed offset) per partition; 0 without lag",
            Unit::Seconds,
            self.lag_seconds.clone(),
        );
        registry.register(
            "consumer_group_total_lag",
            "Messages behind, summed over each group's partitions",
            self.total_lag.clone(),
        );
        registry.register(
            "consumer_group_max_lag",
            "Messages behind on each group's partition furthest behind",
            self.max_lag.clone(),
        );
        registry.register_with_unit(
            "consumer_group_max_lag",
            "Age of each group's oldest unconsumed record over its partitions",
            Unit::Seconds,
            self.max_lag_seconds.clone(),
        );
        registry.register(
            "consumer_group_offset_races",
            "Committed offsets found past the log end offset (read at another instant): lag clamped to 0",
            self.offset_races.clone(),
        );
        registry.register(
            "consumer_group_lag_probes",
            "Partitions whose oldest unconsumed record was looked up for lag in seconds, by outcome (kind: read, cached, no_record, timed_out, failed)",
            self.lag_probes.clone(),
        );
        registry.register(
            "cluster_scan_series_dropped",
            "Series a scan left out: lag series beyond consumer.group.max.series, min ISR series of topics beyond the first 100",
            self.series_dropped.clone(),
        );
        registry.register(
            "partition_log_end_offset",
            "Log end offset (high watermark) of each partition some reported group has committed on",
            self.log_end_offset.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode_alone;

    fn series(text: &str, family: &str) -> usize {
        text.lines()
            .filter(|line| line.starts_with(&format!("{family}{{")))
            .count()
    }

    #[test]
    fn every_failure_kind_and_probe_outcome_starts_at_zero() {
        let text = encode_alone(&ScanMetrics::new(true));
        assert_eq!(
            series(&text, "heartbeat_cluster_scan_failures_total"),
            ScanPart::ALL.len()
        );
        assert_eq!(
            series(&text, "heartbeat_consumer_group_lag_probes_total"),
            ProbeOutcome::KINDS.len()
        );
        let without_probe = encode_alone(&ScanMetrics::new(false));
        assert_eq!(
            series(&without_probe, "heartbeat_consumer_group_lag_probes_total"),
            0
        );
    }

    #[test]
    fn a_scan_reports_at_most_the_series_allowed_groups_first() {
        use super::super::found::PartitionLag;
        let group = || {
            let partition = PartitionLag {
                committed: 1,
                end: Some(3),
                messages: Some(2),
                seconds: Some(1.5),
            };
            GroupLag {
                partitions: [
                    (("orders".to_string(), 0), partition.clone()),
                    (("orders".to_string(), 1), partition),
                ]
                .into_iter()
                .collect(),
            }
        };
        let scan = LagScan {
            groups: ["a", "b", "c"]
                .into_iter()
                .map(|name| (name.to_string(), Ok(group())))
                .collect(),
            ..LagScan::default()
        };
        let metrics = ScanMetrics::new(true);
        // Every group's own 3, and room for a's 2 partitions only.
        let dropped = metrics.record_lag(&scan, true, true, 3 * 3 + 3 * 2);
        assert_eq!(dropped, 2 * 2 * 3);
        let text = encode_alone(&metrics);
        assert_eq!(series(&text, "heartbeat_consumer_group_total_lag"), 3);
        assert_eq!(series(&text, "heartbeat_consumer_group_lag"), 2);
        assert!(
            text.contains("heartbeat_cluster_scan_series_dropped_total 12"),
            "{text}"
        );
        // With room for one group only, the others' series go.
        assert_eq!(metrics.record_lag(&scan, false, true, 3), 6);
        let text = encode_alone(&metrics);
        assert_eq!(series(&text, "heartbeat_consumer_group_total_lag"), 1);
        assert_eq!(series(&text, "heartbeat_consumer_group_lag"), 0);
    }
}
