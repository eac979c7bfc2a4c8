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

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::MissedTickBehavior;

use super::state::HeartbeatState;
use crate::kafka::client::ClientLog;
use crate::kafka::commits::CommitQueue;
use crate::recorder::commit::{CommitAnswered, CommitFailure, CoordinatorNamed};
use crate::recorder::permissions::{Allowed, Operation, Refused, Resource, Right};

/// Commits the end-to-end consumer's positions periodically.
pub(super) struct CommitProbe {
    heartbeat: Arc<HeartbeatState>,
    consumer: Arc<StreamConsumer<ClientLog>>,
    /// Where the commits' results arrive.
    queue: Arc<CommitQueue>,
    /// The group coordinator's broker id, from the consumer's statistics (-1: not known).
    coordinator: Arc<AtomicI32>,
}

impl CommitProbe {
    pub(super) fn new(
        heartbeat: Arc<HeartbeatState>,
        consumer: Arc<StreamConsumer<ClientLog>>,
        coordinator: Arc<AtomicI32>,
    ) -> Self {
        CommitProbe {
            heartbeat,
            queue: Arc::new(CommitQueue::new(consumer.clone())),
            consumer,
            coordinator,
        }
    }

    /// The statistics named the group's coordinator (each report does).
    pub(super) fn coordinator_known(&self, id: i32) {
        let old = self.coordinator.swap(id, Ordering::Relaxed);
        self.heartbeat
            .recorder
            .record(CoordinatorNamed { from: old, to: id });
    }

    /// Commits every `probe.commit.period.seconds` (never with 0), each bounded by the period:
    /// a commit still pending then is counted as timed out, and the next waits for it. Its
    /// result is waited for a second at a time, so a stopped probe lets go of the consumer
    /// within a second, whatever the period.
    pub(super) async fn run(&self) {
        let period = self.heartbeat.config.admin.probe_commit_period;
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
        let coordinator = self.coordinator.load(Ordering::Relaxed);
        let state = &self.heartbeat;
        let group_read = Right::new(
            Operation::Read,
            Resource::Group(state.config.consumer_group_id()),
        );
        let failure = match &result {
            Ok(()) => None,
            Err(error) => Some((failure_of(error), error.to_string())),
        };
        let reason = failure.as_ref().map(|(reason, _)| *reason);
        state.recorder.record(CommitAnswered {
            coordinator,
            took: elapsed,
            failure,
        });
        match result {
            Ok(()) => state.recorder.record(Allowed(group_read)),
            Err(error) if reason == Some(CommitFailure::AuthorizationFailed) => {
                // A commit needs READ on the group and on the topic.
                let right = match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::TopicAuthorizationFailed) => Right::new(
                        Operation::Read,
                        Resource::Topic(state.config.admin.heartbeat_topic.clone()),
                    ),
                    _ => group_read,
                };
                state
                    .recorder
                    .record(Refused::new(right, "offset commits are refused", &error));
            }
            Err(_) => {}
        }
    }
}

/// Why a commit failed, as a `reason` label.
fn failure_of(error: &KafkaError) -> CommitFailure {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::WaitingForCoordinator,
        ) => CommitFailure::CoordinatorUnavailable,
        Some(
            RDKafkaErrorCode::GroupAuthorizationFailed | RDKafkaErrorCode::TopicAuthorizationFailed,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_errors_are_told_apart() {
        let of = |code| failure_of(&KafkaError::ConsumerCommit(code)).as_str();
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
