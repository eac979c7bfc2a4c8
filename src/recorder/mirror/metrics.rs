//! The mirror reader's series: what became of the source's heartbeats on this replica.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::recent::RecentLatencies;
use crate::metrics::summary::{SummaryFamily, SummaryLabels};
use crate::metrics::Families;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct PartitionLabels {
    source: String,
    partition: String,
}

impl SummaryLabels for PartitionLabels {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("source", self.source.as_str()),
            ("partition", self.partition.as_str()),
        ]
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    source: String,
    partition: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    source: String,
    kind: &'static str,
}

/// What became of one source heartbeat here; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Read here, the first time.
    Replicated,
    /// Not read here within `mirror.lost.after.seconds`.
    Lost,
    /// Read again (MirrorMaker 2 is at-least-once: it re-sends after a restart).
    Duplicated,
    /// Read after it was counted lost.
    Late,
}

impl Outcome {
    pub(super) const ALL: [Outcome; 4] = [
        Outcome::Replicated,
        Outcome::Lost,
        Outcome::Duplicated,
        Outcome::Late,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Replicated => "replicated",
            Outcome::Lost => "lost",
            Outcome::Duplicated => "duplicated",
            Outcome::Late => "late",
        }
    }
}

/// Records on the mirror topic that are not a heartbeat the source sent while this reader
/// was positioned; the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skipped {
    /// Another cc-heartbeat instance's heartbeat (another process, or the source's tasks
    /// before they started afresh).
    OtherInstance,
    /// The source's heartbeat sent before this reader was positioned on its partition.
    BeforeStart,
    /// Not a cc-heartbeat heartbeat at all.
    Foreign,
}

impl Skipped {
    const ALL: [Skipped; 3] = [
        Skipped::OtherInstance,
        Skipped::BeforeStart,
        Skipped::Foreign,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Skipped::OtherInstance => "other_instance",
            Skipped::BeforeStart => "before_start",
            Skipped::Foreign => "foreign",
        }
    }
}

#[derive(Debug)]
pub(super) struct MirrorMetrics {
    source: String,
    latency: HistogramFamily<PartitionLabels>,
    messages: Family<OutcomeLabels, Counter>,
    skipped: Family<KindLabels, Counter>,
    dropped: Family<SourceLabels, Counter>,
    age: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    partition_difference: Family<SourceLabels, Gauge>,
    /// The latency's quantiles over the last `latency.window.seconds`, as the other latencies.
    recent: RecentLatencies<PartitionLabels>,
    recent_published: SummaryFamily<PartitionLabels>,
}

impl MirrorMetrics {
    /// The series of the pipeline from `source`; latency buckets up to `lost_after`, recent
    /// quantiles over `window`.
    pub(super) fn new(source: &str, lost_after: Duration, window: Duration) -> Self {
        let metrics = MirrorMetrics {
            source: source.to_string(),
            latency: Family::new_with_constructor(Buckets::up_to(lost_after)),
            messages: Family::default(),
            skipped: Family::default(),
            dropped: Family::default(),
            age: Family::default(),
            partition_difference: Family::default(),
            recent: RecentLatencies::new(window, lost_after),
            recent_published: SummaryFamily::default(),
        };
        for kind in Skipped::ALL {
            drop(metrics.skipped.get_or_create(&KindLabels {
                source: metrics.source.clone(),
                kind: kind.as_str(),
            }));
        }
        let labels = metrics.source_labels();
        drop(metrics.dropped.get_or_create(&labels));
        drop(metrics.age.get_or_create(&labels));
        drop(metrics.partition_difference.get_or_create(&labels));
        metrics
    }

    fn source_labels(&self) -> SourceLabels {
        SourceLabels {
            source: self.source.clone(),
        }
    }

    /// Every outcome of `partition` at zero, once the reader is positioned on it.
    pub(super) fn partition_positioned(&self, partition: i32) {
        for outcome in Outcome::ALL {
            drop(
                self.messages
                    .get_or_create(&self.outcome_labels(partition, outcome)),
            );
        }
    }

    fn outcome_labels(&self, partition: i32, outcome: Outcome) -> OutcomeLabels {
        OutcomeLabels {
            source: self.source.clone(),
            partition: partition.to_string(),
            outcome: outcome.as_str(),
        }
    }

    pub(super) fn count(&self, partition: i32, outcome: Outcome) {
        self.messages
            .get_or_create(&self.outcome_labels(partition, outcome))
            .inc();
    }

    pub(super) fn replicated(&self, partition: i32, latency: Duration) {
        self.count(partition, Outcome::Replicated);
        let labels = PartitionLabels {
            source: self.source.clone(),
            partition: partition.to_string(),
        };
        self.latency
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
        self.recent
            .record(&labels, latency.as_secs_f64(), Instant::now());
    }

    pub(super) fn skipped(&self, kind: Skipped) {
        self.skipped
            .get_or_create(&KindLabels {
                source: self.source.clone(),
                kind: kind.as_str(),
            })
            .inc();
    }

    pub(super) fn dropped(&self, count: u64) {
        self.dropped
            .get_or_create(&self.source_labels())
            .inc_by(count);
    }

    pub(super) fn set_age(&self, age: Duration) {
        self.age
            .get_or_create(&self.source_labels())
            .set(age.as_secs_f64());
    }

    pub(super) fn set_partition_difference(&self, difference: i64) {
        self.partition_difference
            .get_or_create(&self.source_labels())
            .set(difference);
    }
}

impl Families for MirrorMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "mirror_latency",
            "Time from the source's send of each heartbeat to its reading on this replica, by source partition",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "mirror_messages",
            "The source's heartbeats on this replica, by source partition and outcome: replicated, lost (not read within mirror.lost.after.seconds), duplicated (read again: MirrorMaker 2 re-sends after a restart), late (read after counted lost)",
            self.messages.clone(),
        );
        registry.register_with_unit(
            "mirror_last_replicated_age",
            "Age of the newest source heartbeat read on this replica (since its send): the replication's recovery point; it grows while nothing arrives",
            Unit::Seconds,
            self.age.clone(),
        );
        registry.register(
            "mirror_messages_skipped",
            "Records on the mirror topic that are no heartbeat the source sent while this replica read: other_instance, before_start, foreign",
            self.skipped.clone(),
        );
        registry.register(
            "mirror_dropped",
            "Source heartbeats given up before their deadline because a stalled pipeline's matching state is full, or because the reader fell behind the source (counted lost too when known)",
            self.dropped.clone(),
        );
        registry.register(
            "mirror_partition_difference",
            "The source topic's partitions minus the mirror topic's (0 when the pipeline keeps them all, as MirrorMaker 2 and Cluster Linking do)",
            self.partition_difference.clone(),
        );
    }

    fn refresh(&self, now: Instant) {
        self.recent.publish(&self.recent_published, now);
    }

    fn encode_summaries(&self, out: &mut String, cluster: &str) {
        self.recent_published.encode(
            out,
            "mirror_latency_recent",
            "Quantiles of the replication latency over the last latency.window.seconds (exact, or within 0.1 % at high rates), with the sum and count of that window's samples",
            cluster,
        );
    }
}
