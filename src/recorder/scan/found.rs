//! What a cluster scan found, as the tasks hand it to the recorder: the overview, the groups
//! as listed, their lag and what the lag probe read, the partitions under and at min ISR.

use std::collections::{BTreeMap, HashMap};

use rdkafka::error::KafkaError;

use crate::kafka::groups::GroupProtocol;
use crate::kafka::native_admin::NativeAdminError;
use crate::kafka::TopicPartition;

/// One group's lag on one partition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartitionLag {
    pub(crate) committed: i64,
    /// `None` when the log end offset could not be read.
    pub(crate) end: Option<i64>,
    /// Messages behind, never negative; `None` without the log end offset.
    pub(crate) messages: Option<i64>,
    /// Age of the oldest unconsumed record; `Some(0.0)` without lag, `None` when unknown.
    pub(crate) seconds: Option<f64>,
}

/// One group's lag, per partition and in total.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GroupLag {
    pub(crate) partitions: BTreeMap<TopicPartition, PartitionLag>,
}

impl GroupLag {
    /// Messages behind on all partitions.
    pub(crate) fn total(&self) -> i64 {
        self.partitions.values().filter_map(|p| p.messages).sum()
    }

    /// Messages behind on the partition furthest behind.
    pub(crate) fn max(&self) -> i64 {
        self.partitions
            .values()
            .filter_map(|p| p.messages)
            .max()
            .unwrap_or(0)
    }

    /// Age of the oldest unconsumed record over all partitions, when any is known.
    pub(crate) fn max_seconds(&self) -> Option<f64> {
        self.partitions
            .values()
            .filter_map(|p| p.seconds)
            .reduce(f64::max)
    }
}

/// What one lag scan found.
#[derive(Debug, Default)]
pub(crate) struct LagScan {
    /// Every group asked for: its lag, or why its offsets could not be read.
    pub(crate) groups: BTreeMap<String, Result<GroupLag, NativeAdminError>>,
    /// Log end offsets of the committed partitions, when some could be read.
    pub(crate) end_offsets: BTreeMap<TopicPartition, i64>,
    /// Why the log end offsets could not be read.
    pub(crate) end_offsets_error: Option<NativeAdminError>,
    /// Committed offsets found past the log end (clamped to zero lag).
    pub(crate) races: u64,
    /// The lag-in-seconds round, when the probe ran.
    pub(crate) probe: Option<ProbeRound>,
}

/// A partition the probe reads: where the group's committed offset is, and where the log ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ProbeTarget {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) committed: i64,
    pub(crate) end: i64,
}

/// What the probe learned of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    /// Timestamp (milliseconds since the epoch) of the oldest unconsumed record.
    Timestamp(i64),
    /// Only records without a timestamp, or control records, are left to consume.
    NoRecord,
    /// Nothing came before the batch's timeout.
    TimedOut,
    /// The partition could not be read (authorization, unknown partition, …).
    Failed,
}

impl ProbeOutcome {
    /// The `kind` of a partition answered from the cache, without a read.
    pub(crate) const CACHED: &'static str = "cached";

    /// Every `kind` of `heartbeat_consumer_group_lag_probes_total`: how a partition was
    /// answered.
    pub(crate) const KINDS: [&'static str; 5] = [
        ProbeOutcome::CACHED,
        ProbeOutcome::Timestamp(0).kind(),
        ProbeOutcome::NoRecord.kind(),
        ProbeOutcome::TimedOut.kind(),
        ProbeOutcome::Failed.kind(),
    ];

    /// The label of `heartbeat_consumer_group_lag_probes_total` for this outcome.
    pub(crate) const fn kind(self) -> &'static str {
        match self {
            ProbeOutcome::Timestamp(_) => "read",
            ProbeOutcome::NoRecord => "no_record",
            ProbeOutcome::TimedOut => "timed_out",
            ProbeOutcome::Failed => "failed",
        }
    }
}

/// How one probe round went.
#[derive(Debug, Default)]
pub(crate) struct ProbeRound {
    pub(crate) outcomes: HashMap<ProbeTarget, ProbeOutcome>,
    /// Targets by how they were answered: [`ProbeOutcome::CACHED`], or an outcome's [`ProbeOutcome::kind`].
    pub(crate) counts: BTreeMap<&'static str, u64>,
    /// The first error that stopped a batch, to report.
    pub(crate) error: Option<KafkaError>,
}

/// A consumer group as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSummary {
    pub(crate) name: String,
    /// As the coordinator names it: Stable, Empty, PreparingRebalance, CompletingRebalance,
    /// Assigning, Reconciling, Dead; Unknown when it could not be asked.
    pub(crate) state: String,
    pub(crate) protocol: GroupProtocol,
    /// `None` when not known (the listing or the description failed).
    pub(crate) members: Option<usize>,
}

/// The state of a group the cluster could not be asked about (the listing failed or is not
/// served): named groups, and those listed before, are still reported, as this.
pub(crate) const UNKNOWN_STATE: &str = "Unknown";

/// What one scan counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClusterOverview {
    pub(crate) topics: usize,
    pub(crate) partitions: usize,
    pub(crate) under_replicated: usize,
    pub(crate) offline: usize,
}

/// A topic's partitions under and at their min ISR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TopicMinIsr {
    pub(crate) topic: String,
    /// Fewer in-sync replicas than `min.insync.replicas`: `acks=all` writes are refused.
    pub(crate) under: usize,
    /// Exactly `min.insync.replicas` in sync, fewer than all replicas: a replica is already
    /// out, and one more broker loss refuses writes. A topic whose minimum equals its
    /// replication factor is there by design while all are in sync, and is not counted then.
    pub(crate) at: usize,
}

/// The cluster's partitions under and at their min ISR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct MinIsrCount {
    pub(crate) under: usize,
    pub(crate) at: usize,
    /// Topics whose `min.insync.replicas` is not known (not readable): not counted.
    pub(crate) unknown_topics: usize,
    /// The topics with a partition under or at their min ISR, those under first, then by how
    /// many, then by name.
    pub(crate) topics: Vec<TopicMinIsr>,
}
