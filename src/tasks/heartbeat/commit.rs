//! The group coordinator probe: every `probe.commit.period.seconds` the end-to-end consumer
//! commits its positions to its group, timed, as any application's consumer commits.
//!
//! The commit is a simple one (no join, no generation): the broker takes it without a
//! rebalance, and several instances sharing the group each commit theirs without disturbing
//! the others. When the coordinator is not known yet, the commit includes finding it
//! (FindCoordinator), as an application's first commit does. The coordinator is named from the
//! consumer's statistics; until they have named it, `coordinator="unknown"`.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::MissedTickBehavior;

use super::state::HeartbeatState;
use crate::kafka::client::ClientLog;
use crate::logging::LogThrottle;
use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::Families;
use crate::permissions::{Operation, Resource, Right};

/// Why a commit failed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitFailure {
    /// No answer within the commit period.
    TimedOut,
    /// No coordinator for the group, or the one asked is loading or no longer it.
    CoordinatorUnavailable,
    /// The account may not read the group (an ACL).
    AuthorizationFailed,
    /// The group has members (an application joined it with this group id), so commits
    /// without a generation are refused.
    GroupInUse,
    /// The connection to the coordinator failed.
    Connection,
    /// Anything else.
    Other,
}

impl CommitFailure {
    const ALL: [CommitFailure; 6] = [
        CommitFailure::TimedOut,
        CommitFailure::CoordinatorUnavailable,
        CommitFailure::AuthorizationFailed,
        CommitFailure::GroupInUse,
        CommitFailure::Connection,
        CommitFailure::Other,
    ];

    fn of(error: &KafkaError) -> Self {
        match error.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::WaitingForCoordinator,
            ) => CommitFailure::CoordinatorUnavailable,
            Some(
                RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::TopicAuthorizationFailed,
            ) => CommitFailure::AuthorizationFailed,
            Some(
                RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::FencedInstanceId,
            ) => CommitFailure::GroupInUse,
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve,
            ) => CommitFailure::Connection,
            Some(RDKafkaErrorCode::RequestTimedOut | RDKafkaErrorCode::OperationTimedOut) => {
                CommitFailure::TimedOut
            }
            _ => CommitFailure::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CommitFailure::TimedOut => "timed_out",
            CommitFailure::CoordinatorUnavailable => "coordinator_unavailable",
            CommitFailure::AuthorizationFailed => "authorization_failed",
            CommitFailure::GroupInUse => "group_in_use",
            CommitFailure::Connection => "connection",
            CommitFailure::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CoordinatorLabels {
    coordinator: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CoordinatorReasonLabels {
    coordinator: String,
    reason: &'static str,
}

/// The `coordinator` label value before the statistics named one.
pub(super) const UNKNOWN_COORDINATOR: &str = "unknown";

/// The commit probe's series.
#[derive(Debug)]
pub(super) struct CommitMetrics {
    latency: HistogramFamily<CoordinatorLabels>,
    commits: Counter,
    failures: Family<CoordinatorReasonLabels, Counter>,
}

impl CommitMetrics {
    /// Latency buckets up to `deadline`; the unknown coordinator's failures at zero.
    fn new(deadline: Duration) -> Self {
        let metrics = CommitMetrics {
            latency: Family::new_with_constructor(Buckets::up_to(deadline)),
            commits: Counter::default(),
            failures: Family::default(),
        };
        metrics.init_coordinator(UNKNOWN_COORDINATOR);
        metrics
    }

    /// Creates `coordinator`'s failure counters at zero, every reason. Idempotent.
    fn init_coordinator(&self, coordinator: &str) {
        for reason in CommitFailure::ALL {
            drop(self.failures.get_or_create(&CoordinatorReasonLabels {
                coordinator: coordinator.to_string(),
                reason: reason.as_str(),
            }));
        }
    }
}

impl Families for CommitMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "offset_commit_latency",
            "Time to commit the end-to-end consumer's positions to its group, finding the coordinator when needed, by coordinator",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "offset_commits",
            "Commits of the end-to-end consumer's positions the group coordinator accepted",
            self.commits.clone(),
        );
        registry.register(
            "offset_commit_failures",
            "Commits that failed, by coordinator and reason",
            self.failures.clone(),
        );
    }
}

/// Commits the end-to-end consumer's positions periodically.
pub(super) struct CommitProbe {
    heartbeat: Arc<HeartbeatState>,
    consumer: Arc<StreamConsumer<ClientLog>>,
    metrics: Arc<CommitMetrics>,
    /// The group coordinator's broker id, from the consumer's statistics (-1: not known).
    coordinator: Arc<AtomicI32>,
    throttle: LogThrottle,
}

impl CommitProbe {
    pub(super) fn new(
        heartbeat: Arc<HeartbeatState>,
        consumer: Arc<StreamConsumer<ClientLog>>,
        coordinator: Arc<AtomicI32>,
    ) -> Self {
        let period = heartbeat.shared.config.admin.probe_commit_period;
        let metrics = Arc::new(CommitMetrics::new(period.max(Duration::from_secs(1))));
        if !period.is_zero() {
            heartbeat.shared.metrics.add(metrics.clone());
        }
        CommitProbe {
            heartbeat,
            consumer,
            metrics,
            coordinator,
            throttle: LogThrottle::default(),
        }
    }

    /// The statistics named the group's coordinator.
    pub(super) fn coordinator_known(&self, id: i32) {
        if self.coordinator.swap(id, Ordering::Relaxed) != id {
            self.metrics.init_coordinator(&id.to_string());
        }
    }

    /// Commits every `probe.commit.period.seconds` (never with 0), each bounded by the period:
    /// a commit still pending then is counted as timed out, and the next waits for it.
    pub(super) async fn run(&self) {
        let period = self.heartbeat.shared.config.admin.probe_commit_period;
        if period.is_zero() {
            return std::future::pending().await;
        }
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(positions) = self.positions() else {
                continue;
            };
            let consumer = self.consumer.clone();
            let started = Instant::now();
            let mut commit =
                tokio::task::spawn_blocking(move || consumer.commit(&positions, CommitMode::Sync));
            let result = match tokio::time::timeout(period, &mut commit).await {
                Ok(joined) => joined.unwrap_or(Err(KafkaError::Canceled)),
                Err(_) => {
                    self.record(
                        Err(KafkaError::OffsetFetch(RDKafkaErrorCode::OperationTimedOut)),
                        started.elapsed(),
                    );
                    // One commit at a time: a commit that hangs is not joined by more.
                    let _ = commit.await;
                    continue;
                }
            };
            self.record(result, started.elapsed());
        }
    }

    /// The positions of the partitions read so far (nothing before the first is read).
    fn positions(&self) -> Option<TopicPartitionList> {
        let positions = self.consumer.position().ok()?;
        let mut read = TopicPartitionList::new();
        for element in positions.elements() {
            if let Offset::Offset(offset) = element.offset() {
                read.add_partition_offset(
                    element.topic(),
                    element.partition(),
                    Offset::Offset(offset),
                )
                .ok()?;
            }
        }
        (read.count() > 0).then_some(read)
    }

    fn record(&self, result: Result<(), KafkaError>, elapsed: Duration) {
        let coordinator = match self.coordinator.load(Ordering::Relaxed) {
            id if id >= 0 => id.to_string(),
            _ => UNKNOWN_COORDINATOR.to_string(),
        };
        let shared = &self.heartbeat.shared;
        let group_read = Right::new(
            Operation::Read,
            Resource::Group(shared.config.consumer_group_id()),
        );
        match result {
            Ok(()) => {
                self.metrics
                    .latency
                    .get_or_create(&CoordinatorLabels { coordinator })
                    .observe(elapsed.as_secs_f64());
                self.metrics.commits.inc();
                shared.permissions.allow(&group_read);
                if let Some(spell) = self.throttle.reset("commit") {
                    tracing::info!(
                        failed = spell.counted,
                        "offset commits to the group coordinator succeed again, {} after the first failure ({} failed)",
                        spell.seconds(),
                        spell.counted
                    );
                }
            }
            Err(error) => {
                let reason = CommitFailure::of(&error);
                self.metrics
                    .failures
                    .get_or_create(&CoordinatorReasonLabels {
                        coordinator: coordinator.clone(),
                        reason: reason.as_str(),
                    })
                    .inc();
                if reason == CommitFailure::AuthorizationFailed {
                    // A commit needs READ on the group and on the topic.
                    let right = match error.rdkafka_error_code() {
                        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => Right::new(
                            Operation::Read,
                            Resource::Topic(shared.config.admin.heartbeat_topic.clone()),
                        ),
                        _ => group_read,
                    };
                    shared
                        .permissions
                        .refuse(right, "offset commits are refused", &error);
                }
                if let Some(held_back) = self.throttle.admit("commit") {
                    tracing::warn!(
                        coordinator,
                        reason = reason.as_str(),
                        held_back,
                        "committing offsets to the group coordinator failed: {error}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_errors_are_told_apart() {
        let of = |code| CommitFailure::of(&KafkaError::ConsumerCommit(code)).as_str();
        assert_eq!(
            of(RDKafkaErrorCode::NotCoordinator),
            "coordinator_unavailable"
        );
        assert_eq!(
            of(RDKafkaErrorCode::WaitingForCoordinator),
            "coordinator_unavailable"
        );
        assert_eq!(
            of(RDKafkaErrorCode::GroupAuthorizationFailed),
            "authorization_failed"
        );
        assert_eq!(of(RDKafkaErrorCode::UnknownMemberId), "group_in_use");
        assert_eq!(of(RDKafkaErrorCode::AllBrokersDown), "connection");
        assert_eq!(of(RDKafkaErrorCode::OperationTimedOut), "timed_out");
        assert_eq!(of(RDKafkaErrorCode::InvalidCommitOffsetSize), "other");
    }
}
