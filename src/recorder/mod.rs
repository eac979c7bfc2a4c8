//! One record of what a cluster did: the tasks report typed observations, and the recorder
//! alone updates everything they feed — the metric families, what a person reads (the status
//! page, the one-shot check, the support bundle), the facts readiness is decided from, the
//! rights the cluster refused, and the log's spells. Readers ask its views, never a task.
//!
//! One recorder per generation of a cluster's tasks: a fresh start (the cluster's id changed)
//! starts a fresh record.
//!
//! - `observed`: what the tasks saw last, for a person to read;
//! - `permissions`: the rights the account needs, as the cluster answered;
//! - `status`: the facts readiness is decided from, and the readiness judgement.

pub(crate) mod observed;
pub(crate) mod permissions;
pub(crate) mod status;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use self::observed::Observed;
use self::permissions::Permissions;
use self::status::{ReadinessSettings, Status};
use crate::cluster::ClusterSnapshot;
use crate::config::Config;
use crate::kafka::client::{ClientError, ClientReports};
use crate::metrics::ClusterMetrics;

/// The record of one generation of a cluster's tasks.
pub(crate) struct Recorder {
    /// Every metric family of this cluster.
    metrics: ClusterMetrics,
    /// The latest metadata snapshot.
    view: watch::Sender<Arc<ClusterSnapshot>>,
    status: Status,
    observed: Observed,
    permissions: Arc<Permissions>,
    readiness: ReadinessSettings,
}

impl Recorder {
    /// The record of the cluster `config` configures, monitored by running instance
    /// `instance_id`.
    pub(crate) fn new(config: &Config, instance_id: &str) -> Self {
        let metrics = ClusterMetrics::new(instance_id);
        let permissions = Arc::new(Permissions::new(config));
        metrics.add(permissions.clone());
        let admin = &config.admin;
        Recorder {
            metrics,
            view: watch::Sender::new(Arc::new(ClusterSnapshot::default())),
            status: Status::default(),
            observed: Observed::default(),
            permissions,
            readiness: ReadinessSettings {
                // Three refresh periods, at least two timeouts.
                stale_after: (admin.check_metadata_period * 3)
                    .max(admin.check_metadata_timeout * 2),
                round_trip_window: admin.lost_after,
            },
        }
    }

    /// The latest metadata snapshot.
    pub(crate) fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.view.borrow().clone()
    }

    /// Each metadata snapshot as it comes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<ClusterSnapshot>> {
        self.view.subscribe()
    }

    /// How old metadata may be and still count as fresh.
    pub(crate) fn metadata_stale_after(&self) -> std::time::Duration {
        self.readiness.stale_after
    }

    /// Ok when metadata is fresh and heartbeats make the round trip; else the reason why not.
    pub(crate) fn readiness(&self, now: Instant) -> Result<(), String> {
        let snapshot = self.snapshot();
        let facts = self.status.lock();
        status::readiness(
            self.readiness,
            &snapshot,
            &facts,
            self.permissions.causes(),
            now,
        )
    }

    // Stores reached directly while the tasks move to observations.
    pub(crate) fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    pub(crate) fn status(&self) -> &Status {
        &self.status
    }

    pub(crate) fn observed(&self) -> &Observed {
        &self.observed
    }

    pub(crate) fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    pub(crate) fn view(&self) -> &watch::Sender<Arc<ClusterSnapshot>> {
        &self.view
    }
}

impl ClientReports for Recorder {
    fn client_error(&self, error: ClientError) {
        let mut facts = self.status.lock();
        // "All brokers are down" follows the specific failure (TLS, SASL) that caused it;
        // keep the specific one.
        if !error.all_brokers_down || facts.client_error.is_none() {
            facts.client_error = Some(format!("{} client: {}", error.role.as_str(), error.reason));
        }
        if error.authentication {
            facts.authentication_error = Some(error.reason);
            facts.authentication_failures += 1;
        }
    }
}
