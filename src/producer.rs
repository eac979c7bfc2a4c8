//! The heartbeat producer: one message to every partition of the heartbeat topic each
//! `produce.period.seconds`, on a fixed grid.
//!
//! Sending never waits: each message is handed to librdkafka and the loop moves on, so a slow
//! or dead leader delays nobody else's beat. The acknowledgement is timed in librdkafka's
//! delivery callback (on the producer's own polling thread, with a monotonic clock), not when
//! some task gets round to it, so the latency recorded is the broker's, not ours.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::Statistics;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::client::{client_config, ClientLog, Role};
use crate::client_stats::ClientStatsRecorder;
use crate::cluster::{unix_micros, ClusterShared};
use crate::logging::LogThrottle;
use crate::message::HeartbeatMessage;
use crate::metrics::{PartitionLabels, PartitionLeaderLabels, ProduceFailureLabels};

/// Why a heartbeat was not delivered; the `reason` label.
pub fn failure_reason(error: &KafkaError) -> &'static str {
    let Some(code) = error.rdkafka_error_code() else {
        return "other";
    };
    match code {
        RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut => "timed_out",
        RDKafkaErrorCode::QueueFull => "queue_full",
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => "authorization_failed",
        RDKafkaErrorCode::UnknownTopicOrPartition
        | RDKafkaErrorCode::UnknownPartition
        | RDKafkaErrorCode::UnknownTopic => "unknown_partition",
        RDKafkaErrorCode::NotLeaderForPartition | RDKafkaErrorCode::LeaderNotAvailable => {
            "not_leader"
        }
        // Positive codes come from the broker; negative ones are the client's own.
        code if (code as i32) > 0 => "rejected",
        _ => "other",
    }
}

/// What the delivery callback needs to know about a message it did not send itself.
#[derive(Debug)]
pub struct InFlight {
    partition: i32,
    sequence: u64,
    leader: i32,
    sent: Instant,
}

/// The producer client's context: records each delivery the moment librdkafka reports it.
pub struct DeliveryRecorder {
    log: ClientLog,
    stats: ClientStatsRecorder,
    shared: Arc<ClusterShared>,
    throttle: LogThrottle,
}

impl ClientContext for DeliveryRecorder {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.stats
            .record(&statistics, &self.shared.metrics.client_brokers);
    }
}

impl ProducerContext for DeliveryRecorder {
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, in_flight: Box<InFlight>) {
        let now = Instant::now();
        match result {
            Ok(_) => {
                let metrics = &self.shared.metrics;
                metrics
                    .messages_produced
                    .get_or_create(&PartitionLabels::new(in_flight.partition))
                    .inc();
                metrics.produce_latency.observe(
                    in_flight.partition,
                    in_flight.leader,
                    now.saturating_duration_since(in_flight.sent),
                    now,
                );
                self.throttle.reset(&failure_key(in_flight.leader));
            }
            Err((error, _)) => {
                if matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                ) {
                    // Purged at shutdown: nothing was measured, nothing to report.
                    return;
                }
                record_failure(&self.shared, &self.throttle, &in_flight, error, now);
            }
        }
    }
}

fn failure_key(leader: i32) -> String {
    format!("failing via leader {leader}")
}

fn record_failure(
    shared: &ClusterShared,
    throttle: &LogThrottle,
    in_flight: &InFlight,
    error: &KafkaError,
    now: Instant,
) {
    // Counted only if still in flight: a heartbeat is failed or lost, never both.
    let pending = {
        let mut tracker = shared.tracker();
        if !tracker.fail(in_flight.partition, in_flight.sequence, now) {
            return;
        }
        tracker.pending()
    };
    shared.metrics.messages_in_flight.set(pending as i64);
    let reason = failure_reason(error);
    shared
        .metrics
        .produce_failures
        .get_or_create(&ProduceFailureLabels {
            partition: in_flight.partition.to_string(),
            leader: in_flight.leader.to_string(),
            reason: reason.to_string(),
        })
        .inc();
    if let Some(held_back) = throttle.admit(&failure_key(in_flight.leader)) {
        tracing::warn!(
            cluster = %shared.config.name,
            partition = in_flight.partition,
            leader = in_flight.leader,
            reason,
            held_back,
            "heartbeat not delivered: {error}"
        );
    }
}

/// Why the producer could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the heartbeat producer: {0}")]
pub struct ProducerError(#[from] KafkaError);

/// The heartbeat producer task of one cluster.
pub struct HeartbeatProducer {
    shared: Arc<ClusterShared>,
    producer: ThreadedProducer<DeliveryRecorder>,
}

impl HeartbeatProducer {
    pub fn new(shared: Arc<ClusterShared>) -> Result<Self, ProducerError> {
        let config = client_config(&shared.config, Role::Producer);
        let context = DeliveryRecorder {
            log: ClientLog::new(&shared.config.name, Role::Producer, shared.status.clone()),
            stats: ClientStatsRecorder::default(),
            shared: shared.clone(),
            throttle: LogThrottle::default(),
        };
        let producer = config.create_with_context(context)?;
        Ok(HeartbeatProducer { shared, producer })
    }

    /// Beats every `produce.period.seconds` until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.shared.config.admin.produce_period);
        // Beats stay on the grid: a late tick is skipped, never followed by a burst.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let period = self.shared.config.admin.produce_period;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                slot = interval.tick() => {
                    let late = slot.elapsed();
                    let metrics = &self.shared.metrics;
                    metrics.beat_delay.observe(late.as_secs_f64());
                    let missed = (late.as_secs_f64() / period.as_secs_f64()).floor() as u64;
                    if missed > 0 {
                        metrics.beats_missed.inc_by(missed);
                    }
                    self.beat();
                }
            }
        }
        // Dropping the producer purges what is queued and joins its polling thread; keep
        // that off the runtime's worker threads.
        let producer = self.producer;
        let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    }

    /// Sends one heartbeat to every partition the consumer is reading.
    pub fn beat(&self) {
        let snapshot = self.shared.snapshot();
        let reading = self.shared.reading.borrow().clone();
        let topic = self.shared.config.admin.heartbeat_topic.as_str();
        for &partition in reading
            .iter()
            .filter(|id| snapshot.partitions.contains_key(id))
        {
            let leader = snapshot.leader_of(partition);
            let sent = Instant::now();
            let (sequence, evicted) = self.shared.tracker().start(partition, leader, sent);
            if let Some(lost) = evicted {
                self.shared
                    .metrics
                    .messages_lost
                    .get_or_create(&PartitionLeaderLabels::new(lost.partition, lost.leader))
                    .inc();
            }
            let payload =
                HeartbeatMessage::new(&self.shared.instance_id, partition, sequence, unix_micros())
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
            if let Err((error, record)) = self.producer.send(record) {
                let context = self.producer.context();
                record_failure(
                    &self.shared,
                    &context.throttle,
                    &record.delivery_opaque,
                    &error,
                    Instant::now(),
                );
            }
        }
        let in_flight = self.shared.tracker().pending();
        self.shared.metrics.messages_in_flight.set(in_flight as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_separate_timeouts_from_rejections() {
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(failure_reason(&timed_out), "timed_out");
        let denied = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(failure_reason(&denied), "authorization_failed");
        let invalid = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord);
        assert_eq!(failure_reason(&invalid), "rejected");
        let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        assert_eq!(failure_reason(&full), "queue_full");
    }
}
