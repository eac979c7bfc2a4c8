//! The Schema Registry probe, for a cluster with a `[schema_registry]` section: every
//! `check.schema.registry.period.seconds` it registers one fixed probe schema under its own
//! subject (`cc-heartbeat-probe-value`; registering the same schema again gives the same id and
//! no new version), reads it back by id, and reads the subject's latest version. With
//! `schema.registry.probe.write = false` it only reads: the latest version, and the schema of
//! its id. Each request is timed; a failure is counted by operation and reason; an answer
//! other than the registered schema is a `mismatch`. The credentials go in the Authorization
//! header only: never in a log line, a series or `/ready`.
//!
//! - [`request`]: the REST API's requests, the client, and why a request failed.
//!
//! What it found goes to the recorder (`crate::recorder::schema_registry`).

mod request;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use self::request::ClientError as SchemaRegistryError;

use self::request::{Failed, RegistryClient};
use crate::config::Config;
use crate::recorder::schema_registry::{
    Failure, RegistryAnswered, RegistryFailed, RegistryProbed, Request,
};
use crate::recorder::Recorder;

/// The probe's dedicated subject.
pub(crate) const PROBE_SUBJECT: &str = "cc-heartbeat-probe-value";

/// The probe schema: fixed, so registering it again is idempotent.
fn probe_schema() -> Value {
    json!({
        "type": "record",
        "name": "CcHeartbeatProbe",
        "namespace": "io.cc_heartbeat",
        "fields": [{ "name": "sent_at_us", "type": "long" }]
    })
}

/// The schema string of an answer (`schema`), parsed, to compare without minding spacing.
fn schema_of(body: &Value) -> Option<Value> {
    serde_json::from_str(body.get("schema")?.as_str()?).ok()
}

/// The Schema Registry probe of one cluster.
pub(crate) struct SchemaRegistryProbe {
    recorder: Arc<Recorder>,
    /// `check.schema.registry.period.seconds`.
    period: Duration,
    /// `schema.registry.probe.write`: whether it registers the probe schema.
    write: bool,
    client: RegistryClient,
}

impl SchemaRegistryProbe {
    /// The probe for the cluster `config` configures; `None` without a `[schema_registry]`
    /// section.
    pub(crate) fn new(
        config: &Config,
        recorder: &Arc<Recorder>,
    ) -> Result<Option<Self>, SchemaRegistryError> {
        let Some(settings) = &config.schema_registry else {
            return Ok(None);
        };
        let admin = &config.admin;
        let client = RegistryClient::new(settings, admin.check_schema_registry_timeout)?;
        Ok(Some(SchemaRegistryProbe {
            recorder: recorder.clone(),
            period: admin.check_schema_registry_period,
            write: admin.schema_registry_probe_write,
            client,
        }))
    }

    /// Probes every `check.schema.registry.period.seconds` until cancelled.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.probe() => {}
            }
        }
    }

    /// One probe: every request, in order, stopping at the first failure.
    async fn probe(&self) {
        let outcome = if self.write {
            self.write_and_read().await
        } else {
            self.read_only().await
        };
        self.recorder.record(RegistryProbed {
            failure: outcome
                .err()
                .map(|(operation, failed)| (operation, failed.reason, failed.detail)),
        });
    }

    /// Registers the probe schema, reads it by id, reads the subject's latest version.
    async fn write_and_read(&self) -> Result<(), (Request, Failed)> {
        let schema = probe_schema();
        let registered = self
            .request(
                Request::Register,
                &format!("/subjects/{PROBE_SUBJECT}/versions"),
                Some(&json!({ "schema": schema.to_string() })),
            )
            .await?;
        let id = self.id_of(Request::Register, &registered)?;
        let by_id = self
            .request(Request::ReadById, &format!("/schemas/ids/{id}"), None)
            .await?;
        if schema_of(&by_id).as_ref() != Some(&schema) {
            return Err(self.mismatch(
                Request::ReadById,
                format!("schema {id} is not the probe schema"),
            ));
        }
        let latest = self
            .request(
                Request::Latest,
                &format!("/subjects/{PROBE_SUBJECT}/versions/latest"),
                None,
            )
            .await?;
        let latest_id = self.id_of(Request::Latest, &latest)?;
        if latest_id != id || schema_of(&latest).as_ref() != Some(&schema) {
            return Err(self.mismatch(
                Request::Latest,
                format!("the subject's latest version is schema {latest_id}, not the probe's {id}"),
            ));
        }
        Ok(())
    }

    /// Reads the subject's latest version, then its schema by id: the two must agree.
    async fn read_only(&self) -> Result<(), (Request, Failed)> {
        let latest = self
            .request(
                Request::Latest,
                &format!("/subjects/{PROBE_SUBJECT}/versions/latest"),
                None,
            )
            .await?;
        let id = self.id_of(Request::Latest, &latest)?;
        let by_id = self
            .request(Request::ReadById, &format!("/schemas/ids/{id}"), None)
            .await?;
        if schema_of(&by_id).is_none() || schema_of(&by_id) != schema_of(&latest) {
            return Err(self.mismatch(
                Request::ReadById,
                format!("schema {id} is not the subject's latest version"),
            ));
        }
        Ok(())
    }

    /// Sends one request, timed and counted.
    async fn request(
        &self,
        operation: Request,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, (Request, Failed)> {
        let started = Instant::now();
        match self.client.send(operation, path, body).await {
            Ok(answer) => {
                self.recorder.record(RegistryAnswered {
                    operation,
                    took: started.elapsed(),
                    certificate_expiry: answer.certificate_expiry,
                });
                Ok(answer.body)
            }
            Err(failed) => {
                self.recorder.record(RegistryFailed {
                    operation,
                    reason: failed.reason,
                });
                Err((operation, failed))
            }
        }
    }

    /// The schema id an answer names; a missing one is a mismatch, counted.
    fn id_of(&self, operation: Request, body: &Value) -> Result<i64, (Request, Failed)> {
        body.get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| self.mismatch(operation, "the answer names no schema id".to_string()))
    }

    /// A mismatch of `operation`, counted.
    fn mismatch(&self, operation: Request, detail: String) -> (Request, Failed) {
        self.recorder.record(RegistryFailed {
            operation,
            reason: Failure::Mismatch,
        });
        (
            operation,
            Failed {
                reason: Failure::Mismatch,
                detail,
            },
        )
    }
}
