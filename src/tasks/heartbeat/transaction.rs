//! The transaction coordinator probe (`probe.transactions = true`): every
//! `probe.transactions.period.seconds` a transactional producer begins a transaction, sends one
//! heartbeat to one partition (rotating through those being read), and commits, as an
//! exactly-once pipeline does. The end-to-end consumer reads the committed heartbeats and
//! counts them apart (they are not in the per-partition tracker).
//!
//! Init, commit and abort are timed per coordinator (the broker librdkafka's statistics name
//! as `TxnCoordinator`). Another producer with the same `transactional.id` fences this one: that
//! is counted, and the next round starts a new producer (which fences the other in turn), never
//! fatal. Every call is bounded by the period and runs on a blocking thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::message::HeartbeatMessage;
use super::state::HeartbeatState;
use crate::clock::unix_micros;
use crate::kafka::client::{client_config, ClientLog, Role};
use crate::kafka::stats::StatsInbox;
use crate::kafka::throttle::logical_coordinator;
use crate::logging::LogThrottle;
use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::Families;
use crate::permissions::{Operation, Resource, Right};

/// How a transaction round ended; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    /// The commit failed and the transaction was aborted.
    Aborted,
    /// Another producer with the same transactional id took it over.
    Fenced,
    /// No answer in time.
    TimedOut,
    /// No transaction coordinator, or the one asked is loading or no longer it.
    CoordinatorUnavailable,
    /// No WRITE on the transactional id (or the topic).
    AuthorizationFailed,
    Other,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Committed,
        Outcome::Aborted,
        Outcome::Fenced,
        Outcome::TimedOut,
        Outcome::CoordinatorUnavailable,
        Outcome::AuthorizationFailed,
        Outcome::Other,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
            Outcome::Fenced => "fenced",
            Outcome::TimedOut => "timed_out",
            Outcome::CoordinatorUnavailable => "coordinator_unavailable",
            Outcome::AuthorizationFailed => "authorization_failed",
            Outcome::Other => "other",
        }
    }

    /// What a failed call means for the round.
    fn of(error: &KafkaError) -> Self {
        let code = error.rdkafka_error_code();
        let fenced = match error {
            KafkaError::Transaction(error) => {
                error.is_fatal()
                    && error.code() != RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            }
            _ => false,
        };
        match code {
            Some(
                RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch,
            ) => Outcome::Fenced,
            _ if fenced => Outcome::Fenced,
            Some(
                RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed,
            ) => Outcome::AuthorizationFailed,
            Some(
                RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress,
            ) => Outcome::CoordinatorUnavailable,
            Some(
                RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::TimedOutQueue,
            ) => Outcome::TimedOut,
            _ => Outcome::Other,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    coordinator: String,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The transaction probe's series.
#[derive(Debug)]
pub(super) struct TransactionMetrics {
    latency: HistogramFamily<OperationLabels>,
    transactions: Family<OutcomeLabels, Counter>,
}

impl TransactionMetrics {
    fn new(deadline: Duration) -> Self {
        let metrics = TransactionMetrics {
            latency: Family::new_with_constructor(Buckets::up_to(deadline)),
            transactions: Family::default(),
        };
        for outcome in Outcome::ALL {
            drop(metrics.transactions.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            }));
        }
        metrics
    }
}

impl Families for TransactionMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "transaction_latency",
            "Time of the transaction probe's init, commit and abort, by transaction coordinator",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "transactions",
            "Transaction probe rounds by outcome: committed, aborted, fenced (another producer took the transactional id), or why they failed",
            self.transactions.clone(),
        );
    }
}

/// The `coordinator` label before the statistics named one.
const UNKNOWN_COORDINATOR: &str = "unknown";

/// One transactional producer, and whether its transactions are initialised.
struct Transactional {
    producer: Arc<BaseProducer<ClientLog>>,
    ready: bool,
}

/// The transaction probe task of one cluster.
pub(crate) struct TransactionProbe {
    heartbeat: Arc<HeartbeatState>,
    metrics: Arc<TransactionMetrics>,
    stats: Arc<StatsInbox>,
    throttle: LogThrottle,
    /// Sequence of the transactional heartbeats, for anyone reading the topic.
    sequence: u64,
    /// Which of the partitions being read gets the next one.
    rotation: usize,
    coordinator: String,
}

impl TransactionProbe {
    pub(super) fn new(heartbeat: Arc<HeartbeatState>) -> Self {
        let period = heartbeat.shared.config.admin.probe_transactions_period;
        let metrics = Arc::new(TransactionMetrics::new(period));
        heartbeat.shared.metrics.add(metrics.clone());
        TransactionProbe {
            heartbeat,
            metrics,
            stats: Arc::new(StatsInbox::default()),
            throttle: LogThrottle::default(),
            sequence: 0,
            rotation: 0,
            coordinator: UNKNOWN_COORDINATOR.to_string(),
        }
    }

    /// A transactional producer with this cluster's producer settings.
    fn create(&self) -> Result<Transactional, KafkaError> {
        let shared = &self.heartbeat.shared;
        let mut config = client_config(&shared.config, Role::Producer);
        let period = shared.config.admin.probe_transactions_period;
        config
            .set("client.id", "cc-heartbeat-transactions")
            .set("transactional.id", shared.config.transactional_id())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The broker aborts a transaction left open this long (a probe that died mid-way).
            .set(
                "transaction.timeout.ms",
                (period * 6)
                    .max(Duration::from_secs(60))
                    .as_millis()
                    .to_string(),
            )
            .set(
                "message.timeout.ms",
                period.as_millis().max(1000).to_string(),
            );
        let context = ClientLog::for_cluster(&shared.config, Role::Producer, shared.status.clone())
            .with_stats(self.stats.clone());
        Ok(Transactional {
            producer: Arc::new(config.create_with_context(context)?),
            ready: false,
        })
    }

    /// One round every `probe.transactions.period.seconds` until cancelled.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let period = self.heartbeat.shared.config.admin.probe_transactions_period;
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut current: Option<Transactional> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
                _ = self.stats.arrived() => {
                    self.read_stats().await;
                    continue;
                }
            }
            let mut transactional = match current.take() {
                Some(transactional) => transactional,
                None => match self.create() {
                    Ok(transactional) => transactional,
                    Err(error) => {
                        tracing::error!("cannot create the transaction probe's producer: {error}");
                        continue;
                    }
                },
            };
            let keep = tokio::select! {
                _ = cancel.cancelled() => {
                    current = Some(transactional);
                    break;
                }
                keep = self.round(&mut transactional) => keep,
            };
            if keep {
                current = Some(transactional);
            } else {
                // Fenced, or in a state it cannot leave: the next round starts a new producer.
                let _ = tokio::task::spawn_blocking(move || drop(transactional)).await;
            }
        }
        if let Some(transactional) = current {
            let _ = tokio::task::spawn_blocking(move || drop(transactional)).await;
        }
    }

    async fn read_stats(&mut self) {
        let inbox = self.stats.clone();
        if let Ok(Some(statistics)) = tokio::task::spawn_blocking(move || inbox.take()).await {
            if let Some(id) = logical_coordinator(&statistics, "TxnCoordinator") {
                self.coordinator = id.to_string();
            }
        }
    }

    /// One transaction; returns whether to keep the producer (not when fenced, or left in a
    /// state it cannot leave).
    async fn round(&mut self, transactional: &mut Transactional) -> bool {
        let period = self.heartbeat.shared.config.admin.probe_transactions_period;
        if !transactional.ready {
            match self
                .timed("init", transactional, move |producer| {
                    producer.init_transactions(period)
                })
                .await
            {
                Ok(()) => transactional.ready = true,
                Err(error) => return self.failed(transactional, &error, false).await,
            }
        }
        let Some(partition) = self.next_partition() else {
            return true;
        };
        let shared = &self.heartbeat.shared;
        let topic = shared.config.admin.heartbeat_topic.clone();
        let mut message =
            HeartbeatMessage::new(&shared.instance_id, partition, self.sequence, unix_micros());
        message.transactional = true;
        self.sequence += 1;
        let payload = message.encode();
        let sent = {
            let producer = transactional.producer.clone();
            tokio::task::spawn_blocking(move || {
                producer.begin_transaction()?;
                producer
                    .send(
                        BaseRecord::<(), [u8]>::to(&topic)
                            .partition(partition)
                            .payload(&payload),
                    )
                    .map_err(|(error, _)| error)
            })
            .await
            .unwrap_or(Err(KafkaError::Canceled))
        };
        let committed = match sent {
            Ok(()) => {
                self.timed("commit", transactional, move |producer| {
                    producer.commit_transaction(period)
                })
                .await
            }
            Err(error) => Err(error),
        };
        match committed {
            Ok(()) => {
                self.count(Outcome::Committed);
                self.allow();
                if let Some(spell) = self.throttle.reset("transaction") {
                    tracing::info!(
                        failed = spell.counted,
                        "transactions commit again, {} after the first failure ({} failed)",
                        spell.seconds(),
                        spell.counted
                    );
                }
                true
            }
            Err(error) => self.failed(transactional, &error, true).await,
        }
    }

    /// Counts a failed round; aborts the transaction when `begun` and the error allows it.
    async fn failed(
        &mut self,
        transactional: &Transactional,
        error: &KafkaError,
        begun: bool,
    ) -> bool {
        let mut outcome = Outcome::of(error);
        let shared = &self.heartbeat.shared;
        if outcome == Outcome::AuthorizationFailed {
            let right = Right::new(
                Operation::Write,
                Resource::TransactionalId(shared.config.transactional_id()),
            );
            shared
                .permissions
                .refuse(right, "the transaction probe is refused", error);
        }
        let fatal = matches!(error, KafkaError::Transaction(error) if error.is_fatal())
            || outcome == Outcome::Fenced;
        let mut keep = !fatal;
        if begun && keep {
            let period = shared.config.admin.probe_transactions_period;
            match self
                .timed("abort", transactional, move |producer| {
                    producer.abort_transaction(period)
                })
                .await
            {
                Ok(()) if outcome != Outcome::AuthorizationFailed => outcome = Outcome::Aborted,
                Ok(()) => {}
                // Neither committed nor aborted: a new producer starts clean.
                Err(_) => keep = false,
            }
        }
        self.count(outcome);
        if let Some(held_back) = self.throttle.admit("transaction") {
            tracing::warn!(
                coordinator = %self.coordinator,
                outcome = outcome.as_str(),
                held_back,
                "transaction probe: {error}"
            );
        }
        keep
    }

    /// Runs `call` on the producer on a blocking thread, timing it as `operation`.
    async fn timed(
        &self,
        operation: &'static str,
        transactional: &Transactional,
        call: impl FnOnce(&BaseProducer<ClientLog>) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), KafkaError> {
        let producer = transactional.producer.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || call(&producer))
            .await
            .unwrap_or(Err(KafkaError::Canceled));
        if result.is_ok() {
            self.metrics
                .latency
                .get_or_create(&OperationLabels {
                    coordinator: self.coordinator.clone(),
                    operation,
                })
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// The next partition being read, in turn; `None` before any is read.
    fn next_partition(&mut self) -> Option<i32> {
        let reading = self.heartbeat.reading.borrow().clone();
        if reading.is_empty() {
            return None;
        }
        let partition = reading.iter().nth(self.rotation % reading.len()).copied();
        self.rotation = self.rotation.wrapping_add(1);
        partition
    }

    fn count(&self, outcome: Outcome) {
        self.metrics
            .transactions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    fn allow(&self) {
        let shared = &self.heartbeat.shared;
        shared.permissions.allow(&Right::new(
            Operation::Write,
            Resource::TransactionalId(shared.config.transactional_id()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart() {
        let of = |code| Outcome::of(&KafkaError::MessageProduction(code)).as_str();
        assert_eq!(of(RDKafkaErrorCode::ProducerFenced), "fenced");
        assert_eq!(of(RDKafkaErrorCode::Fenced), "fenced");
        assert_eq!(
            of(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
            "authorization_failed"
        );
        assert_eq!(
            of(RDKafkaErrorCode::NotCoordinator),
            "coordinator_unavailable"
        );
        assert_eq!(of(RDKafkaErrorCode::OperationTimedOut), "timed_out");
        assert_eq!(of(RDKafkaErrorCode::InvalidMessage), "other");
    }
}
