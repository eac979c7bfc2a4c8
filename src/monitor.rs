//! One monitored cluster: its shared state, its clients and its tasks. Nothing here is global,
//! so several clusters can be monitored side by side.

use std::sync::Arc;

use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::{ClusterHandle, ClusterShared};
use crate::config::Config;
use crate::tasks::connectivity::{ConnectivityChecker, TlsSetupError};
use crate::tasks::heartbeat::{self, HeartbeatError};
use crate::tasks::metadata::MetadataRefresher;
use crate::tasks::scan::{ClusterScan, ScanError};
use crate::tasks::schema_registry::{SchemaRegistryError, SchemaRegistryProbe};
use crate::tasks::topic::TopicManager;

/// Why a cluster's clients could not be created (a configuration librdkafka refused).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("[default] {0}")]
    Tls(#[from] TlsSetupError),
    #[error(transparent)]
    Heartbeat(#[from] HeartbeatError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    SchemaRegistry(#[from] SchemaRegistryError),
}

/// One generation of a cluster's tasks: their shared state, and the tasks themselves.
struct Generation {
    shared: Arc<ClusterShared>,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
}

impl Generation {
    /// Creates the clients and starts every task; they stop when `cancel` (or the
    /// generation's own token) is cancelled. `id_changes`: how often the cluster's id changed
    /// before.
    fn start(
        config: Config,
        cancel: &CancellationToken,
        id_changes: u64,
        purpose: Purpose,
    ) -> Result<Generation, MonitorError> {
        let shared = ClusterShared::new(config, id_changes);
        // Three clients (four with the transaction probe): the heartbeat producer's (which the metadata and topic tasks share),
        // the end-to-end consumer's, and the scan's. Created in this order, the tasks' series
        // are exported in it.
        let heartbeat::HeartbeatTasks {
            producer,
            consumer,
            transactions,
        } = heartbeat::tasks(&shared)?;
        let metadata = MetadataRefresher::new(&shared, producer.client());
        let topic = TopicManager::new(&shared, producer.client());
        let connectivity = ConnectivityChecker::new(&shared)?;
        // The one-shot check proves the heartbeat's path, not the other groups' lag.
        let scan = match purpose {
            Purpose::Export => Some(ClusterScan::new(&shared)?),
            Purpose::Check => None,
        };
        let schema_registry = SchemaRegistryProbe::new(&shared)?;

        let cancel = cancel.child_token();
        let mut tasks = JoinSet::new();
        // Every log line of this cluster's tasks names the cluster.
        let span = tracing::info_span!("cluster", name = %shared.config.name);
        tasks.spawn(metadata.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(topic.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(connectivity.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(producer.run(cancel.clone()).instrument(span.clone()));
        if let Some(scan) = scan {
            tasks.spawn(scan.run(cancel.clone()).instrument(span.clone()));
        }
        if let Some(schema_registry) = schema_registry {
            tasks.spawn(schema_registry.run(cancel.clone()).instrument(span.clone()));
        }
        if let Some(transactions) = transactions {
            tasks.spawn(transactions.run(cancel.clone()).instrument(span.clone()));
        }
        tasks.spawn(consumer.run(cancel.clone()).instrument(span));
        Ok(Generation {
            shared,
            tasks,
            cancel,
        })
    }

    /// Stops the tasks and waits for them.
    async fn stop(mut self) {
        self.cancel.cancel();
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(
                    "a task of cluster {} ended abnormally: {error}",
                    self.shared.config.name
                );
            }
        }
    }
}

/// What a cluster's tasks run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The exporter: every task, for as long as it runs.
    Export,
    /// The one-shot check: every task but the scan of other groups.
    Check,
}

/// One monitored cluster: its current tasks, started afresh when the cluster behind the
/// bootstrap servers turns out to be another one (its id changed), so nothing measured of the
/// old cluster is counted for the new.
pub(crate) struct ClusterMonitor {
    handle: Arc<ClusterHandle>,
    supervisor: JoinHandle<()>,
}

impl ClusterMonitor {
    /// Creates the clients and starts every task; they stop when `cancel` is cancelled.
    pub(crate) fn start(
        config: Config,
        cancel: &CancellationToken,
        purpose: Purpose,
    ) -> Result<Self, MonitorError> {
        let first = Generation::start(config.clone(), cancel, 0, purpose)?;
        let handle = Arc::new(ClusterHandle::new(first.shared.clone()));
        let supervisor = tokio::spawn(supervise(
            config,
            first,
            handle.clone(),
            cancel.clone(),
            purpose,
        ));
        Ok(ClusterMonitor { handle, supervisor })
    }

    /// The state the HTTP server reads.
    pub(crate) fn handle(&self) -> Arc<ClusterHandle> {
        self.handle.clone()
    }

    /// Waits for every task to stop (after cancellation).
    pub(crate) async fn join(self) {
        if let Err(error) = self.supervisor.await {
            tracing::error!("the tasks of a cluster ended abnormally: {error}");
        }
    }
}

/// Runs `generation` until cancelled, replacing it with a fresh one each time the cluster's
/// id changes.
async fn supervise(
    config: Config,
    mut generation: Generation,
    handle: Arc<ClusterHandle>,
    cancel: CancellationToken,
    purpose: Purpose,
) {
    let mut id_changes = 0;
    loop {
        let shared = generation.shared.clone();
        tokio::select! {
            _ = cancel.cancelled() => {
                generation.stop().await;
                return;
            }
            _ = shared.cluster_changed.notified() => {}
        }
        generation.stop().await;
        id_changes += 1;
        generation = loop {
            match Generation::start(config.clone(), &cancel, id_changes, purpose) {
                Ok(next) => break next,
                Err(error) => {
                    tracing::error!(cluster = %config.name, "cannot start afresh: {error}");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                }
            }
        };
        handle.replace(generation.shared.clone());
        tracing::info!(cluster = %config.name, "monitoring afresh: every series of this cluster starts again");
    }
}
