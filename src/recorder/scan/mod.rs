//! What the cluster scan found, recorded: the cluster's topics and partitions, the partitions
//! under and at min ISR, the consumer groups' state and lag, how their commits move, the
//! groups furthest behind for a person, and the log's spells of each part's failures.
//!
//! - `found`: what a scan hands over (the overview, the groups, their lag, the min ISR count);
//! - `metrics`: the scan's series, and which part of a scan failed (the `part` label);
//! - `min_isr`: the partitions under and at min ISR, as series;
//! - `progress`: how long ago each group's commits moved, and its margin to retention.

pub(crate) mod found;
pub(crate) mod metrics;
mod min_isr;
mod progress;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::found::{ClusterOverview, GroupLag, GroupSummary, LagScan, MinIsrCount, UNKNOWN_STATE};
use self::metrics::{ScanMetrics, ScanPart};
use self::min_isr::{MinIsrMetrics, MIN_ISR_TOPICS_MAX};
use self::progress::GroupProgress;
use crate::config::{Config, LagGranularity};
use crate::kafka::configs::Retention;
use crate::kafka::groups::GroupProtocol;
use crate::logging::LogThrottle;
use crate::metrics::Families;
use crate::recorder::observed::GroupBehind;
use crate::recorder::stores::Stores;

/// A scan ended after `took`.
#[derive(Debug)]
pub(crate) struct ScanFinished {
    pub(crate) took: Duration,
}

/// The cluster's topics and partitions, and the unhealthy ones.
#[derive(Debug)]
pub(crate) struct TopicsCounted(pub(crate) ClusterOverview);

/// The partitions under and at their topic's min ISR.
#[derive(Debug)]
pub(crate) struct MinIsrCounted(pub(crate) MinIsrCount);

/// The consumer groups as listed (or, without a listing, as last listed and named).
#[derive(Debug)]
pub(crate) struct GroupsListed(pub(crate) Vec<GroupSummary>);

/// A lag scan's lag, and the retention of the groups' topics as last read.
#[derive(Debug)]
pub(crate) struct LagScanned<'a> {
    pub(crate) scan: &'a LagScan,
    pub(crate) retention: &'a BTreeMap<String, Retention>,
}

/// A part of a scan succeeded.
#[derive(Debug)]
pub(crate) struct ScanPartSucceeded(pub(crate) ScanPart);

/// A part of a scan failed.
#[derive(Debug)]
pub(crate) struct ScanPartFailed {
    pub(crate) part: ScanPart,
    pub(crate) error: String,
}

/// The cluster scan's part of the record.
pub(super) struct Scan {
    metrics: Arc<ScanMetrics>,
    progress: Arc<GroupProgress>,
    min_isr: Arc<MinIsrMetrics>,
    throttle: LogThrottle,
    per_partition: bool,
    lag_seconds: bool,
    max_series: usize,
}

impl Scan {
    pub(super) fn new(config: &Config) -> Self {
        let admin = &config.admin;
        Scan {
            metrics: Arc::new(ScanMetrics::new(admin.consumer_group_lag_seconds)),
            progress: Arc::default(),
            min_isr: Arc::default(),
            throttle: LogThrottle::default(),
            per_partition: admin.lag_granularity() == LagGranularity::Partition,
            lag_seconds: admin.consumer_group_lag_seconds,
            max_series: admin.consumer_group_max_series,
        }
    }

    pub(super) fn families(&self) -> [Arc<dyn Families>; 3] {
        [
            self.metrics.clone(),
            self.progress.clone(),
            self.min_isr.clone(),
        ]
    }

    /// The groups reported at the last listing, with their protocol.
    pub(super) fn listed_groups(&self) -> BTreeMap<String, GroupProtocol> {
        self.metrics.listed_groups()
    }

    pub(super) fn finished(&self, _stores: &Stores<'_>, finished: ScanFinished) {
        self.metrics.record_duration(finished.took);
    }

    pub(super) fn topics(&self, _stores: &Stores<'_>, counted: TopicsCounted) {
        self.metrics.record_overview(&counted.0);
    }

    pub(super) fn min_isr(&self, _stores: &Stores<'_>, counted: MinIsrCounted) {
        let count = counted.0;
        let dropped = self.min_isr.record(&count);
        self.metrics.count_dropped(dropped);
        if dropped == 0 {
            self.throttle.reset("min_isr_series");
        } else if let Some(held_back) = self.throttle.admit("min_isr_series") {
            tracing::warn!(
                held_back,
                dropped,
                "{} topics have partitions under or at their min ISR: series of the first {MIN_ISR_TOPICS_MAX} only ({} under, {} at min ISR in the cluster)",
                count.topics.len(),
                count.under,
                count.at
            );
        }
    }

    pub(super) fn groups(&self, _stores: &Stores<'_>, listed: GroupsListed) {
        self.metrics.record_groups(&listed.0);
    }

    /// The lag series, the groups furthest behind for a person, and the groups' progress.
    pub(super) fn lag(&self, stores: &Stores<'_>, scanned: LagScanned<'_>) {
        let LagScanned { scan, retention } = scanned;
        let dropped =
            self.metrics
                .record_lag(scan, self.per_partition, self.lag_seconds, self.max_series);
        let listed = self.metrics.reported_groups();
        stores.observed.groups_scanned(
            scan.groups
                .iter()
                .filter_map(|(group, answer)| {
                    let lag = answer.as_ref().ok()?;
                    let listed = listed.get(group);
                    Some(GroupBehind {
                        group: group.clone(),
                        lag_messages: lag.total(),
                        lag_seconds: lag.max_seconds(),
                        state: listed
                            .map_or(UNKNOWN_STATE, |group| &group.state)
                            .to_string(),
                        protocol: listed
                            .map_or(GroupProtocol::Unknown, |group| group.protocol)
                            .as_str(),
                        members: listed.and_then(|group| group.members),
                    })
                })
                .collect(),
        );
        if dropped == 0 {
            self.throttle.reset("series");
        } else if let Some(held_back) = self.throttle.admit("series") {
            tracing::warn!(
                held_back,
                dropped,
                "lag series not reported: consumer.group.max.series ({}) reached; narrow \
                 consumer.group.allow, or set consumer.group.lag.granularity = group",
                self.max_series
            );
        }
        let groups: BTreeMap<&str, &GroupLag> = scan
            .groups
            .iter()
            .filter_map(|(group, answer)| Some((group.as_str(), answer.as_ref().ok()?)))
            .collect();
        let scanned: BTreeSet<&str> = scan.groups.keys().map(String::as_str).collect();
        self.progress
            .record(&groups, &scanned, retention, Instant::now());
    }

    pub(super) fn succeeded(&self, _stores: &Stores<'_>, succeeded: ScanPartSucceeded) {
        let part = succeeded.0.as_str();
        if let Some(spell) = self.throttle.reset(part) {
            tracing::info!(
                failed = spell.counted,
                "cluster scan of {part} succeeds again, {} after the first failure ({} failed)",
                spell.seconds(),
                spell.counted
            );
        }
    }

    pub(super) fn failed(&self, _stores: &Stores<'_>, failed: ScanPartFailed) {
        self.metrics.count_failure(failed.part);
        let part = failed.part.as_str();
        if let Some(held_back) = self.throttle.admit(part) {
            tracing::warn!(held_back, "cluster scan of {part} failed: {}", failed.error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_changing_protocol_keeps_one_state_series_and_its_lag() {
        use super::found::PartitionLag;
        use crate::metrics::encode_alone;
        let series = |text: &str, family: &str| {
            text.lines()
                .filter(|line| line.starts_with(&format!("{family}{{")))
                .count()
        };
        let summary = |state: &str, protocol, members| GroupSummary {
            name: "orders".to_string(),
            state: state.to_string(),
            protocol,
            members,
        };
        let scan = LagScan {
            groups: [(
                "orders".to_string(),
                Ok(GroupLag {
                    partitions: [(
                        ("orders".to_string(), 0),
                        PartitionLag {
                            committed: 1,
                            end: Some(3),
                            messages: Some(2),
                            seconds: Some(1.5),
                        },
                    )]
                    .into_iter()
                    .collect(),
                }),
            )]
            .into_iter()
            .collect(),
            ..LagScan::default()
        };
        let metrics = ScanMetrics::new(true);
        metrics.record_groups(&[summary("Stable", GroupProtocol::Classic, Some(2))]);
        metrics.record_lag(&scan, true, true, 100);
        let before = encode_alone(&metrics);
        assert!(
            before.contains(
                r#"heartbeat_consumer_group_state{group="orders",state="Stable",protocol="classic"} 1"#
            ),
            "{before}"
        );
        // Its consumers restarted with group.protocol=consumer.
        metrics.record_groups(&[summary("Reconciling", GroupProtocol::Consumer, Some(2))]);
        let after = encode_alone(&metrics);
        assert_eq!(
            series(&after, "heartbeat_consumer_group_state"),
            1,
            "{after}"
        );
        assert!(
            after.contains(
                r#"heartbeat_consumer_group_state{group="orders",state="Reconciling",protocol="consumer"} 1"#
            ),
            "{after}"
        );
        assert!(
            after.contains(r#"heartbeat_consumer_groups_by_state{kind="Stable"} 0"#),
            "{after}"
        );
        // The lag series carry no protocol: the same series before and after.
        let lag = |text: &str| {
            text.lines()
                .filter(|line| line.starts_with("heartbeat_consumer_group_lag{"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(lag(&before), lag(&after));
        assert_eq!(lag(&after).len(), 1);
        assert_eq!(
            metrics.listed_groups().get("orders"),
            Some(&GroupProtocol::Consumer)
        );
    }
}
