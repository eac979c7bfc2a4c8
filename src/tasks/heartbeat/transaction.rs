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

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::state::HeartbeatState;
use crate::clock::unix_micros;
use crate::kafka::client::{client_config, ClientLog, Role};
use crate::kafka::credentials::set_sasl_credentials;
use crate::kafka::handle::AnyClient;
use crate::kafka::oauth::Tokens;
use crate::kafka::stats::logical_coordinator;
use crate::kafka::stats::StatsInbox;
use crate::logging::LogThrottle;
use crate::message::HeartbeatMessage;
use crate::recorder::permissions::{Allowed, Operation, Refused, Resource, Right};
use crate::recorder::transaction::{Outcome, TransactionEnded, TransactionTimed};
use crate::sync::lock;

/// The `coordinator` label before the statistics named one.
const UNKNOWN_COORDINATOR: &str = "unknown";

/// One transactional producer, and whether its transactions are initialised.
struct Transactional {
    producer: Arc<BaseProducer<ClientLog>>,
    ready: bool,
    /// The reloaded SASL credentials it has (`None`: the configuration's at start).
    credentials: Option<(String, String)>,
}

/// The transaction probe task of one cluster.
pub(crate) struct TransactionProbe {
    heartbeat: Arc<HeartbeatState>,
    stats: Arc<StatsInbox>,
    throttle: LogThrottle,
    /// Sequence of the transactional heartbeats, for anyone reading the topic.
    sequence: u64,
    /// Which of the partitions being read gets the next one.
    rotation: usize,
    coordinator: String,
    /// The cluster's OAuth token, for each producer made, when the clients sign in with one.
    tokens: Option<Arc<Tokens>>,
}

impl TransactionProbe {
    pub(super) fn new(heartbeat: Arc<HeartbeatState>, tokens: Option<Arc<Tokens>>) -> Self {
        TransactionProbe {
            heartbeat,
            stats: Arc::new(StatsInbox::default()),
            throttle: LogThrottle::default(),
            sequence: 0,
            rotation: 0,
            coordinator: UNKNOWN_COORDINATOR.to_string(),
            tokens,
        }
    }

    /// A transactional producer with this cluster's producer settings.
    fn create(&self) -> Result<Transactional, KafkaError> {
        let state = &self.heartbeat;
        let mut config = client_config(&state.config, Role::Producer);
        let admin = &state.config.admin;
        // A transaction left open (this process killed mid-way) holds read_committed readers
        // of its partition, the end-to-end consumer among them, until the broker aborts it:
        // within half the lost deadline, so no heartbeat is counted lost for it. Brokers take
        // at most 900 s by default (transaction.max.timeout.ms).
        let bound = (admin.lost_after / 2).clamp(Duration::from_secs(1), Duration::from_secs(900));
        let delivery = bound.min(admin.probe_transactions_period.max(Duration::from_secs(1)));
        config
            .set("client.id", "cc-heartbeat-transactions")
            .set("transactional.id", state.config.transactional_id())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("transaction.timeout.ms", bound.as_millis().to_string())
            .set("message.timeout.ms", delivery.as_millis().to_string());
        // Credentials rotated since the cluster's tasks started are this producer's too.
        let credentials = lock(&state.reloaded_producer_credentials).clone();
        if let Some((username, password)) = &credentials {
            config
                .set("sasl.username", username)
                .set("sasl.password", password);
        }
        let context = ClientLog::for_cluster(&state.config, Role::Producer, state.recorder.clone())
            .with_stats(self.stats.clone());
        let producer: Arc<BaseProducer<ClientLog>> = Arc::new(config.create_with_context(context)?);
        if let Some(tokens) = &self.tokens {
            let client: Weak<dyn AnyClient> = Arc::downgrade(&producer) as _;
            if let Err(error) = tokens.attach(client) {
                tracing::warn!(
                    "the transaction probe's producer cannot take the OAuth token: {error}"
                );
            }
        }
        Ok(Transactional {
            producer,
            ready: false,
            credentials,
        })
    }

    /// Gives the producer the credentials reloaded since it was created, if any.
    fn follow_credentials(&self, transactional: &mut Transactional) {
        let wanted = lock(&self.heartbeat.reloaded_producer_credentials).clone();
        let Some((username, password)) = wanted
            .as_ref()
            .filter(|_| wanted != transactional.credentials)
        else {
            return;
        };
        match set_sasl_credentials(transactional.producer.as_ref(), username, password) {
            Ok(()) => transactional.credentials = wanted,
            Err(error) => {
                if let Some(held_back) = self.throttle.admit("credentials") {
                    tracing::warn!(
                        held_back,
                        "cannot give the transaction probe's producer the reloaded credentials: \
                         {error}"
                    );
                }
            }
        }
    }

    /// One round every `probe.transactions.period.seconds` until cancelled.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let period = self.heartbeat.config.admin.probe_transactions_period;
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
            self.follow_credentials(&mut transactional);
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
            // A transaction left open would hold read_committed readers of its partition until
            // the broker times it out: abort it (only an error when none is open).
            let _ = tokio::task::spawn_blocking(move || {
                if transactional.ready {
                    let _ = transactional
                        .producer
                        .abort_transaction(Duration::from_secs(2));
                }
                drop(transactional)
            })
            .await;
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
        let period = self.heartbeat.config.admin.probe_transactions_period;
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
        let state = &self.heartbeat;
        let topic = state.config.admin.heartbeat_topic.clone();
        let mut message =
            HeartbeatMessage::new(&state.instance_id, partition, self.sequence, unix_micros());
        message.transactional = true;
        self.sequence += 1;
        let payload = message.encode();
        let sent = {
            let producer = transactional.producer.clone();
            tokio::task::spawn_blocking(move || {
                // Nothing else serves this producer's queue between rounds: its statistics,
                // errors and leftover delivery reports.
                producer.poll(Duration::ZERO);
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
        let commit = move |producer: &BaseProducer<ClientLog>| producer.commit_transaction(period);
        let committed = match sent {
            Ok(()) => {
                let mut committed = self.timed("commit", transactional, commit).await;
                // A retriable failure (a timeout) leaves the commit under way: librdkafka
                // wants it called again, not an abort.
                if matches!(&committed, Err(KafkaError::Transaction(error)) if error.is_retriable())
                {
                    committed = self.timed("commit", transactional, commit).await;
                }
                committed
            }
            Err(error) => Err(error),
        };
        match committed {
            Ok(()) => {
                self.ended(Outcome::Committed, None);
                self.allow();
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
        let mut outcome = outcome_of(error);
        let state = &self.heartbeat;
        if outcome == Outcome::AuthorizationFailed {
            let right = match error.rdkafka_error_code() {
                Some(RDKafkaErrorCode::TopicAuthorizationFailed) => Right::new(
                    Operation::Write,
                    Resource::Topic(state.config.admin.heartbeat_topic.clone()),
                ),
                Some(RDKafkaErrorCode::ClusterAuthorizationFailed) => {
                    Right::new(Operation::IdempotentWrite, Resource::Cluster)
                }
                _ => Right::new(
                    Operation::Write,
                    Resource::TransactionalId(state.config.transactional_id()),
                ),
            };
            state.recorder.record(Refused::new(
                right,
                "the transaction probe is refused",
                error,
            ));
        }
        let fatal = matches!(error, KafkaError::Transaction(error) if error.is_fatal())
            || outcome == Outcome::Fenced;
        let mut keep = !fatal;
        if begun && keep {
            let period = state.config.admin.probe_transactions_period;
            // The abort waits for the delivery reports to be served, and nothing else serves
            // this producer's queue: serve them first.
            let abort = move |producer: &BaseProducer<ClientLog>| {
                let _ = producer.flush(period);
                producer.abort_transaction(period)
            };
            match self.timed("abort", transactional, abort).await {
                Ok(()) if outcome != Outcome::AuthorizationFailed => outcome = Outcome::Aborted,
                Ok(()) => {}
                // Neither committed nor aborted: a new producer starts clean.
                Err(_) => keep = false,
            }
        }
        self.ended(outcome, Some(error));
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
            self.heartbeat.recorder.record(TransactionTimed {
                coordinator: self.coordinator.clone(),
                operation,
                took: started.elapsed(),
            });
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

    fn ended(&self, outcome: Outcome, error: Option<&KafkaError>) {
        self.heartbeat.recorder.record(TransactionEnded {
            coordinator: self.coordinator.clone(),
            outcome,
            error: error.map(ToString::to_string),
        });
    }

    fn allow(&self) {
        let state = &self.heartbeat;
        state.recorder.record(Allowed(Right::new(
            Operation::Write,
            Resource::TransactionalId(state.config.transactional_id()),
        )));
    }
}

/// What a failed call means for the round. Only fencing is `fenced`: other fatal errors
/// (a missing right, a transaction timeout the broker refuses) say why.
fn outcome_of(error: &KafkaError) -> Outcome {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch,
        ) => Outcome::Fenced,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart() {
        let of = |code| outcome_of(&KafkaError::MessageProduction(code)).as_str();
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
        assert_eq!(
            of(RDKafkaErrorCode::ClusterAuthorizationFailed),
            "authorization_failed",
            "a fatal error that is not fencing says why"
        );
        assert_eq!(of(RDKafkaErrorCode::InvalidTransactionTimeout), "other");
    }
}
