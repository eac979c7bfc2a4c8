//! One monitored cluster: its shared state, its clients and its tasks. Nothing here is global,
//! so several clusters can be monitored side by side.

use std::sync::{Arc, Mutex, Weak};

use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::{Links, Source, BEAT_FEED_CAPACITY};
use crate::config::Config;
use crate::kafka::client::Role;
use crate::kafka::credentials::{sasl_credentials, set_sasl_credentials};
use crate::kafka::handle::AnyClient;
use crate::kafka::oauth::Tokens;
use crate::recorder::reloads::{ConfigReloaded, Reloads};
use crate::shared::{ClusterHandle, ClusterShared};
use crate::sync::lock;
use crate::tasks::connectivity::{ConnectivityChecker, TlsSetupError};
use crate::tasks::heartbeat::{self, HeartbeatError};
use crate::tasks::metadata::MetadataRefresher;
use crate::tasks::mirror::MirrorReader;
use crate::tasks::oauth::{EndpointError, SignIn};
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
    #[error(transparent)]
    OAuth(#[from] EndpointError),
    #[error("[default] the mirror reader's client: {0}")]
    Mirror(#[from] rdkafka::error::KafkaError),
}

/// One generation of a cluster's tasks: their shared state, and the tasks themselves.
struct Generation {
    shared: Arc<ClusterShared>,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
    /// Its clients, by role, for credentials changed at run time (weak: the tasks own them,
    /// and the last owner destroys each on a blocking thread).
    clients: Vec<(Role, Weak<dyn AnyClient>)>,
    /// The clients' OAuth token, when they sign in with one.
    tokens: Option<Arc<Tokens>>,
}

impl Generation {
    /// Creates the clients and starts every task; they stop when `cancel` (or the
    /// generation's own token) is cancelled. `id_changes`: how often the cluster's id changed
    /// before.
    fn start(
        config: Config,
        cancel: &CancellationToken,
        id_changes: u64,
        (purpose, links): (Purpose, &Links),
        reloads: &Arc<Reloads>,
    ) -> Result<Generation, MonitorError> {
        let shared = ClusterShared::new(
            config,
            id_changes,
            links.clone(),
            (purpose == Purpose::Export, reloads),
        );
        // The clients wait for their first token before they connect.
        let tokens = shared
            .config
            .oauth
            .clone()
            .map(|settings| Arc::new(Tokens::new(settings)));
        let signin = match &tokens {
            Some(tokens) => Some(SignIn::new(&shared.recorder, tokens.clone())?),
            None => None,
        };
        // Three clients (four with the transaction probe): the heartbeat producer's (which the metadata and topic tasks share),
        // the end-to-end consumer's, and the scan's. Created in this order, the tasks' series
        // are exported in it.
        let heartbeat::HeartbeatTasks {
            producer,
            consumer,
            transactions,
        } = heartbeat::tasks(
            heartbeat::Given {
                config: shared.config.clone(),
                recorder: shared.recorder.clone(),
                instance_id: shared.instance_id.clone(),
                started_at_us: shared.started_at_us,
                feed: shared.links.feed.clone(),
                reloaded_producer_credentials: shared.reloaded_producer_credentials.clone(),
            },
            tokens.clone(),
        )?;
        let metadata = MetadataRefresher::new(
            (&shared.config, &shared.recorder),
            (&shared.refresh_now, &shared.cluster_changed),
            producer.client(),
            Some(consumer.client()),
        );
        let topic = TopicManager::new(
            &shared.config,
            &shared.recorder,
            &shared.refresh_now,
            producer.client(),
        );
        let connectivity = ConnectivityChecker::new(&shared.config, &shared.recorder)?;
        // The one-shot check proves the heartbeat's path, not the other groups' lag.
        let scan = match purpose {
            Purpose::Export => Some(ClusterScan::new(&shared.config, &shared.recorder)?),
            Purpose::Check => None,
        };
        let schema_registry = SchemaRegistryProbe::new(&shared.config, &shared.recorder)?;
        let mirror = MirrorReader::new(
            &shared.config,
            &shared.recorder,
            shared.links.source.as_ref(),
        )?;

        let mut clients = vec![
            (Role::Producer, Arc::downgrade(&producer.client())),
            (Role::Consumer, Arc::downgrade(&consumer.client())),
        ];
        if let Some(scan) = &scan {
            clients.push((Role::Scan, Arc::downgrade(&scan.client())));
        }
        if let Some(mirror) = &mirror {
            clients.push((Role::Consumer, Arc::downgrade(&mirror.client())));
        }
        if let Some(tokens) = &tokens {
            for (_, client) in &clients {
                // No token yet: nothing is given, nothing can fail.
                let _ = tokens.attach(client.clone());
            }
        }
        let cancel = cancel.child_token();
        let mut tasks = JoinSet::new();
        // Every log line of this cluster's tasks names the cluster.
        let span = tracing::info_span!("cluster", name = %shared.config.name);
        if let Some(signin) = signin {
            tasks.spawn(signin.run(cancel.clone()).instrument(span.clone()));
        }
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
        if let Some(mirror) = mirror {
            tasks.spawn(mirror.run(cancel.clone()).instrument(span.clone()));
        }
        if let Some(transactions) = transactions {
            tasks.spawn(transactions.run(cancel.clone()).instrument(span.clone()));
        }
        tasks.spawn(consumer.run(cancel.clone()).instrument(span));
        Ok(Generation {
            shared,
            tasks,
            cancel,
            clients,
            tokens,
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
    current: Arc<Mutex<Current>>,
}

/// What a reload and a fresh start of the tasks share: the configuration in force, and the
/// current generation's clients.
struct Current {
    config: Config,
    clients: Vec<(Role, Weak<dyn AnyClient>)>,
    tokens: Option<Arc<Tokens>>,
}

/// What a reload of the configuration did to one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reloaded {
    /// Its credentials did not change.
    Unchanged,
    /// New credentials went to this many clients.
    Applied(usize),
    /// They could not be applied; the running ones stay.
    Failed(String),
}

impl ClusterMonitor {
    /// Creates the clients and starts every task; they stop when `cancel` is cancelled.
    pub(crate) fn start(
        config: Config,
        cancel: &CancellationToken,
        purpose: Purpose,
        links: Links,
    ) -> Result<Self, MonitorError> {
        let reloads = Reloads::new();
        let first = Generation::start(config.clone(), cancel, 0, (purpose, &links), &reloads)?;
        let handle = Arc::new(ClusterHandle::new(first.shared.clone()));
        let current = Arc::new(Mutex::new(Current {
            config,
            clients: first.clients.clone(),
            tokens: first.tokens.clone(),
        }));
        let supervisor = tokio::spawn(supervise(
            current.clone(),
            first,
            handle.clone(),
            cancel.clone(),
            (purpose, links, reloads.clone()),
        ));
        Ok(ClusterMonitor {
            handle,
            supervisor,
            current,
        })
    }

    /// Takes `config`'s SASL credentials into the running clients, for their next
    /// authentication: nothing is recreated, nothing measured is lost. Other changed settings
    /// wait for a restart (the next fresh start of the tasks takes them).
    pub(crate) fn reload(&self, config: Config) -> Reloaded {
        let mut current = lock(&self.current);
        let mut applied = 0;
        let mut failures = Vec::new();
        for role in [Role::Producer, Role::Consumer, Role::Scan] {
            let new = sasl_credentials(&config, role);
            if new == sasl_credentials(&current.config, role) {
                continue;
            }
            if role == Role::Producer {
                // For the producers created from now on (the transaction probe's).
                *lock(&self.handle.current().reloaded_producer_credentials) = new.clone();
            }
            let Some((username, password)) = new else {
                failures.push(format!(
                    "the {} client's credentials were removed: that takes a restart",
                    role.as_str()
                ));
                continue;
            };
            let clients = current.clients.iter().filter(|(of, _)| *of == role);
            for client in clients.filter_map(|(_, client)| client.upgrade()) {
                match set_sasl_credentials(client.as_ref(), &username, &password) {
                    Ok(()) => applied += 1,
                    Err(error) => failures.push(format!("{} client: {error}", role.as_str())),
                }
            }
        }
        match (&current.tokens, &config.oauth) {
            (Some(tokens), Some(settings)) => {
                // A rotated client secret: the sign-in task asks for a token with it now.
                if tokens.reconfigure(settings.clone()) {
                    applied += 1;
                }
            }
            (None, None) => {}
            _ => failures.push("signing in with OAuth or not takes a restart".to_string()),
        }
        let outcome = if let Some(first) = failures.first() {
            Reloaded::Failed(first.clone())
        } else if applied > 0 {
            Reloaded::Applied(applied)
        } else {
            Reloaded::Unchanged
        };
        if !matches!(outcome, Reloaded::Failed(_)) {
            if without_credentials(&config) != without_credentials(&current.config) {
                tracing::warn!(
                    cluster = %config.name,
                    "the reloaded configuration changes more than credentials: the rest takes \
                     effect at the next restart"
                );
            }
            current.config = config;
        }
        self.count(&outcome);
        outcome
    }

    /// Counts a reload refused before it reached this cluster (the file did not validate).
    pub(crate) fn reload_refused(&self) {
        self.count(&Reloaded::Failed(String::new()));
    }

    /// Counts a reload in the current generation's record.
    fn count(&self, outcome: &Reloaded) {
        let outcome = match outcome {
            Reloaded::Applied(_) => "applied",
            Reloaded::Unchanged => "unchanged",
            Reloaded::Failed(_) => "failed",
        };
        self.handle
            .current()
            .recorder
            .record(ConfigReloaded(outcome));
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

/// The configuration as shown, without its SASL user names (passwords are masked already).
fn without_credentials(config: &Config) -> String {
    config
        .render_masked()
        .lines()
        .filter(|line| !line.trim_start().starts_with("sasl.username"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `generation` until cancelled, replacing it with a fresh one each time the cluster's
/// id changes.
async fn supervise(
    current: Arc<Mutex<Current>>,
    mut generation: Generation,
    handle: Arc<ClusterHandle>,
    cancel: CancellationToken,
    (purpose, links, reloads): (Purpose, Links, Arc<Reloads>),
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
        // The configuration in force, credentials reloaded since included.
        let config = lock(&current).config.clone();
        generation = loop {
            match Generation::start(
                config.clone(),
                &cancel,
                id_changes,
                (purpose, &links),
                &reloads,
            ) {
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
        {
            let mut current = lock(&current);
            current.clients = generation.clients.clone();
            current.tokens = generation.tokens.clone();
        }
        tracing::info!(cluster = %config.name, "monitoring afresh: every series of this cluster starts again");
    }
}

/// Each cluster's place in the replication pipelines among `configs`: a feed for every first
/// cluster of a chain (one that mirrors none) that some replica reads, and that feed for each
/// such replica, however far down the chain. A replica whose chain is not monitored here gets
/// none (`--check-config` and the start warn of it).
pub(crate) fn links_of(configs: &[Config]) -> std::collections::BTreeMap<String, Links> {
    let mut links: std::collections::BTreeMap<String, Links> = std::collections::BTreeMap::new();
    for config in configs {
        let Some(source) = &config.admin.mirror_of else {
            continue;
        };
        // In a chain, every replica reads the first cluster's heartbeats: its feed.
        let (Some(first), Some(topic)) =
            (config.first_source(configs), config.mirror_topic(configs))
        else {
            continue;
        };
        let feed = links
            .entry(first.name.clone())
            .or_default()
            .feed
            .get_or_insert_with(|| tokio::sync::broadcast::channel(BEAT_FEED_CAPACITY).0)
            .clone();
        links.entry(config.name.clone()).or_default().source = Some(Source {
            name: source.clone(),
            feed,
            topic,
        });
    }
    links
}
