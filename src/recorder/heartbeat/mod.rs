//! What became of each heartbeat, recorded: the heartbeat's series, each partition's recent
//! round trips for a person, the last acknowledgement and round trip (readiness), and the log's
//! spells of failure per leader.
//!
//! - `outcome`: produce failure reasons and skip kinds (the label values);
//! - `spells`: failures per leader for the log, told when they begin and when they end;
//! - `metrics`: the series.

mod metrics;
pub(crate) mod outcome;
mod spells;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::metrics::HeartbeatMetrics;
use self::outcome::{ProduceFailure, SkipKind};
use self::spells::LeaderSpells;
use crate::cluster::ClusterSnapshot;
use crate::config::Config;
use crate::logging::LogThrottle;
use crate::metrics::labels::PartitionLabels;
use crate::metrics::Families;
use crate::recorder::stores::Stores;

/// A beat of the producer's grid came `late` after its slot.
#[derive(Debug)]
pub(crate) struct BeatTicked {
    pub(crate) late: Duration,
}

/// Whether heartbeats go to `partition` with its reader positioned.
#[derive(Debug)]
pub(crate) struct PartitionMonitored {
    pub(crate) partition: i32,
    pub(crate) monitored: bool,
}

/// How many heartbeats are in flight (sent, not yet read back, failed or lost).
#[derive(Debug)]
pub(crate) struct InFlight(pub(crate) usize);

/// A new metadata view, for the series of each partition's leader.
#[derive(Debug)]
pub(crate) struct LeadersFollowed {
    pub(crate) previous: Arc<ClusterSnapshot>,
    pub(crate) snapshot: Arc<ClusterSnapshot>,
}

/// The leader (`leader`) acknowledged a heartbeat of `partition`, `latency` after it was sent.
#[derive(Debug)]
pub(crate) struct Acknowledged {
    pub(crate) partition: i32,
    pub(crate) leader: i32,
    pub(crate) latency: Duration,
    pub(crate) at: Instant,
}

/// The producer gave up on a heartbeat of `partition` (through `leader`).
#[derive(Debug)]
pub(crate) struct NotDelivered {
    pub(crate) partition: i32,
    pub(crate) leader: i32,
    pub(crate) reason: ProduceFailure,
    /// The client's error, for the log.
    pub(crate) error: String,
}

/// A heartbeat of `partition` came back, `latency` after it was sent.
#[derive(Debug)]
pub(crate) struct RoundTrip {
    pub(crate) partition: i32,
    pub(crate) leader: i32,
    pub(crate) latency: Duration,
    pub(crate) at: Instant,
}

/// A heartbeat of `partition` was read a second time.
#[derive(Debug)]
pub(crate) struct Duplicated {
    pub(crate) partition: i32,
}

/// One of this instance's transactional heartbeats (the transaction probe's) was read back.
#[derive(Debug)]
pub(crate) struct TransactionalRead;

/// A record of the heartbeat topic was not measured.
#[derive(Debug)]
pub(crate) struct Skipped {
    pub(crate) partition: i32,
    pub(crate) kind: SkipKind,
}

/// Heartbeats not read back in time, each `(partition, leader)`; `told`: whether the log
/// tells them (a heartbeat pushed out of a full tracker is only counted).
#[derive(Debug)]
pub(crate) struct Lost {
    pub(crate) heartbeats: Vec<(i32, i32)>,
    pub(crate) told: bool,
}

/// The heartbeat's part of the record.
pub(super) struct Heartbeat {
    metrics: Arc<HeartbeatMetrics>,
    /// Heartbeats not delivered per leader, for the log.
    undelivered: LeaderSpells,
    /// Heartbeats lost per leader, for the log.
    lost: LeaderSpells,
    throttle: LogThrottle,
    period: Duration,
    lost_after: Duration,
    retention: Duration,
}

impl Heartbeat {
    pub(super) fn new(config: &Config) -> Self {
        let admin = &config.admin;
        Heartbeat {
            metrics: Arc::new(HeartbeatMetrics::new(admin)),
            undelivered: LeaderSpells::default(),
            lost: LeaderSpells::default(),
            throttle: LogThrottle::default(),
            period: admin.produce_period,
            lost_after: admin.lost_after,
            retention: admin.broker_missing_retention,
        }
    }

    pub(super) fn families(&self) -> Arc<dyn Families> {
        self.metrics.clone()
    }

    pub(super) fn ticked(&self, _stores: &Stores<'_>, ticked: BeatTicked) {
        let late = ticked.late.as_secs_f64();
        self.metrics.beat_delay.observe(late);
        let missed = (late / self.period.as_secs_f64()).floor() as u64;
        if missed > 0 {
            self.metrics.beats_missed.inc_by(missed);
        }
    }

    pub(super) fn monitored(&self, _stores: &Stores<'_>, monitored: PartitionMonitored) {
        self.metrics
            .set_monitored(monitored.partition, monitored.monitored);
    }

    pub(super) fn in_flight(&self, _stores: &Stores<'_>, in_flight: InFlight) {
        self.metrics.messages_in_flight.set(in_flight.0 as i64);
    }

    pub(super) fn leaders_followed(&self, _stores: &Stores<'_>, followed: LeadersFollowed) {
        self.metrics.follow_leaders(
            &followed.previous,
            &followed.snapshot,
            Instant::now(),
            self.retention,
        );
    }

    /// On librdkafka's event thread: a few atomic updates and short locks.
    pub(super) fn acknowledged(&self, stores: &Stores<'_>, acknowledged: Acknowledged) {
        let Acknowledged {
            partition,
            leader,
            latency,
            at,
        } = acknowledged;
        self.metrics
            .messages_produced
            .get_or_create(&PartitionLabels::new(partition))
            .inc();
        self.metrics
            .produce_latency
            .observe(partition, leader, latency, at);
        stores.observed.acknowledged(partition, latency);
        stores.status.lock().last_acknowledged = Some(at);
        for ended in self.undelivered.succeed(partition) {
            tracing::info!(
                cluster = %stores.cluster,
                leader = ended.leader,
                partitions = ?ended.partitions,
                failed = ended.spell.counted,
                "heartbeats through leader {} are delivered again, {} after the first failure ({} not delivered)",
                ended.leader,
                ended.spell.seconds(),
                ended.spell.counted
            );
        }
    }

    pub(super) fn not_delivered(&self, stores: &Stores<'_>, failed: NotDelivered) {
        let NotDelivered {
            partition,
            leader,
            reason,
            error,
        } = failed;
        self.metrics.count_failure(partition, leader, reason);
        stores.observed.failed(partition, reason.why());
        if let Some(held_back) = self.undelivered.fail(leader, partition, 1) {
            tracing::warn!(
                cluster = %stores.cluster,
                partition,
                leader,
                reason = reason.as_str(),
                held_back,
                "heartbeat not delivered: {error}"
            );
        }
    }

    pub(super) fn round_trip(&self, stores: &Stores<'_>, trip: RoundTrip) {
        let RoundTrip {
            partition,
            leader,
            latency,
            at,
        } = trip;
        self.metrics
            .messages_consumed
            .get_or_create(&PartitionLabels::new(partition))
            .inc();
        self.metrics
            .end_to_end_latency
            .observe(partition, leader, latency, at);
        stores.observed.round_trip(partition, latency, at);
        stores.status.lock().last_round_trip = Some(at);
        for ended in self.lost.succeed(partition) {
            tracing::info!(
                leader = ended.leader,
                partitions = ?ended.partitions,
                lost = ended.spell.counted,
                "heartbeats through leader {} are read back again, {} after the first loss ({} lost)",
                ended.leader,
                ended.spell.seconds(),
                ended.spell.counted
            );
        }
    }

    pub(super) fn duplicated(&self, _stores: &Stores<'_>, duplicated: Duplicated) {
        self.metrics
            .messages_duplicated
            .get_or_create(&PartitionLabels::new(duplicated.partition))
            .inc();
    }

    pub(super) fn transactional(&self, _stores: &Stores<'_>, _read: TransactionalRead) {
        self.metrics.transactional_consumed.inc();
    }

    pub(super) fn skipped(&self, _stores: &Stores<'_>, skipped: Skipped) {
        let Skipped { partition, kind } = skipped;
        self.metrics.count_skipped(kind);
        if let Some(held_back) = self.throttle.admit(kind.as_str()) {
            tracing::info!(
                partition,
                kind = kind.as_str(),
                held_back,
                "record on the heartbeat topic skipped"
            );
        }
    }

    /// One line per leader (a broker in trouble loses every partition it leads).
    pub(super) fn lost(&self, stores: &Stores<'_>, lost: Lost) {
        for &(partition, leader) in &lost.heartbeats {
            self.metrics.count_lost(partition, leader);
            stores.observed.lost(partition);
        }
        if !lost.told {
            return;
        }
        let mut by_leader: BTreeMap<i32, (BTreeSet<i32>, Option<Option<u64>>)> = BTreeMap::new();
        for &(partition, leader) in &lost.heartbeats {
            let admitted = self.lost.fail(leader, partition, 1);
            let (partitions, told) = by_leader.entry(leader).or_default();
            partitions.insert(partition);
            *told = told.or(admitted);
        }
        for (leader, (partitions, told)) in by_leader {
            if let Some(held_back) = told {
                tracing::warn!(
                    leader,
                    partitions = ?partitions,
                    held_back,
                    "heartbeats through leader {leader} not read back within {}s",
                    self.lost_after.as_secs_f64()
                );
            }
        }
    }
}
