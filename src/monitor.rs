//! One monitored cluster: its shared state, its clients and its tasks. Nothing here is global,
//! so several clusters can be monitored side by side.

use std::sync::Arc;

use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{client_config, ClientLog, Role};
use crate::cluster::ClusterShared;
use crate::config::Config;
use crate::connectivity::ConnectivityChecker;
use crate::consumer::{ConsumerError, EndToEndConsumer};
use crate::metadata::MetadataRefresher;
use crate::producer::{HeartbeatProducer, ProducerError};
use crate::scan::{ClusterScan, ScanError};
use crate::tls_check::{TlsCheck, TlsSetupError};
use crate::topic::TopicManager;

/// Why a cluster's clients could not be created (a configuration librdkafka refused).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot create the admin client: {0}")]
    Admin(KafkaError),
    #[error("[default] {0}")]
    Tls(TlsSetupError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// The tasks and shared state of one cluster.
pub struct ClusterMonitor {
    shared: Arc<ClusterShared>,
    tasks: JoinSet<()>,
}

impl ClusterMonitor {
    /// Creates the clients and starts every task; they stop when `cancel` is cancelled.
    pub fn start(config: Config, cancel: &CancellationToken) -> Result<Self, MonitorError> {
        let shared = ClusterShared::new(config);
        let admin_config = client_config(&shared.config, Role::Admin);
        let admin: AdminClient<ClientLog> = admin_config
            .create_with_context(ClientLog::new(
                &shared.config.name,
                Role::Admin,
                shared.status.clone(),
            ))
            .map_err(MonitorError::Admin)?;
        let admin = Arc::new(admin);
        let producer = HeartbeatProducer::new(shared.clone())?;
        let scan = ClusterScan::new(shared.clone())?;
        let consumer = EndToEndConsumer::new(shared.clone())?;

        let mut tasks = JoinSet::new();
        // Every log line of this cluster's tasks names the cluster.
        let span = tracing::info_span!("cluster", name = %shared.config.name);
        tasks.spawn(
            MetadataRefresher::new(shared.clone(), admin.clone())
                .run(cancel.clone())
                .instrument(span.clone()),
        );
        tasks.spawn(
            TopicManager::new(shared.clone(), admin)
                .run(cancel.clone())
                .instrument(span.clone()),
        );
        let tls = TlsCheck::from_properties(&shared.config.admin_properties())
            .map_err(MonitorError::Tls)?;
        tasks.spawn(
            ConnectivityChecker::new(shared.clone(), tls)
                .run(cancel.clone())
                .instrument(span.clone()),
        );
        tasks.spawn(producer.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(scan.run(cancel.clone()).instrument(span.clone()));
        tasks.spawn(consumer.run(cancel.clone()).instrument(span));
        Ok(ClusterMonitor { shared, tasks })
    }

    /// The state the HTTP server reads.
    pub fn shared(&self) -> Arc<ClusterShared> {
        self.shared.clone()
    }

    /// Waits for every task to stop (after cancellation).
    pub async fn join(mut self) {
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
