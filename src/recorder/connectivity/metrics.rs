//! The connectivity task's series, per broker: whether it is up, the checks made, the failures
//! by phase and reason (each created at zero), the connection and phase times, and the TLS
//! certificate's expiry.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::outcome::{CheckFailure, CheckSuccess, Phase};
use crate::metrics::labels::BrokerLabels;
use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::Families;

/// Labels of `heartbeat_connection_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerReasonLabels {
    broker: String,
    phase: String,
    reason: String,
}

/// Labels of `heartbeat_connection_phase_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerPhaseLabels {
    broker: String,
    phase: String,
}

#[derive(Debug)]
pub(super) struct ConnectivityMetrics {
    broker_up: Family<BrokerLabels, Gauge>,
    checks: Family<BrokerLabels, Counter>,
    failures: Family<BrokerReasonLabels, Counter>,
    connection_seconds: HistogramFamily<BrokerLabels>,
    phase_seconds: HistogramFamily<BrokerPhaseLabels>,
    certificate_expiry: Family<BrokerLabels, Gauge<f64, AtomicU64>>,
}

impl ConnectivityMetrics {
    /// Connection histograms with buckets up to the check's `timeout`.
    pub(super) fn new(timeout: Duration) -> Self {
        ConnectivityMetrics {
            broker_up: Family::default(),
            checks: Family::default(),
            failures: Family::default(),
            connection_seconds: Family::new_with_constructor(Buckets::up_to(timeout)),
            phase_seconds: Family::new_with_constructor(Buckets::up_to(timeout)),
            certificate_expiry: Family::default(),
        }
    }

    /// Creates a broker's counters at zero (under its `broker` label), so dashboards and
    /// alerts see 0, not no data: every reason of every phase the check goes through (TLS
    /// only with `tls`). Idempotent.
    pub(super) fn init_broker(&self, broker: &str, tls: bool) {
        drop(self.checks.get_or_create(&BrokerLabels::new(broker)));
        for phase in Phase::ALL
            .into_iter()
            .filter(|phase| tls || *phase != Phase::Tls)
        {
            for reason in phase.reasons() {
                drop(self.failures.get_or_create(&BrokerReasonLabels {
                    broker: broker.to_string(),
                    phase: phase.as_str().to_string(),
                    reason: reason.as_str().to_string(),
                }));
            }
        }
    }

    /// A broker that vanished from metadata is down, whatever its last check said.
    pub(super) fn mark_missing(&self, broker: &str) {
        self.broker_up
            .get_or_create(&BrokerLabels::new(broker))
            .set(0);
    }

    /// Records one check of `broker`; `listed` says whether metadata lists it (a missing
    /// broker that answers is still not up).
    pub(super) fn record(
        &self,
        broker: &str,
        listed: bool,
        result: &Result<CheckSuccess, CheckFailure>,
    ) {
        let labels = BrokerLabels::new(broker);
        self.checks.get_or_create(&labels).inc();
        let certificate_expiry = match result {
            Ok(success) => success.certificate.as_ref(),
            Err(failure) => failure.certificate.as_ref(),
        }
        .and_then(|certificate| certificate.expires_at);
        if let Some(expiry) = certificate_expiry {
            self.certificate_expiry.get_or_create(&labels).set(expiry);
        }
        match result {
            Ok(success) => {
                self.connection_seconds
                    .get_or_create(&labels)
                    .observe(success.total.as_secs_f64());
                for (phase, elapsed) in &success.phases {
                    self.phase_seconds
                        .get_or_create(&BrokerPhaseLabels {
                            broker: broker.to_string(),
                            phase: phase.as_str().to_string(),
                        })
                        .observe(elapsed.as_secs_f64());
                }
                self.broker_up.get_or_create(&labels).set(i64::from(listed));
            }
            Err(failure) => {
                self.failures
                    .get_or_create(&BrokerReasonLabels {
                        broker: broker.to_string(),
                        phase: failure.phase.as_str().to_string(),
                        reason: failure.reason.as_str().to_string(),
                    })
                    .inc();
                self.broker_up.get_or_create(&labels).set(0);
            }
        }
    }

    /// Removes every series under this `broker` label.
    pub(super) fn forget_broker(&self, broker: &str) {
        let labels = BrokerLabels::new(broker);
        self.broker_up.remove(&labels);
        self.checks.remove(&labels);
        self.connection_seconds.remove(&labels);
        self.certificate_expiry.remove(&labels);
        for phase in Phase::ALL {
            self.phase_seconds.remove(&BrokerPhaseLabels {
                broker: broker.to_string(),
                phase: phase.as_str().to_string(),
            });
            for reason in phase.reasons() {
                self.failures.remove(&BrokerReasonLabels {
                    broker: broker.to_string(),
                    phase: phase.as_str().to_string(),
                    reason: reason.as_str().to_string(),
                });
            }
        }
    }
}

impl Families for ConnectivityMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "broker_up",
            "1 when the broker is in the latest metadata and its last connection check succeeded",
            self.broker_up.clone(),
        );
        registry.register(
            "connection_checks",
            "Connection checks made to each broker",
            self.checks.clone(),
        );
        registry.register(
            "connection_failures",
            "Failed connection checks, by broker, phase and reason",
            self.failures.clone(),
        );
        registry.register_with_unit(
            "connection",
            "Time to an established connection: name resolution, TCP and (with TLS) TLS handshakes",
            Unit::Seconds,
            self.connection_seconds.clone(),
        );
        registry.register_with_unit(
            "connection_phase",
            "Time of each phase of a successful connection check: dns, tcp, tls",
            Unit::Seconds,
            self.phase_seconds.clone(),
        );
        registry.register_with_unit(
            "broker_certificate_expiry_timestamp",
            "Unix time at which the broker's TLS certificate expires",
            Unit::Seconds,
            self.certificate_expiry.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode_alone;

    fn failure_series(metrics: &ConnectivityMetrics, broker: &str) -> usize {
        encode_alone(metrics)
            .lines()
            .filter(|line| line.starts_with("heartbeat_connection_failures_total{"))
            .filter(|line| line.contains(&format!("broker=\"{broker}\"")))
            .count()
    }

    #[test]
    fn every_reason_of_every_phase_starts_at_zero_and_goes_with_its_broker() {
        let metrics = ConnectivityMetrics::new(Duration::from_secs(5));
        metrics.init_broker("1", true);
        metrics.init_broker("2", false);
        let all: usize = Phase::ALL.iter().map(|phase| phase.reasons().len()).sum();
        assert_eq!(failure_series(&metrics, "1"), all);
        assert_eq!(
            failure_series(&metrics, "2"),
            all - Phase::Tls.reasons().len()
        );
        metrics.forget_broker("1");
        assert_eq!(failure_series(&metrics, "1"), 0);
        assert!(
            !encode_alone(&metrics).contains("broker=\"1\""),
            "every series of a forgotten broker goes"
        );
    }
}
