//! The group coordinator probe: every `probe.commit.period.seconds` the end-to-end consumer
//! commits its positions to its group, timed, as any application's consumer commits.
//!
//! The commit is a simple one (no join, no generation): the broker takes it without a
//! rebalance, and several instances sharing the group each commit theirs without disturbing
//! the others. When the coordinator is not known yet, the commit includes finding it
//! (FindCoordinator), as an application's first commit does. The coordinator is named from the
//! consumer's statistics; until they have named it, `coordinator="unknown"`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::MissedTickBehavior;

use super::state::HeartbeatState;
use crate::kafka::client::ClientLog;
use crate::kafka::commits::CommitQueue;
use crate::logging::LogThrottle;
use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::Families;
use crate::recorder::permissions::{Operation, Resource, Right};
use crate::sync::lock;

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
    /// Since when each former coordinator (by label) has not been the group's: its series go
    /// once that is longer ago than the retention, so coordinators moving (a broker restarted)
    /// add no series forever.
    retired: Mutex<BTreeMap<String, Instant>>,
}

impl CommitMetrics {
    /// Latency buckets up to `deadline`; the unknown coordinator's failures at zero.
    fn new(deadline: Duration) -> Self {
        let metrics = CommitMetrics {
            latency: Family::new_with_constructor(Buckets::up_to(deadline)),
            commits: Counter::default(),
            failures: Family::default(),
            retired: Mutex::default(),
        };
        metrics.init_coordinator(UNKNOWN_COORDINATOR);
        metrics
    }

    /// The group's coordinator moved from `old` to `new` (labels) at `now`, or stayed (equal):
    /// `new`'s counters exist, and the series of a coordinator that has not been it for
    /// `retention` go.
    fn follow_coordinator(&self, old: &str, new: &str, now: Instant, retention: Duration) {
        let mut retired = lock(&self.retired);
        if old != new {
            self.init_coordinator(new);
            retired.insert(old.to_string(), now);
        }
        retired.remove(new);
        retired.retain(|coordinator, since| {
            let expired = now.saturating_duration_since(*since) >= retention;
            if expired {
                self.latency.remove(&CoordinatorLabels {
                    coordinator: coordinator.clone(),
                });
                for reason in CommitFailure::ALL {
                    self.failures.remove(&CoordinatorReasonLabels {
                        coordinator: coordinator.clone(),
                        reason: reason.as_str(),
                    });
                }
            }
            !expired
        });
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
    /// Where the commits' results arrive.
    queue: Arc<CommitQueue>,
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
            heartbeat.shared.recorder.metrics().add(metrics.clone());
        }
        CommitProbe {
            heartbeat,
            queue: Arc::new(CommitQueue::new(consumer.clone())),
            consumer,
            metrics,
            coordinator,
            throttle: LogThrottle::default(),
        }
    }

    /// The statistics named the group's coordinator (each report does).
    pub(super) fn coordinator_known(&self, id: i32) {
        let old = self.coordinator.swap(id, Ordering::Relaxed);
        self.metrics.follow_coordinator(
            &coordinator_label(old),
            &id.to_string(),
            Instant::now(),
            self.heartbeat.shared.config.admin.broker_missing_retention,
        );
    }

    /// Commits every `probe.commit.period.seconds` (never with 0), each bounded by the period:
    /// a commit still pending then is counted as timed out, and the next waits for it. Its
    /// result is waited for a second at a time, so a stopped probe lets go of the consumer
    /// within a second, whatever the period.
    pub(super) async fn run(&self) {
        let period = self.heartbeat.shared.config.admin.probe_commit_period;
        if period.is_zero() {
            return std::future::pending().await;
        }
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A commit counted as timed out, whose result has not come yet.
        let mut pending = false;
        loop {
            interval.tick().await;
            // One commit at a time: a commit that hangs is not joined by more.
            if pending && self.queue.result(Duration::ZERO).is_none() {
                continue;
            }
            pending = false;
            let Some(positions) = self.positions() else {
                continue;
            };
            let started = Instant::now();
            if let Err(error) = self.queue.commit(&positions) {
                self.record(Err(error), started.elapsed());
                continue;
            }
            match self.result_within(period, started).await {
                Some(result) => self.record(result, started.elapsed()),
                None => {
                    self.record(
                        Err(KafkaError::OffsetFetch(RDKafkaErrorCode::OperationTimedOut)),
                        started.elapsed(),
                    );
                    pending = true;
                }
            }
        }
    }

    /// The result of the commit started at `started`, if it comes within `limit` of it.
    async fn result_within(&self, limit: Duration, started: Instant) -> Option<KafkaResult<()>> {
        loop {
            let left = limit.checked_sub(started.elapsed())?;
            let queue = self.queue.clone();
            let slice = left.min(Duration::from_secs(1));
            match tokio::task::spawn_blocking(move || queue.result(slice)).await {
                Ok(Some(result)) => return Some(result),
                Ok(None) => continue,
                Err(_) => return Some(Err(KafkaError::Canceled)),
            }
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
        let coordinator = coordinator_label(self.coordinator.load(Ordering::Relaxed));
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
                shared.recorder.permissions().allow(&group_read);
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
                    shared.recorder.permissions().refuse(
                        right,
                        "offset commits are refused",
                        &error,
                    );
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

/// The `coordinator` label of broker `id` (-1: not known yet).
fn coordinator_label(id: i32) -> String {
    if id >= 0 {
        id.to_string()
    } else {
        UNKNOWN_COORDINATOR.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_former_coordinators_series_go_after_the_retention() {
        let metrics = CommitMetrics::new(Duration::from_secs(10));
        let series = |metrics: &CommitMetrics| {
            let mut registry = Registry::default();
            metrics.register(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        let (start, retention) = (Instant::now(), Duration::from_secs(60));
        metrics.follow_coordinator("unknown", "1", start, retention);
        metrics.follow_coordinator("1", "2", start + retention / 2, retention);
        let text = series(&metrics);
        assert!(
            text.contains("coordinator=\"unknown\""),
            "kept within the retention"
        );
        assert!(text.contains("coordinator=\"1\""));
        metrics.follow_coordinator("2", "2", start + retention, retention);
        let text = series(&metrics);
        assert!(!text.contains("coordinator=\"unknown\""), "{text}");
        assert!(text.contains("coordinator=\"1\""), "1 retired later");
        // Back within the retention: kept, and not retired any more.
        metrics.follow_coordinator("2", "1", start + retention, retention);
        metrics.follow_coordinator("1", "1", start + retention * 3, retention);
        let text = series(&metrics);
        assert!(text.contains("coordinator=\"1\""));
        assert!(!text.contains("coordinator=\"2\""), "{text}");
    }

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
