//! The heartbeat producer: one message to every partition of the heartbeat topic each
//! `produce.period.seconds`, on a fixed grid.
//!
//! Sending never waits: each message is handed to librdkafka and the loop moves on, so a slow
//! or dead leader delays nobody else's beat. The acknowledgement is timed in librdkafka's
//! delivery callback (on the producer's own event thread, [`crate::kafka::events`], with a
//! monotonic clock), not when some task gets round to it, so the latency recorded is the
//! broker's, not ours.
//!
//! The producer's client also reports librdkafka's statistics (its own view of each broker);
//! they are parsed on a blocking thread, never on the event thread where they would hold up
//! deliveries, and recorded there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::state::HeartbeatState;
use crate::clock::unix_micros;
use crate::cluster::{Beat, ClusterSnapshot};
use crate::config::Config;
use crate::kafka::answering_broker;
use crate::kafka::client::{client_config, ClientLog, Role};
use crate::kafka::events::EventThread;
use crate::kafka::handle::AnyClient;
use crate::kafka::stats::StatsInbox;
use crate::message::HeartbeatMessage;
use crate::recorder::clients::{ClientBrokersFollowed, ClientStatistics};
use crate::recorder::heartbeat::outcome::ProduceFailure;
use crate::recorder::heartbeat::{
    Acknowledged, BeatTicked, LeadersFollowed, Lost, NotDelivered, PartitionMonitored,
};
use crate::recorder::permissions::{Allowed, Operation, Refused, Resource, Right};

/// What the delivery callback needs to know about a message it did not send itself.
#[derive(Debug)]
pub(super) struct InFlight {
    partition: i32,
    sequence: u64,
    leader: i32,
    sent: Instant,
}

/// The producer client's context: records each delivery the moment librdkafka reports it.
pub(super) struct DeliveryRecorder {
    log: ClientLog,
    /// The latest statistics report, waiting to be parsed off the event thread.
    stats_inbox: StatsInbox,
    heartbeat: Arc<HeartbeatState>,
    /// Whether a refusal is on record (readiness says so) until a heartbeat is delivered.
    refused: AtomicBool,
}

impl ClientContext for DeliveryRecorder {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.stats_inbox.put(statistics);
    }
}

impl ProducerContext for DeliveryRecorder {
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, in_flight: Box<InFlight>) {
        let now = Instant::now();
        match result {
            Ok(message) => {
                // Blamed on the broker that acknowledged it, which during an election may not be
                // the leader metadata named when it was sent.
                let leader = answering_broker(message).unwrap_or(in_flight.leader);
                self.heartbeat.tracker().acknowledged(
                    in_flight.partition,
                    in_flight.sequence,
                    leader,
                );
                self.heartbeat.recorder.record(Acknowledged {
                    partition: in_flight.partition,
                    leader,
                    latency: now.saturating_duration_since(in_flight.sent),
                    at: now,
                });
                if self.refused.swap(false, Ordering::Relaxed) {
                    let state = &self.heartbeat;
                    for right in write_rights(&state.config) {
                        state.recorder.record(Allowed(right));
                    }
                }
            }
            Err((error, message)) => {
                if matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                ) {
                    // Purged at shutdown: nothing was measured, nothing to report.
                    return;
                }
                let leader = answering_broker(message).unwrap_or(in_flight.leader);
                record_failure(self, &in_flight, leader, error, now);
            }
        }
    }
}

/// The rights producing heartbeats needs: WRITE on the topic, and (for an idempotent producer
/// on brokers before Kafka 2.8) IDEMPOTENT_WRITE on the cluster.
fn write_rights(config: &Config) -> [Right; 2] {
    [
        Right::new(
            Operation::Write,
            Resource::Topic(config.admin.heartbeat_topic.clone()),
        ),
        Right::new(Operation::IdempotentWrite, Resource::Cluster),
    ]
}

/// Counts a heartbeat the producer gave up on, against `leader`.
fn record_failure(
    context: &DeliveryRecorder,
    in_flight: &InFlight,
    leader: i32,
    error: &KafkaError,
    now: Instant,
) {
    let heartbeat = &context.heartbeat;
    // Counted only if still in flight: a heartbeat is failed or lost, never both.
    let pending = {
        let mut tracker = heartbeat.tracker();
        if !tracker.fail(in_flight.partition, in_flight.sequence, now) {
            return;
        }
        tracker.pending()
    };
    heartbeat.tell_replicas(|instance| Beat::Failed {
        instance,
        partition: in_flight.partition,
        sequence: in_flight.sequence,
    });
    heartbeat.set_in_flight(pending);
    let reason = failure_of(error);
    let state = &heartbeat;
    state.recorder.record(NotDelivered {
        partition: in_flight.partition,
        leader,
        reason,
        error: error.to_string(),
    });
    if reason == ProduceFailure::AuthorizationFailed {
        let [write, idempotent] = write_rights(&state.config);
        let right = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::ClusterAuthorizationFailed) => idempotent,
            _ => write,
        };
        state
            .recorder
            .record(Refused::new(right, "heartbeats are refused", error));
        context.refused.store(true, Ordering::Relaxed);
    }
}

/// Why `error` failed a heartbeat.
fn failure_of(error: &KafkaError) -> ProduceFailure {
    let Some(code) = error.rdkafka_error_code() else {
        return ProduceFailure::Other;
    };
    match code {
        RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut => {
            ProduceFailure::TimedOut
        }
        RDKafkaErrorCode::QueueFull => ProduceFailure::QueueFull,
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => ProduceFailure::AuthorizationFailed,
        RDKafkaErrorCode::UnknownTopicOrPartition
        | RDKafkaErrorCode::UnknownPartition
        | RDKafkaErrorCode::UnknownTopic => ProduceFailure::UnknownPartition,
        RDKafkaErrorCode::NotLeaderForPartition | RDKafkaErrorCode::LeaderNotAvailable => {
            ProduceFailure::NotLeader
        }
        RDKafkaErrorCode::NotEnoughReplicas | RDKafkaErrorCode::NotEnoughReplicasAfterAppend => {
            ProduceFailure::NotEnoughReplicas
        }
        // Positive codes come from the broker; negative ones are the client's own.
        code if (code as i32) > 0 => ProduceFailure::Rejected,
        _ => ProduceFailure::Other,
    }
}

impl DeliveryRecorder {
    /// Parses and records the statistics report waiting, if any.
    fn record_stats(&self) {
        if let Some(statistics) = self.stats_inbox.take() {
            self.heartbeat.recorder.record(ClientStatistics {
                role: Role::Producer,
                statistics,
            });
        }
    }
}

/// The heartbeat producer task of one cluster.
pub(crate) struct HeartbeatProducer {
    heartbeat: Arc<HeartbeatState>,
    producer: Arc<BaseProducer<DeliveryRecorder>>,
    /// Serves the producer's events; stopped before the producer is dropped.
    events: EventThread,
    /// Whether a metadata refresh of the producer's client is under way (for partitions it
    /// does not know yet).
    refreshing: Arc<AtomicBool>,
}

impl HeartbeatProducer {
    pub(super) fn new(heartbeat: Arc<HeartbeatState>) -> Result<Self, KafkaError> {
        let state = &heartbeat;
        let config = client_config(&state.config, Role::Producer);
        let context = DeliveryRecorder {
            log: ClientLog::for_cluster(&state.config, Role::Producer, state.recorder.clone()),
            stats_inbox: StatsInbox::default(),
            heartbeat: heartbeat.clone(),
            refused: AtomicBool::new(false),
        };
        let producer: Arc<BaseProducer<DeliveryRecorder>> =
            Arc::new(config.create_with_context(context)?);
        let events = EventThread::start(producer.clone()).map_err(|error| {
            KafkaError::ClientCreation(format!("cannot start the producer's event thread: {error}"))
        })?;
        Ok(HeartbeatProducer {
            heartbeat,
            producer,
            events,
            refreshing: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The producer's client, for the tasks that make their metadata and admin requests on it
    /// rather than on a client (and a thread per broker) of their own.
    pub(crate) fn client(&self) -> Arc<dyn AnyClient> {
        self.producer.clone()
    }

    /// Beats every `produce.period.seconds` until cancelled; between beats, follows metadata.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let admin = &self.heartbeat.config.admin;
        let mut interval = tokio::time::interval(admin.produce_period);
        // Beats stay on the grid: a late tick is skipped, never followed by a burst.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut view = self.heartbeat.recorder.subscribe();
        let mut previous = Arc::new(ClusterSnapshot::default());
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                slot = interval.tick() => {
                    self.heartbeat.recorder.record(BeatTicked { late: slot.elapsed() });
                    self.beat();
                }
                _ = self.producer.context().stats_inbox.arrived() => {
                    let producer = self.producer.clone();
                    tokio::task::spawn_blocking(move || producer.context().record_stats());
                }
                changed = view.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = view.borrow_and_update().clone();
                    self.follow(&previous, &snapshot);
                    previous = snapshot;
                }
            }
        }
        // Stopping the event thread joins it, and dropping the producer purges what is queued
        // (a metadata refresh may hold it a moment longer, on its own blocking thread): both
        // off the runtime's worker threads.
        let (events, producer) = (self.events, self.producer);
        let _ = tokio::task::spawn_blocking(move || drop((events, producer))).await;
    }

    /// A new metadata view: the partitions with a new leader get their series, and the
    /// brokers metadata forgot lose the client's view of them.
    fn follow(&self, previous: &Arc<ClusterSnapshot>, snapshot: &Arc<ClusterSnapshot>) {
        let recorder = &self.heartbeat.recorder;
        recorder.record(LeadersFollowed {
            previous: previous.clone(),
            snapshot: snapshot.clone(),
        });
        recorder.record(ClientBrokersFollowed {
            previous: previous.clone(),
            snapshot: snapshot.clone(),
        });
    }

    /// Sends one heartbeat to every partition the consumer is reading.
    fn beat(&self) {
        let heartbeat = &self.heartbeat;
        let state = &heartbeat;
        let snapshot = state.snapshot();
        let reading = heartbeat.reading.borrow().clone();
        let topic = state.config.admin.heartbeat_topic.as_str();
        let mut unknown = false;
        for &partition in snapshot.partitions.keys() {
            // Monitored: its reader is positioned and its beat was handed to the producer.
            let monitored = reading.contains(&partition) && self.send(&snapshot, topic, partition);
            unknown |= reading.contains(&partition) && !monitored;
            state.recorder.record(PartitionMonitored {
                partition,
                monitored,
            });
        }
        if unknown {
            self.refresh_metadata(topic);
        }
        let in_flight = heartbeat.tracker().pending();
        heartbeat.set_in_flight(in_flight);
    }

    /// Sends one heartbeat to `partition`; false when the producer's client does not know the
    /// partition yet (the topic grew since its last metadata refresh): not a failure, the beat
    /// is not sent and not counted.
    fn send(&self, snapshot: &ClusterSnapshot, topic: &str, partition: i32) -> bool {
        let heartbeat = &self.heartbeat;
        let leader = snapshot.leader_of(partition);
        let sent = Instant::now();
        let (sequence, evicted) = heartbeat.tracker().start(partition, leader, sent);
        if let Some(lost) = evicted {
            heartbeat.recorder.record(Lost {
                heartbeats: vec![(lost.partition, lost.leader)],
                told: false,
            });
        }
        let payload =
            HeartbeatMessage::new(&heartbeat.instance_id, partition, sequence, unix_micros())
                .encode();
        let in_flight = Box::new(InFlight {
            partition,
            sequence,
            leader,
            sent,
        });
        let record: BaseRecord<'_, (), [u8], Box<InFlight>> =
            BaseRecord::with_opaque_to(topic, in_flight)
                .partition(partition)
                .payload(&payload);
        match self.producer.send(record) {
            Ok(()) => {
                heartbeat.tell_replicas(|instance| Beat::Sent {
                    instance,
                    partition,
                    sequence,
                    sent,
                });
                true
            }
            Err((error, _))
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownPartition) =>
            {
                heartbeat.tracker().cancel(partition, sequence);
                false
            }
            Err((error, record)) => {
                let in_flight = &record.delivery_opaque;
                record_failure(
                    self.producer.context(),
                    in_flight,
                    in_flight.leader,
                    &error,
                    Instant::now(),
                );
                true
            }
        }
    }

    /// Asks the producer's client for the topic's metadata now, on a blocking thread, rather
    /// than at its next periodic refresh (up to `topic.metadata.refresh.interval.ms`).
    fn refresh_metadata(&self, topic: &str) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let producer = self.producer.clone();
        let refreshing = self.refreshing.clone();
        let topic = topic.to_string();
        let timeout = self.heartbeat.config.admin.check_metadata_timeout;
        tokio::task::spawn_blocking(move || {
            if let Err(error) = producer.client().fetch_metadata(Some(&topic), timeout) {
                tracing::debug!("the producer's metadata refresh failed: {error}");
            }
            refreshing.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_separate_timeouts_from_rejections() {
        let reason = |code| failure_of(&KafkaError::MessageProduction(code)).as_str();
        assert_eq!(reason(RDKafkaErrorCode::MessageTimedOut), "timed_out");
        assert_eq!(
            reason(RDKafkaErrorCode::TopicAuthorizationFailed),
            "authorization_failed"
        );
        assert_eq!(reason(RDKafkaErrorCode::InvalidRecord), "rejected");
        assert_eq!(reason(RDKafkaErrorCode::QueueFull), "queue_full");
        assert_eq!(
            reason(RDKafkaErrorCode::NotEnoughReplicas),
            "not_enough_replicas"
        );
        assert_eq!(
            reason(RDKafkaErrorCode::NotEnoughReplicasAfterAppend),
            "not_enough_replicas"
        );
    }
}
