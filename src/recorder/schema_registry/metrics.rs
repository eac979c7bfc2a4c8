//! The Schema Registry probe's series.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{Failure, Request};
use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::Families;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    operation: &'static str,
    reason: &'static str,
}

#[derive(Debug)]
pub(super) struct SchemaRegistryMetrics {
    pub(super) up: Gauge,
    latency: HistogramFamily<OperationLabels>,
    failures: Family<FailureLabels, Counter>,
    pub(super) certificate_expiry: Gauge<f64, AtomicU64>,
}

impl SchemaRegistryMetrics {
    /// Latency buckets up to the request `timeout`; every failure of every operation the probe
    /// makes at zero.
    pub(super) fn new(timeout: Duration, operations: &[Request]) -> Self {
        let metrics = SchemaRegistryMetrics {
            up: Gauge::default(),
            latency: Family::new_with_constructor(Buckets::up_to(timeout)),
            failures: Family::default(),
            certificate_expiry: Gauge::default(),
        };
        for operation in operations {
            for reason in Failure::ALL {
                drop(metrics.failures.get_or_create(&FailureLabels {
                    operation: operation.as_str(),
                    reason: reason.as_str(),
                }));
            }
        }
        metrics
    }

    pub(super) fn observe(&self, operation: Request, latency: Duration) {
        self.latency
            .get_or_create(&OperationLabels {
                operation: operation.as_str(),
            })
            .observe(latency.as_secs_f64());
    }

    pub(super) fn count_failure(&self, operation: Request, reason: Failure) {
        self.failures
            .get_or_create(&FailureLabels {
                operation: operation.as_str(),
                reason: reason.as_str(),
            })
            .inc();
    }
}

impl Families for SchemaRegistryMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "schema_registry_up",
            "1 when the last probe of the Schema Registry succeeded in every request, else 0",
            self.up.clone(),
        );
        registry.register_with_unit(
            "schema_registry_request_latency",
            "Time of each Schema Registry request of the probe, by operation: register, read_by_id, latest",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "schema_registry_failures",
            "Schema Registry requests that failed, by operation and reason",
            self.failures.clone(),
        );
        registry.register(
            "schema_registry_certificate_expiry_timestamp_seconds",
            "Unix time the Schema Registry's TLS certificate expires (https only, from the last verified connection)",
            self.certificate_expiry.clone(),
        );
    }
}
