//! What the connection checks found, recorded: each broker's series, its latest check for a
//! person, whether every broker fails (a readiness cause), and the log's spells of failure.
//!
//! A new failure reason is a [`FailureReason`] listed in the [`Phase::reasons`] it can happen
//! in (`outcome`); the task only tells it apart.
//!
//! - `outcome`: the phases and failure reasons (the `phase` and `reason` labels);
//! - `metrics`: the series, per broker.

mod metrics;
pub(crate) mod outcome;

use std::sync::Arc;

use self::metrics::ConnectivityMetrics;
use self::outcome::{CheckFailure, CheckSuccess};
use crate::clock::unix_seconds;
use crate::cluster::Broker;
use crate::config::Config;
use crate::logging::LogThrottle;
use crate::metrics::Families;
use crate::recorder::observed::{Connection, ConnectionFailure};
use crate::recorder::stores::Stores;

/// What a check round checks: a known broker, or a bootstrap server before any metadata.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The `broker` label: the broker id, or `bootstrap-N` for the N-th bootstrap server.
    pub(crate) label: String,
    pub(crate) broker_id: Option<i32>,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Whether metadata lists it (a missing broker that answers is still not up).
    pub(crate) listed: bool,
}

impl Target {
    pub(crate) fn broker(broker: &Broker) -> Self {
        Target {
            label: broker.id.to_string(),
            broker_id: Some(broker.id),
            host: broker.host.clone(),
            port: broker.port,
            listed: broker.missing_since.is_none(),
        }
    }

    pub(crate) fn address(&self) -> String {
        Broker {
            id: -1,
            host: self.host.clone(),
            port: self.port,
            rack: None,
            missing_since: None,
        }
        .address()
    }
}

/// One connection check finished.
#[derive(Debug)]
pub(crate) struct ConnectionChecked {
    pub(crate) target: Target,
    /// Whether the check goes through TLS (its reasons are then created at zero).
    pub(crate) tls: bool,
    pub(crate) result: Result<CheckSuccess, CheckFailure>,
}

/// A round of checks finished: `failures` of `checked` targets failed, each said for a person.
#[derive(Debug)]
pub(crate) struct ConnectionRound {
    pub(crate) checked: usize,
    pub(crate) failures: Vec<String>,
}

/// Metadata lists a broker as missing: it is down, whatever its last check said.
#[derive(Debug)]
pub(crate) struct BrokerMissing {
    pub(crate) broker: i32,
}

/// A target is checked no more (a broker forgotten, the bootstrap servers once brokers are
/// known): its series and its latest check go.
#[derive(Debug)]
pub(crate) struct TargetForgotten {
    /// The `broker` label.
    pub(crate) label: String,
}

/// The connection checks' part of the record.
pub(super) struct Connectivity {
    metrics: Arc<ConnectivityMetrics>,
    throttle: LogThrottle,
}

impl Connectivity {
    pub(super) fn new(config: &Config) -> Self {
        Connectivity {
            metrics: Arc::new(ConnectivityMetrics::new(
                config.admin.check_connectivity_timeout,
            )),
            throttle: LogThrottle::default(),
        }
    }

    pub(super) fn families(&self) -> Arc<dyn Families> {
        self.metrics.clone()
    }

    pub(super) fn checked(&self, stores: &Stores<'_>, checked: ConnectionChecked) {
        let ConnectionChecked {
            target,
            tls,
            result,
        } = checked;
        if let Some(id) = target.broker_id {
            if !stores.snapshot().brokers.contains_key(&id) {
                // Forgotten while its check ran: recording now would bring back its removed
                // series.
                return;
            }
        }
        self.metrics.init_broker(&target.label, tls);
        self.metrics.record(&target.label, target.listed, &result);
        stores.observed.connection(observation(&target, &result));
        self.log(&target, &result);
    }

    pub(super) fn round(&self, stores: &Stores<'_>, round: ConnectionRound) {
        let ConnectionRound {
            checked,
            mut failures,
        } = round;
        let problem = (checked > 0 && failures.len() == checked).then(|| {
            failures.sort();
            failures.join("; ")
        });
        stores.status.lock().connection_problem = problem;
    }

    pub(super) fn missing(&self, _stores: &Stores<'_>, missing: BrokerMissing) {
        self.metrics.mark_missing(&missing.broker.to_string());
    }

    pub(super) fn forgotten(&self, stores: &Stores<'_>, forgotten: TargetForgotten) {
        self.metrics.forget_broker(&forgotten.label);
        stores
            .observed
            .retain_connections(|target| target != forgotten.label);
    }

    /// Tells the log, throttled: a spell of failures, its end, unreachable addresses, a
    /// certificate about to expire.
    fn log(&self, target: &Target, result: &Result<CheckSuccess, CheckFailure>) {
        let throttle = &self.throttle;
        let failing_key = format!("broker {} failing", target.label);
        match result {
            Ok(success) => {
                if let Some(spell) = throttle.reset(&failing_key) {
                    tracing::info!(
                        broker = %target.label,
                        address = %target.address(),
                        failed = spell.counted,
                        "connection checks succeed again, {} after the first failure ({} failed)",
                        spell.seconds(),
                        spell.counted
                    );
                }
                let addresses_key = format!("broker {} addresses", target.label);
                if success.unreachable_addresses.is_empty() {
                    throttle.reset(&addresses_key);
                } else if let Some(held_back) = throttle.admit(&addresses_key) {
                    // Clients trying these first wait on them before they connect.
                    tracing::warn!(
                        broker = %target.label,
                        address = %target.address(),
                        held_back,
                        "connected, but not through every address of {}: {}",
                        target.host,
                        success.unreachable_addresses.join("; ")
                    );
                }
                if let Some(expiry) = success
                    .certificate
                    .as_ref()
                    .and_then(|certificate| certificate.expires_at)
                {
                    let days = (expiry - unix_seconds()) / 86_400.0;
                    if days < 14.0
                        && throttle
                            .admit(&format!("broker {} expiry", target.label))
                            .is_some()
                    {
                        tracing::warn!(broker = %target.label, address = %target.address(), "the broker's TLS certificate expires in {days:.1} days");
                    }
                }
            }
            Err(failure) => {
                if let Some(held_back) = throttle.admit(&failing_key) {
                    tracing::warn!(
                        broker = %target.label,
                        address = %target.address(),
                        phase = failure.phase.as_str(),
                        reason = failure.reason.as_str(),
                        held_back,
                        "connection check failed: {}",
                        failure.detail
                    );
                }
            }
        }
    }
}

/// One check's result, for the status page and the one-shot check.
fn observation(target: &Target, result: &Result<CheckSuccess, CheckFailure>) -> Connection {
    let (phases, certificate, failure, seconds) = match result {
        Ok(success) => (
            success.phases.as_slice(),
            success.certificate.clone(),
            None,
            Some(success.total.as_secs_f64()),
        ),
        Err(failure) => (
            &[][..],
            failure.certificate.clone(),
            Some(ConnectionFailure {
                phase: failure.phase.as_str(),
                reason: failure.reason.as_str(),
                detail: failure.detail.clone(),
            }),
            None,
        ),
    };
    Connection {
        target: target.label.clone(),
        broker_id: target.broker_id,
        address: target.address(),
        checked_at: unix_seconds(),
        ok: result.is_ok(),
        seconds,
        phases: phases
            .iter()
            .map(|(phase, took)| (phase.as_str(), took.as_secs_f64()))
            .collect(),
        certificate,
        failure,
        last_failure: None,
    }
}
