//! The end-to-end consumer: reads every partition of the heartbeat topic and measures how long
//! each of this instance's heartbeats took to come back.
//!
//! Partitions are assigned directly (no consumer group, so no rebalance pauses), each at the
//! log end offset read just before assignment; only then is the partition published as
//! "reading" and does the producer start beating it. So a heartbeat is never sent before its
//! reader is in place, and nothing produced before this process started is ever measured.
//! Receiving and positioning run side by side, so waiting for offsets never delays a reading.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::commit::CommitProbe;
use super::state::HeartbeatState;
use crate::config::Config;
use crate::kafka::client::{client_config, is_transport_failure, ClientLog, Role};
use crate::kafka::handle::AnyClient;
use crate::kafka::positions::{end_offsets, EndOffset};
use crate::kafka::stats::logical_coordinator;
use crate::kafka::stats::StatsInbox;
use crate::logging::LogThrottle;
use crate::message::{decode, Decoded};
use crate::recorder::clients::ClientStatistics;
use crate::recorder::heartbeat::outcome::SkipKind;
use crate::recorder::heartbeat::{Duplicated, Lost, RoundTrip, Skipped, TransactionalRead};
use crate::recorder::permissions::{Allowed, Operation, Refused, Resource, Right};
use crate::sync::lock;
use crate::tracker::Observation;

/// What became of one record read from the heartbeat topic.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    Measured {
        latency: Duration,
        leader: i32,
    },
    /// One of this instance's transactional heartbeats (the transaction probe's), committed.
    Transactional,
    Duplicate,
    Skipped(SkipKind),
}

/// The end-to-end consumer task of one cluster.
pub(crate) struct EndToEndConsumer {
    heartbeat: Arc<HeartbeatState>,
    consumer: Arc<StreamConsumer<ClientLog>>,
    throttle: LogThrottle,
    /// The rights reading was refused for (READ on the topic, on the group), each until a
    /// heartbeat is read again.
    refused: Mutex<BTreeSet<Right>>,
    /// The consumer's statistics: throttling, and the group's coordinator.
    stats: Arc<StatsInbox>,
    commit: CommitProbe,
}

impl EndToEndConsumer {
    /// The consumer's client, for credentials changed at run time.
    pub(crate) fn client(&self) -> Arc<dyn AnyClient> {
        self.consumer.clone()
    }

    pub(super) fn new(heartbeat: Arc<HeartbeatState>) -> Result<Self, KafkaError> {
        let state = &heartbeat;
        let config = client_config(&state.config, Role::Consumer);
        let stats = Arc::new(StatsInbox::default());
        let consumer: Arc<StreamConsumer<ClientLog>> = Arc::new(
            config.create_with_context(
                ClientLog::for_cluster(&state.config, Role::Consumer, state.recorder.clone())
                    .with_stats(stats.clone()),
            )?,
        );
        let commit = CommitProbe::new(
            heartbeat.clone(),
            consumer.clone(),
            Arc::new(AtomicI32::new(-1)),
        );
        Ok(EndToEndConsumer {
            heartbeat,
            consumer,
            stats,
            commit,
            throttle: LogThrottle::default(),
            refused: Mutex::default(),
        })
    }

    /// Reads, positions new partitions and expires lost heartbeats until cancelled.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.receive() => {}
            _ = self.position() => {}
            _ = self.expire() => {}
            _ = self.commit.run() => {}
            _ = self.statistics() => {}
        }
        let EndToEndConsumer {
            consumer, commit, ..
        } = self;
        drop(commit);
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }

    /// Records each statistics report: how much each broker throttles this consumer, and
    /// which broker coordinates its group.
    async fn statistics(&self) {
        loop {
            self.stats.arrived().await;
            let inbox = self.stats.clone();
            let Ok(Some(statistics)) = tokio::task::spawn_blocking(move || inbox.take()).await
            else {
                continue;
            };
            if let Some(coordinator) = logical_coordinator(&statistics, "GroupCoordinator") {
                self.commit.coordinator_known(coordinator);
            }
            self.heartbeat.recorder.record(ClientStatistics {
                role: Role::Consumer,
                statistics,
            });
        }
    }

    async fn receive(&self) {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    let now = Instant::now();
                    let partition = message.partition();
                    let reading = self.classify(partition, message.payload(), now);
                    self.record(partition, reading, now);
                }
                Err(error) => {
                    self.note_refusal(&error);
                    if let Some(held_back) = self.throttle.admit(&error.to_string()) {
                        // A lost connection is told by the connection checks, with the broker.
                        if is_transport_failure(error.rdkafka_error_code()) {
                            tracing::debug!(
                                held_back,
                                "reading the heartbeat topic failed: {error}"
                            );
                        } else {
                            tracing::warn!(
                                held_back,
                                "reading the heartbeat topic failed: {error}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A refusal to read (a missing right) is a readiness cause, naming the right, until a
    /// heartbeat is read again.
    fn note_refusal(&self, error: &KafkaError) {
        let state = &self.heartbeat;
        let right = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::TopicAuthorizationFailed) => read_topic(&state.config),
            Some(RDKafkaErrorCode::GroupAuthorizationFailed) => Right::new(
                Operation::Read,
                Resource::Group(state.config.consumer_group_id()),
            ),
            _ => return,
        };
        lock(&self.refused).insert(right.clone());
        state.recorder.record(Refused::new(
            right,
            "reading heartbeats back is refused",
            error,
        ));
    }

    /// Decides what a record means for this instance, updating the tracker.
    fn classify(&self, partition: i32, payload: Option<&[u8]>, now: Instant) -> Reading {
        let message = match decode(payload) {
            Decoded::Heartbeat(message) => message,
            Decoded::Legacy => return Reading::Skipped(SkipKind::Legacy),
            Decoded::Empty => return Reading::Skipped(SkipKind::Empty),
            Decoded::OtherJson => return Reading::Skipped(SkipKind::OtherJson),
            Decoded::Undecodable => return Reading::Skipped(SkipKind::Undecodable),
        };
        let state = &self.heartbeat;
        if message.instance != state.instance_id {
            return Reading::Skipped(if message.sent_at_us < state.started_at_us {
                SkipKind::Stale
            } else {
                SkipKind::OtherInstance
            });
        }
        if message.partition != partition {
            return Reading::Skipped(SkipKind::Misplaced);
        }
        if message.transactional {
            return Reading::Transactional;
        }
        let (observation, pending) = {
            let mut tracker = self.heartbeat.tracker();
            (
                tracker.observe(partition, message.sequence, now),
                tracker.pending(),
            )
        };
        self.heartbeat.set_in_flight(pending);
        match observation {
            Observation::Consumed { latency, leader } => Reading::Measured { latency, leader },
            Observation::Duplicate => Reading::Duplicate,
            Observation::Late => Reading::Skipped(SkipKind::Late),
            Observation::Unknown => Reading::Skipped(SkipKind::UnknownSequence),
        }
    }

    fn record(&self, partition: i32, reading: Reading, now: Instant) {
        let recorder = &self.heartbeat.recorder;
        match reading {
            Reading::Measured { latency, leader } => {
                recorder.record(RoundTrip {
                    partition,
                    leader,
                    latency,
                    at: now,
                });
                let refused = std::mem::take(&mut *lock(&self.refused));
                for right in refused {
                    recorder.record(Allowed(right));
                }
            }
            Reading::Transactional => recorder.record(TransactionalRead),
            Reading::Duplicate => recorder.record(Duplicated { partition }),
            Reading::Skipped(kind) => recorder.record(Skipped { partition, kind }),
        }
    }

    /// Counts heartbeats not read back within the deadline as lost, every second.
    async fn expire(&self) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            let (lost, pending) = {
                let mut tracker = self.heartbeat.tracker();
                (tracker.expire(Instant::now()), tracker.pending())
            };
            if !lost.is_empty() {
                self.heartbeat.recorder.record(Lost {
                    heartbeats: lost
                        .iter()
                        .map(|message| (message.partition, message.leader))
                        .collect(),
                    told: true,
                });
            }
            self.heartbeat.set_in_flight(pending);
        }
    }

    /// Assigns partitions as metadata reveals them, each at its current end. A partition
    /// whose end cannot be read (its leader is down) is retried later without holding up the
    /// others.
    async fn position(&self) {
        let mut view = self.heartbeat.recorder.subscribe();
        loop {
            let (partitions, deleted) = {
                let snapshot = view.borrow_and_update();
                let partitions: BTreeSet<i32> = snapshot.partitions.keys().copied().collect();
                (partitions, snapshot.topic_missing())
            };
            let reading = self.heartbeat.reading.borrow().clone();
            if deleted && !reading.is_empty() {
                // The topic was deleted: stop reading, start afresh when it is back.
                let consumer = self.consumer.clone();
                match tokio::task::spawn_blocking(move || consumer.unassign()).await {
                    Ok(Err(error)) => {
                        tracing::warn!("cannot unassign the heartbeat topic: {error}")
                    }
                    Err(error) => tracing::warn!("cannot unassign the heartbeat topic: {error}"),
                    Ok(Ok(())) => tracing::warn!("the heartbeat topic is gone; reading stopped"),
                }
                self.heartbeat
                    .reading
                    .send_replace(Arc::new(BTreeSet::new()));
            }
            let new: Vec<i32> = partitions.difference(&reading).copied().collect();
            let mut retry_soon = false;
            if !new.is_empty() {
                let (positioned, failed) = self.assign_at_end(&new).await;
                if !positioned.is_empty() {
                    tracing::info!(partitions = ?positioned, "reading heartbeat partitions from their end");
                    self.heartbeat.reading.send_modify(|reading| {
                        let mut now_reading = (**reading).clone();
                        now_reading.extend(positioned.iter().copied());
                        *reading = Arc::new(now_reading);
                    });
                }
                if let Some((partition, error)) = failed.first() {
                    retry_soon = true;
                    // A partition the client's metadata does not list yet (the topic grew) is
                    // found by asking now, not at the client's next periodic refresh.
                    self.refresh_metadata().await;
                    if let Some(held_back) = self.throttle.admit("position") {
                        tracing::warn!(
                            partition,
                            failed = failed.len(),
                            held_back,
                            "cannot read the end offset of heartbeat partitions (retrying): {error}"
                        );
                    }
                }
            }
            tokio::select! {
                changed = view.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)), if retry_soon => {}
            }
        }
    }

    /// Asks the consumer's client for the heartbeat topic's metadata now (blocking, so on a
    /// blocking thread).
    async fn refresh_metadata(&self) {
        let consumer = self.consumer.clone();
        let admin = &self.heartbeat.config.admin;
        let (topic, timeout) = (admin.heartbeat_topic.clone(), admin.check_metadata_timeout);
        let refreshed =
            tokio::task::spawn_blocking(move || consumer.fetch_metadata(Some(&topic), timeout))
                .await;
        if let Ok(Err(error)) = refreshed {
            tracing::debug!("the consumer's metadata refresh failed: {error}");
        }
    }

    /// Reads the end offset of each partition and assigns those that answered there.
    /// Returns the partitions now read and those that failed.
    async fn assign_at_end(&self, partitions: &[i32]) -> (Vec<i32>, Vec<(i32, KafkaError)>) {
        let admin = &self.heartbeat.config.admin;
        let topic = admin.heartbeat_topic.clone();
        let timeout = admin.check_metadata_timeout;
        let consumer = self.consumer.clone();
        let all = partitions.to_vec();
        // One request for all partitions; it fails as a whole if any leader does not answer.
        let batch = {
            let (consumer, topic) = (consumer.clone(), topic.clone());
            tokio::task::spawn_blocking(move || end_offsets(&consumer, &topic, &all, timeout)).await
        };
        let ends: Vec<EndOffset> = match batch {
            Ok(Ok(ends)) => ends,
            _ => {
                // Then one request per partition, a few at a time, so the healthy ones go ahead.
                futures::stream::iter(partitions.iter().copied())
                    .map(|partition| {
                        let (consumer, topic) = (consumer.clone(), topic.clone());
                        async move {
                            let result = tokio::task::spawn_blocking(move || {
                                end_offsets(&consumer, &topic, &[partition], timeout)
                            })
                            .await
                            .map_err(|_| KafkaError::Canceled)
                            .and_then(|result| result)
                            .and_then(|mut ends| {
                                ends.pop()
                                    .map(|(_, end)| end)
                                    .unwrap_or(Err(KafkaError::Canceled))
                            });
                            (partition, result)
                        }
                    })
                    .buffer_unordered(8)
                    .collect()
                    .await
            }
        };
        let mut assignment = TopicPartitionList::new();
        let mut positioned = Vec::new();
        let mut failed = Vec::new();
        for (partition, end) in ends {
            match end.and_then(|offset| {
                assignment.add_partition_offset(&topic, partition, Offset::Offset(offset))
            }) {
                Ok(()) => positioned.push(partition),
                Err(error) => failed.push((partition, error)),
            }
        }
        if positioned.is_empty() {
            return (positioned, failed);
        }
        let assigned =
            tokio::task::spawn_blocking(move || consumer.incremental_assign(&assignment))
                .await
                .map_err(|_| KafkaError::Canceled)
                .and_then(|result| result);
        match assigned {
            Ok(()) => {
                positioned.sort_unstable();
                (positioned, failed)
            }
            Err(error) => {
                failed.extend(
                    positioned
                        .into_iter()
                        .map(|partition| (partition, error.clone())),
                );
                (Vec::new(), failed)
            }
        }
    }
}

/// READ on the heartbeat topic: what reading heartbeats back needs.
fn read_topic(config: &Config) -> Right {
    Right::new(
        Operation::Read,
        Resource::Topic(config.admin.heartbeat_topic.clone()),
    )
}
