//! The heartbeat: one timestamped message per period to every partition of the heartbeat
//! topic, each read back by this instance, so every partition proves every period that the
//! cluster takes writes and serves reads, end to end.
//!
//! Two tasks share what they need here and nothing else does: the message tracker (what was
//! sent and not yet seen back) and the set of partitions the consumer is positioned on (only
//! those get heartbeats, so a heartbeat is never sent before its reader is in place).
//!
//! - [`producer`]: the beats, on a fixed grid; acknowledgement latency;
//! - [`consumer`]: reads them back; end-to-end latency, lost, duplicated, skipped;
//! - [`commit`]: commits the consumer's positions to its group, timing the group coordinator;
//! - [`transaction`]: with `probe.transactions`, one transaction per period, timed;
//! - [`state`]: what the two share: the tracker and the positioned partitions.
//!
//! What became of each heartbeat goes to the recorder (`crate::recorder::heartbeat`), which
//! owns its series, the failure reasons and skip kinds, and the log's spells per leader.

mod commit;
mod consumer;
mod producer;
mod state;
mod transaction;

use std::sync::Arc;

use rdkafka::error::KafkaError;

pub(crate) use self::consumer::EndToEndConsumer;
pub(crate) use self::producer::HeartbeatProducer;
pub(crate) use self::transaction::TransactionProbe;

pub(crate) use self::state::Given;
use self::state::HeartbeatState;
use crate::kafka::oauth::Tokens;

/// Why the heartbeat's clients could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("cannot create the heartbeat producer: {0}")]
    Producer(KafkaError),
    #[error("cannot create the end-to-end consumer: {0}")]
    Consumer(KafkaError),
}

/// The heartbeat's tasks.
pub(crate) struct HeartbeatTasks {
    pub(crate) producer: HeartbeatProducer,
    pub(crate) consumer: EndToEndConsumer,
    /// With `probe.transactions`.
    pub(crate) transactions: Option<TransactionProbe>,
}

/// The heartbeat's tasks, with their clients.
pub(crate) fn tasks(
    given: Given,
    tokens: Option<Arc<Tokens>>,
) -> Result<HeartbeatTasks, HeartbeatError> {
    let probe_transactions = given.config.admin.probe_transactions;
    let heartbeat = Arc::new(HeartbeatState::new(given));
    let producer = HeartbeatProducer::new(heartbeat.clone()).map_err(HeartbeatError::Producer)?;
    let consumer = EndToEndConsumer::new(heartbeat.clone()).map_err(HeartbeatError::Consumer)?;
    let transactions = probe_transactions.then(|| TransactionProbe::new(heartbeat, tokens));
    Ok(HeartbeatTasks {
        producer,
        consumer,
        transactions,
    })
}
