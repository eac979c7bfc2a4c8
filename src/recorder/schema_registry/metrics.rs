//! The Schema Registry probe's series.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::Families;

/// The probe's requests; the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// POST /subjects/{subject}/versions: registers the probe schema (idempotent).
    Register,
    /// GET /schemas/ids/{id}.
    ReadById,
    /// GET /subjects/{subject}/versions/latest.
    Latest,
}

impl Request {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Request::Register => "register",
            Request::ReadById => "read_by_id",
            Request::Latest => "latest",
        }
    }
}

/// Why a request failed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection (name resolution, refused, unreachable).
    Connect,
    /// The TLS handshake failed (an untrusted or expired certificate, a wrong name).
    Tls,
    /// No answer within `check.schema.registry.timeout.seconds`.
    Timeout,
    /// 401 or 403: the credentials are refused.
    Auth,
    /// 429.
    RateLimited,
    /// 5xx.
    Server,
    /// Another 4xx (the subject or id is unknown: with `schema.registry.probe.write = false` the
    /// probe subject must have been registered once).
    ClientError,
    /// An answer that is not what the API promises: another id or schema than registered, or
    /// a body that is not the API's JSON.
    Mismatch,
}

impl Failure {
    pub(crate) const ALL: [Failure; 8] = [
        Failure::Connect,
        Failure::Tls,
        Failure::Timeout,
        Failure::Auth,
        Failure::RateLimited,
        Failure::Server,
        Failure::ClientError,
        Failure::Mismatch,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Tls => "tls",
            Failure::Timeout => "timeout",
            Failure::Auth => "auth",
            Failure::RateLimited => "rate_limited",
            Failure::Server => "server",
            Failure::ClientError => "client_error",
            Failure::Mismatch => "mismatch",
        }
    }
}

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
