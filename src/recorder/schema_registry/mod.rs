//! What the Schema Registry probe found, recorded: each request's time or why it failed,
//! whether the registry answers, its certificate's expiry, whether it refuses the exporter's
//! credentials (a readiness cause), and the log's spell of failures.
//!
//! - `metrics`: the probe's series.

mod metrics;

pub(crate) use self::metrics::{Failure, Request};

use std::sync::Arc;
use std::time::Duration;

use self::metrics::SchemaRegistryMetrics;
use crate::config::Config;
use crate::logging::LogThrottle;
use crate::metrics::Families;
use crate::recorder::stores::Stores;

/// A request of the probe was answered after `took`.
#[derive(Debug)]
pub(crate) struct RegistryAnswered {
    pub(crate) operation: Request,
    pub(crate) took: Duration,
    /// Unix time the registry's TLS certificate expires, over TLS.
    pub(crate) certificate_expiry: Option<f64>,
}

/// A request of the probe failed.
#[derive(Debug)]
pub(crate) struct RegistryFailed {
    pub(crate) operation: Request,
    pub(crate) reason: Failure,
}

/// A probe ended: every request answered, or the first that failed, why, and what to log.
#[derive(Debug)]
pub(crate) struct RegistryProbed {
    pub(crate) failure: Option<(Request, Failure, String)>,
}

/// The Schema Registry probe's part of the record.
pub(super) struct SchemaRegistry {
    metrics: Arc<SchemaRegistryMetrics>,
    throttle: LogThrottle,
}

impl SchemaRegistry {
    /// For a cluster with a `[schema_registry]` section.
    pub(super) fn new(config: &Config) -> Option<Self> {
        config.schema_registry.as_ref()?;
        let admin = &config.admin;
        let operations: &[Request] = if admin.schema_registry_probe_write {
            &[Request::Register, Request::ReadById, Request::Latest]
        } else {
            &[Request::Latest, Request::ReadById]
        };
        Some(SchemaRegistry {
            metrics: Arc::new(SchemaRegistryMetrics::new(
                admin.check_schema_registry_timeout,
                operations,
            )),
            throttle: LogThrottle::default(),
        })
    }

    pub(super) fn families(&self) -> Arc<dyn Families> {
        self.metrics.clone()
    }

    pub(super) fn answered(&self, _stores: &Stores<'_>, answered: RegistryAnswered) {
        self.metrics.observe(answered.operation, answered.took);
        if let Some(expiry) = answered.certificate_expiry {
            self.metrics.certificate_expiry.set(expiry);
        }
    }

    pub(super) fn failed(&self, _stores: &Stores<'_>, failed: RegistryFailed) {
        self.metrics.count_failure(failed.operation, failed.reason);
    }

    pub(super) fn probed(&self, stores: &Stores<'_>, probed: RegistryProbed) {
        self.metrics.up.set(i64::from(probed.failure.is_none()));
        let refused = match probed.failure {
            None => {
                if let Some(spell) = self.throttle.reset("probe") {
                    tracing::info!(
                        failed = spell.counted,
                        "the Schema Registry answers again, {} after the first failure ({} failed)",
                        spell.seconds(),
                        spell.counted
                    );
                }
                None
            }
            Some((operation, reason, detail)) => {
                if let Some(held_back) = self.throttle.admit("probe") {
                    tracing::warn!(
                        operation = operation.as_str(),
                        reason = reason.as_str(),
                        held_back,
                        "Schema Registry probe failed: {detail}"
                    );
                }
                // Refused credentials are the exporter's to fix: a readiness cause.
                (reason == Failure::Auth).then(|| {
                    format!(
                        "the Schema Registry refuses the exporter's credentials \
                         ([schema_registry] basic.auth.user.info): {detail}"
                    )
                })
            }
        };
        stores.status.lock().schema_registry_refused = refused;
    }
}
