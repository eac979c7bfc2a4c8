//! The end-to-end consumer: reads every partition of the heartbeat topic and measures how long
//! each of this instance's heartbeats took to come back.
//!
//! Partitions are assigned directly (no consumer group, so no rebalance pauses), each at the
//! log end offset read just before assignment; only then is the partition published as
//! "reading" and does the producer start beating it. So a heartbeat is never sent before its
//! reader is in place, and nothing produced before this process started is ever measured.
//! Receiving and positioning run side by side, so waiting for offsets never delays a reading.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::client::{client_config, ClientLog, Role};
use crate::cluster::ClusterShared;
use crate::logging::LogThrottle;
use crate::message::{decode, Decoded};
use crate::metrics::{PartitionLabels, PartitionLeaderLabels, SkippedLabels};
use crate::tracker::Observation;

/// Why a record on the heartbeat topic was not measured; the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// A heartbeat of another running cc-heartbeat instance.
    OtherInstance,
    /// A heartbeat sent before this process started (an earlier run).
    Stale,
    /// The original Python tool's `{"timestamp": …}` payload.
    Legacy,
    /// No value.
    Empty,
    /// JSON of another shape.
    OtherJson,
    /// Not JSON.
    Undecodable,
    /// One of ours, read after it had been counted lost or failed.
    Late,
    /// One of ours with a sequence number we have no record of.
    UnknownSequence,
    /// One of ours found on a partition other than the one it was sent to.
    Misplaced,
}

impl SkipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipKind::OtherInstance => "other_instance",
            SkipKind::Stale => "stale",
            SkipKind::Legacy => "legacy",
            SkipKind::Empty => "empty",
            SkipKind::OtherJson => "other_json",
            SkipKind::Undecodable => "undecodable",
            SkipKind::Late => "late",
            SkipKind::UnknownSequence => "unknown_sequence",
            SkipKind::Misplaced => "misplaced",
        }
    }
}

/// What became of one record read from the heartbeat topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    Measured { latency: Duration, leader: i32 },
    Duplicate,
    Skipped(SkipKind),
}

/// Why the consumer could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the end-to-end consumer: {0}")]
pub struct ConsumerError(#[from] KafkaError);

/// The end-to-end consumer task of one cluster.
pub struct EndToEndConsumer {
    shared: Arc<ClusterShared>,
    consumer: Arc<StreamConsumer<ClientLog>>,
    throttle: LogThrottle,
}

impl EndToEndConsumer {
    pub fn new(shared: Arc<ClusterShared>) -> Result<Self, ConsumerError> {
        let config = client_config(&shared.config, Role::Consumer);
        let consumer =
            config.create_with_context(ClientLog::new(Role::Consumer, shared.status.clone()))?;
        Ok(EndToEndConsumer {
            shared,
            consumer: Arc::new(consumer),
            throttle: LogThrottle::default(),
        })
    }

    /// Reads, positions new partitions and expires lost heartbeats until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.receive() => {}
            _ = self.position() => {}
            _ = self.expire() => {}
        }
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
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
                    if let Some(held_back) = self.throttle.admit(&error.to_string()) {
                        tracing::warn!(held_back, "reading the heartbeat topic failed: {error}");
                    }
                }
            }
        }
    }

    /// Decides what a record means for this instance, updating the tracker.
    pub fn classify(&self, partition: i32, payload: Option<&[u8]>, now: Instant) -> Reading {
        let message = match decode(payload) {
            Decoded::Heartbeat(message) => message,
            Decoded::Legacy => return Reading::Skipped(SkipKind::Legacy),
            Decoded::Empty => return Reading::Skipped(SkipKind::Empty),
            Decoded::OtherJson => return Reading::Skipped(SkipKind::OtherJson),
            Decoded::Undecodable => return Reading::Skipped(SkipKind::Undecodable),
        };
        if message.instance != self.shared.instance_id {
            return Reading::Skipped(if message.sent_at_us < self.shared.started_at_us {
                SkipKind::Stale
            } else {
                SkipKind::OtherInstance
            });
        }
        if message.partition != partition {
            return Reading::Skipped(SkipKind::Misplaced);
        }
        match self
            .shared
            .tracker()
            .observe(partition, message.sequence, now)
        {
            Observation::Consumed { latency, leader } => Reading::Measured { latency, leader },
            Observation::Duplicate => Reading::Duplicate,
            Observation::Late => Reading::Skipped(SkipKind::Late),
            Observation::Unknown => Reading::Skipped(SkipKind::UnknownSequence),
        }
    }

    fn record(&self, partition: i32, reading: Reading, now: Instant) {
        let metrics = &self.shared.metrics;
        match reading {
            Reading::Measured { latency, leader } => {
                metrics
                    .messages_consumed
                    .get_or_create(&PartitionLabels::new(partition))
                    .inc();
                metrics
                    .end_to_end_latency
                    .get_or_create(&PartitionLeaderLabels::new(partition, leader))
                    .observe(latency.as_secs_f64());
                self.shared.status.lock().last_round_trip = Some(now);
            }
            Reading::Duplicate => {
                metrics
                    .messages_duplicated
                    .get_or_create(&PartitionLabels::new(partition))
                    .inc();
            }
            Reading::Skipped(kind) => {
                metrics
                    .messages_skipped
                    .get_or_create(&SkippedLabels {
                        partition: partition.to_string(),
                        kind: kind.as_str().to_string(),
                    })
                    .inc();
                if let Some(held_back) = self.throttle.admit(kind.as_str()) {
                    tracing::info!(
                        partition,
                        kind = kind.as_str(),
                        held_back,
                        "record on the heartbeat topic skipped"
                    );
                }
            }
        }
    }

    /// Counts heartbeats not read back within the deadline as lost, every second.
    async fn expire(&self) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            let (lost, pending) = {
                let mut tracker = self.shared.tracker();
                (tracker.expire(Instant::now()), tracker.pending())
            };
            let metrics = &self.shared.metrics;
            for message in &lost {
                metrics
                    .messages_lost
                    .get_or_create(&PartitionLeaderLabels::new(
                        message.partition,
                        message.leader,
                    ))
                    .inc();
            }
            if let Some(first) = lost.first() {
                if let Some(held_back) = self.throttle.admit("lost") {
                    tracing::warn!(
                        count = lost.len(),
                        partition = first.partition,
                        leader = first.leader,
                        held_back,
                        "heartbeats not read back within {}s",
                        self.shared.config.admin.lost_after.as_secs_f64()
                    );
                }
            }
            metrics.messages_in_flight.set(pending as i64);
        }
    }

    /// Assigns partitions as metadata reveals them, each at its current end.
    async fn position(&self) {
        let mut view = self.shared.view.subscribe();
        loop {
            let partitions: BTreeSet<i32> = view
                .borrow_and_update()
                .partitions
                .keys()
                .copied()
                .collect();
            let reading = self.shared.reading.borrow().clone();
            if partitions.is_empty() && !reading.is_empty() {
                // The topic is gone (deleted): stop reading, start afresh when it is back.
                if let Err(error) = self.consumer.unassign() {
                    tracing::warn!("cannot unassign the heartbeat topic: {error}");
                }
                self.shared.reading.send_replace(Arc::new(BTreeSet::new()));
            }
            let new: Vec<i32> = partitions.difference(&reading).copied().collect();
            if !new.is_empty() {
                match self.assign_at_end(&new).await {
                    Ok(()) => {
                        let mut now_reading = (*reading).clone();
                        now_reading.extend(new.iter().copied());
                        tracing::info!(partitions = ?new, "reading heartbeat partitions from their end");
                        self.shared.reading.send_replace(Arc::new(now_reading));
                    }
                    Err(error) => {
                        // Retried at the next metadata refresh.
                        if let Some(held_back) = self.throttle.admit("position") {
                            tracing::warn!(
                                held_back,
                                "cannot position the end-to-end consumer: {error}"
                            );
                        }
                    }
                }
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    }

    async fn assign_at_end(&self, partitions: &[i32]) -> Result<(), KafkaError> {
        let topic = self.shared.config.admin.heartbeat_topic.clone();
        let timeout = self.shared.config.admin.check_metadata_timeout;
        let consumer = self.consumer.clone();
        let partitions = partitions.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut latest = TopicPartitionList::new();
            for partition in &partitions {
                latest.add_partition_offset(&topic, *partition, Offset::End)?;
            }
            // A timestamp of "end" asks each partition's log end offset, all in one request.
            let ends = consumer.offsets_for_times(latest, timeout)?;
            let mut assignment = TopicPartitionList::new();
            for element in ends.elements() {
                if let Some(error) = element.error().err() {
                    return Err(error);
                }
                assignment.add_partition_offset(
                    element.topic(),
                    element.partition(),
                    element.offset(),
                )?;
            }
            consumer.incremental_assign(&assignment)
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }
}
