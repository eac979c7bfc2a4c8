//! What the transaction probe found, recorded: each round's outcome, the time of its init,
//! commit and abort by coordinator, and the log's spell of failures.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Config;
use crate::logging::LogThrottle;
use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::Families;
use crate::recorder::stores::Stores;

/// How a transaction round ended; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
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

    pub(crate) fn as_str(self) -> &'static str {
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
struct TransactionMetrics {
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

/// A call of the transaction probe's producer (`init`, `commit`, `abort`) succeeded after
/// `took`, with `coordinator` (a broker id, or `unknown`) coordinating.
#[derive(Debug)]
pub(crate) struct TransactionTimed {
    pub(crate) coordinator: String,
    pub(crate) operation: &'static str,
    pub(crate) took: Duration,
}

/// A transaction round ended; `error` when it failed.
#[derive(Debug)]
pub(crate) struct TransactionEnded {
    pub(crate) coordinator: String,
    pub(crate) outcome: Outcome,
    pub(crate) error: Option<String>,
}

/// The transaction probe's part of the record.
pub(super) struct Transaction {
    metrics: Arc<TransactionMetrics>,
    throttle: LogThrottle,
}

impl Transaction {
    /// With `probe.transactions`.
    pub(super) fn new(config: &Config) -> Option<Self> {
        let admin = &config.admin;
        admin.probe_transactions.then(|| Transaction {
            metrics: Arc::new(TransactionMetrics::new(admin.probe_transactions_period)),
            throttle: LogThrottle::default(),
        })
    }

    pub(super) fn families(&self) -> Arc<dyn Families> {
        self.metrics.clone()
    }

    pub(super) fn timed(&self, _stores: &Stores<'_>, timed: TransactionTimed) {
        self.metrics
            .latency
            .get_or_create(&OperationLabels {
                coordinator: timed.coordinator,
                operation: timed.operation,
            })
            .observe(timed.took.as_secs_f64());
    }

    pub(super) fn ended(&self, _stores: &Stores<'_>, ended: TransactionEnded) {
        let TransactionEnded {
            coordinator,
            outcome,
            error,
        } = ended;
        self.metrics
            .transactions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        match error {
            None => {
                if let Some(spell) = self.throttle.reset("transaction") {
                    tracing::info!(
                        failed = spell.counted,
                        "transactions commit again, {} after the first failure ({} failed)",
                        spell.seconds(),
                        spell.counted
                    );
                }
            }
            Some(error) => {
                if let Some(held_back) = self.throttle.admit("transaction") {
                    tracing::warn!(
                        coordinator = %coordinator,
                        outcome = outcome.as_str(),
                        held_back,
                        "transaction probe: {error}"
                    );
                }
            }
        }
    }
}
