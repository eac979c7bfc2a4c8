//! What a replica's mirror reader found, recorded: each source heartbeat's outcome here and
//! its replication latency, the records skipped, the age of the newest replicated one, what
//! the status page and `check` show of the pipeline, and the log's spells of losses.
//!
//! - `metrics`: the pipeline's series, labelled with the source.

pub(crate) mod metrics;

use std::sync::Arc;
use std::time::Duration;

use self::metrics::{MirrorMetrics, Outcome, Skipped};
use crate::config::Config;
use crate::logging::LogThrottle;
use crate::metrics::Families;
use crate::recorder::status::MirrorFacts;
use crate::recorder::stores::Stores;

/// The reader is positioned on `partition` of the mirror topic.
#[derive(Debug)]
pub(crate) struct MirrorPositioned {
    pub(crate) partition: i32,
}

/// What became of one source heartbeat of `partition` here.
#[derive(Debug)]
pub(crate) struct MirrorCounted {
    pub(crate) partition: i32,
    pub(crate) outcome: Outcome,
}

/// A source heartbeat of `partition` was read here, `latency` after its send.
#[derive(Debug)]
pub(crate) struct MirrorReplicated {
    pub(crate) partition: i32,
    pub(crate) latency: Duration,
}

/// A record of the mirror topic was not matched.
#[derive(Debug)]
pub(crate) struct MirrorSkipped(pub(crate) Skipped);

/// Source heartbeats not matched: `evicted` of `partition` pushed out of a full tracker (and
/// counted lost), or `missed` the reader fell behind its source's feed by.
#[derive(Debug)]
pub(crate) enum MirrorDropped {
    Evicted { partition: i32 },
    Missed(u64),
}

/// The mirror topic has `0` partitions more (or fewer) than the source's heartbeat topic.
#[derive(Debug)]
pub(crate) struct MirrorPartitionDifference(pub(crate) i64);

/// Each second: the heartbeats lost since (by partition), and the pipeline as it stands.
#[derive(Debug)]
pub(crate) struct MirrorExpired {
    pub(crate) lost: Vec<i32>,
    pub(crate) age: Duration,
    pub(crate) replicated: u64,
    pub(crate) problem: Option<String>,
}

/// A replica's part of the record.
pub(super) struct Mirror {
    metrics: Arc<MirrorMetrics>,
    throttle: LogThrottle,
    source: String,
    topic: String,
    lost_after: Duration,
}

impl Mirror {
    /// For a replica of `source`, whose heartbeats are read from `topic` here.
    pub(super) fn new(config: &Config, source: &str, topic: &str) -> Self {
        let admin = &config.admin;
        Mirror {
            metrics: Arc::new(MirrorMetrics::new(
                source,
                admin.mirror_lost_after,
                admin.latency_window,
            )),
            throttle: LogThrottle::default(),
            source: source.to_string(),
            topic: topic.to_string(),
            lost_after: admin.mirror_lost_after,
        }
    }

    pub(super) fn families(&self) -> Arc<dyn Families> {
        self.metrics.clone()
    }

    pub(super) fn positioned(&self, _stores: &Stores<'_>, positioned: MirrorPositioned) {
        self.metrics.partition_positioned(positioned.partition);
    }

    pub(super) fn counted(&self, _stores: &Stores<'_>, counted: MirrorCounted) {
        self.metrics.count(counted.partition, counted.outcome);
    }

    pub(super) fn replicated(&self, _stores: &Stores<'_>, replicated: MirrorReplicated) {
        self.metrics
            .replicated(replicated.partition, replicated.latency);
    }

    pub(super) fn skipped(&self, _stores: &Stores<'_>, skipped: MirrorSkipped) {
        self.metrics.skipped(skipped.0);
    }

    pub(super) fn dropped(&self, _stores: &Stores<'_>, dropped: MirrorDropped) {
        match dropped {
            MirrorDropped::Evicted { partition } => {
                self.metrics.count(partition, Outcome::Lost);
                self.metrics.dropped(1);
            }
            MirrorDropped::Missed(missed) => {
                // Those are not expected, so never counted lost: said and counted apart.
                self.metrics.dropped(missed);
                if let Some(held_back) = self.throttle.admit("feed") {
                    tracing::warn!(
                        source = %self.source,
                        held_back,
                        "the mirror reader fell {missed} heartbeats behind its source's \
                         feed: those are not matched"
                    );
                }
            }
        }
    }

    pub(super) fn difference(&self, _stores: &Stores<'_>, difference: MirrorPartitionDifference) {
        self.metrics.set_partition_difference(difference.0);
    }

    pub(super) fn expired(&self, stores: &Stores<'_>, expired: MirrorExpired) {
        let MirrorExpired {
            lost,
            age,
            replicated,
            problem,
        } = expired;
        for partition in &lost {
            self.metrics.count(*partition, Outcome::Lost);
        }
        if !lost.is_empty() {
            if let Some(held_back) = self.throttle.admit("lost") {
                tracing::warn!(
                    source = %self.source,
                    lost = lost.len(),
                    held_back,
                    "heartbeats of {} not replicated to {} within {} s",
                    self.source,
                    stores.cluster,
                    self.lost_after.as_secs_f64()
                );
            }
        }
        self.metrics.set_age(age);
        stores.status.lock().mirror = Some(MirrorFacts {
            source: self.source.clone(),
            topic: self.topic.clone(),
            last_replicated_age_seconds: age.as_secs_f64(),
            replicated,
            problem,
        });
    }
}
