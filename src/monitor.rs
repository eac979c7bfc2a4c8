//! One monitored cluster: its shared state, its clients and its tasks. Nothing here is global,
//! so several clusters can be monitored side by side.

use std::sync::Arc;

use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::ClusterShared;
use crate::config::Config;
use crate::kafka::client::{client_config, ClientLog, Role};
use crate::tasks::connectivity::{ConnectivityChecker, TlsSetupError};
use crate::tasks::heartbeat::{self, HeartbeatError};
use crate::tasks::metadata::MetadataRefresher;
use crate::tasks::scan::{ClusterScan, ScanError};
use crate::tasks::topic::TopicManager;

/// Why a cluster's clients could not be created (a configuration librdkafka refused).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot create the admin client: {0}")]
    Admin(KafkaError),
    #[error("[default] {0}")]
    Tls(#[from] TlsSetupError),
    #[error(transparent)]
    Heartbeat(#[from] HeartbeatError),
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// The tasks and shared state of one cluster.
pub(crate) struct ClusterMonitor {
    shared: Arc<ClusterShared>,
    tasks: JoinSet<()>,
}

impl ClusterMonitor {
    /// Creates the clients and starts every task; they stop when `cancel` is cancelled.
    pub(crate) fn start(config: Config, cancel: &CancellationToken) -> Result<Self, MonitorError> {
        let shared = ClusterShared::new(config);
        let admin: AdminClient<ClientLog> = client_config(&shared.config, Role::Admin)
            .create_with_context(ClientLog::for_cluster(
                &shared.config,
                Role::Admin,
                shared.status.clone(),
            ))
            .map_err(MonitorError::Admin)?;
        let admin = Arc::new(admin);
        // Created in this order, their series are exported in it.
        let metadata = MetadataRefresher::new(&shared, admin.clone());
        let topic = TopicManager::new(&shared, admin);
        let connectivity = ConnectivityChecker::new(&shared)?;
        let (producer, consumer) = heartbeat::tasks(&shared)?;
        let scan = ClusterScan::new(&shared)?;

        let mut tasks = JoinSet::new();
        // Every log line of this cluster's tasks names the cluster.
        let span = tracing::info_span!("cluster", name = %shared.config.name);
        tasks.spawn(metadata.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(topic.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(connectivity.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(producer.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(scan.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(consumer.run(cancel.clone()).instrument(span));
        Ok(ClusterMonitor { shared, tasks })
    }

    /// The state the HTTP server reads.
    pub(crate) fn shared(&self) -> Arc<ClusterShared> {
        self.shared.clone()
    }

    /// Waits for every task to stop (after cancellation).
    pub(crate) async fn join(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(
                    "a task of cluster {} ended abnormally: {error}",
                    self.shared.snapshot().cluster_id_label()
                );
            }
        }
    }
}
