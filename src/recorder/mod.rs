//! One record of what a cluster did: the tasks report typed observations, and the recorder
//! alone updates everything they feed — the metric families, what a person reads (the status
//! page, the one-shot check, the support bundle), the facts readiness is decided from, the
//! rights the cluster refused, and the log's spells. Readers ask its views, never a task.
//!
//! One recorder per generation of a cluster's tasks: a fresh start (the cluster's id changed)
//! starts a fresh record.
//!
//! A task reports with [`Recorder::record`]; each observation is routed to the part of the
//! record that owns its series (the table in `route!` below), which is handed the stores.
//!
//! - `oauth`: signing in through an identity provider;
//! - `heartbeat`: what became of each heartbeat: its series, round trips, log spells;
//! - `scan`: the cluster scan: topics, min ISR, the consumer groups and their lag;
//! - `schema_registry`: the Schema Registry probe;
//! - `mirror`: a replica's reader of its source's heartbeats;
//! - `commit`: the group coordinator probe's commits;
//! - `transaction`: the transaction probe's rounds;
//! - `clients`: the clients' errors and statistics: each broker as they see it, throttling;
//! - `connectivity`: the connection checks: their series, latest checks, log spells;
//! - `metadata`: the metadata refreshes: the cluster's series, the published view;
//! - `topic`: the heartbeat topic's state;
//! - `reloads`: configuration reloads, counted across generations;
//! - `stores`: the stores a part writes besides its series;
//! - `observed`: what the tasks saw last, for a person to read;
//! - `permissions`: the rights the account needs, as the cluster answered;
//! - `status`: the facts readiness is decided from, and the readiness judgement.

pub(crate) mod clients;
pub(crate) mod commit;
pub(crate) mod connectivity;
pub(crate) mod heartbeat;
pub(crate) mod metadata;
pub(crate) mod mirror;
pub(crate) mod oauth;
pub(crate) mod reloads;
pub(crate) mod scan;
pub(crate) mod schema_registry;
mod stores;
pub(crate) mod topic;
pub(crate) mod transaction;

pub(crate) mod observed;
pub(crate) mod permissions;
pub(crate) mod status;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use self::clients::Clients;
use self::commit::Commit;
use self::connectivity::Connectivity;
use self::heartbeat::Heartbeat;
use self::metadata::Metadata;
use self::mirror::Mirror;
use self::oauth::OAuth;
use self::observed::Observed;
use self::permissions::Permissions;
use self::permissions::{Allowed, Refused};
use self::reloads::Reloads;
use self::scan::Scan;
use self::schema_registry::SchemaRegistry;
use self::status::{ReadinessSettings, Status, StatusFacts};
use self::stores::Stores;
use self::topic::Topic;
use self::transaction::Transaction;
use crate::cluster::ClusterSnapshot;
use crate::config::Config;
use crate::kafka::client::{ClientError, ClientReports};
use crate::metrics::ClusterMetrics;

/// Something a task observed, recorded by the part of the record that owns it.
pub(crate) trait Observation {
    fn record_in(self, recorder: &Recorder);
}

/// Each observation, and the part (and its method) that records it; `?` marks a part only
/// some configurations have (an observation of a part not there is none to record).
macro_rules! route {
    ($observation:ty => ? $part:ident . $method:ident $(, $($rest:tt)*)?) => {
        impl Observation for $observation {
            fn record_in(self, recorder: &Recorder) {
                if let Some(part) = &recorder.$part {
                    part.$method(&recorder.stores(), self);
                }
            }
        }
        $(route! { $($rest)* })?
    };
    ($observation:ty => $part:ident . $method:ident $(, $($rest:tt)*)?) => {
        impl Observation for $observation {
            fn record_in(self, recorder: &Recorder) {
                recorder.$part.$method(&recorder.stores(), self);
            }
        }
        $(route! { $($rest)* })?
    };
    () => {};
}

route! {
    reloads::ConfigReloaded => reloads.reloaded,
    oauth::SignInStarted => ?oauth.started,
    oauth::TokenRequested => ?oauth.requested,
    oauth::TokenObtained => ?oauth.obtained,
    oauth::TokenRejected => ?oauth.rejected,
    oauth::SignInState => ?oauth.state,
    heartbeat::BeatTicked => heartbeat.ticked,
    heartbeat::PartitionMonitored => heartbeat.monitored,
    heartbeat::InFlight => heartbeat.in_flight,
    heartbeat::LeadersFollowed => heartbeat.leaders_followed,
    heartbeat::Acknowledged => heartbeat.acknowledged,
    heartbeat::NotDelivered => heartbeat.not_delivered,
    heartbeat::RoundTrip => heartbeat.round_trip,
    heartbeat::Duplicated => heartbeat.duplicated,
    heartbeat::TransactionalRead => heartbeat.transactional,
    heartbeat::Skipped => heartbeat.skipped,
    heartbeat::Lost => heartbeat.lost,
    commit::CoordinatorNamed => commit.coordinator_named,
    commit::CommitAnswered => commit.answered,
    transaction::TransactionTimed => ?transaction.timed,
    transaction::TransactionEnded => ?transaction.ended,
    clients::ClientStatistics => clients.statistics,
    clients::ClientBrokersFollowed => clients.followed,
    connectivity::ConnectionChecked => connectivity.checked,
    connectivity::ConnectionRound => connectivity.round,
    connectivity::BrokerMissing => connectivity.missing,
    connectivity::TargetForgotten => connectivity.forgotten,
    scan::ScanFinished => ?scan.finished,
    scan::TopicsCounted => ?scan.topics,
    scan::MinIsrCounted => ?scan.min_isr,
    scan::GroupsListed => ?scan.groups,
    scan::LagScanned<'_> => ?scan.lag,
    scan::ScanPartSucceeded => ?scan.succeeded,
    scan::ScanPartFailed => ?scan.failed,
    schema_registry::RegistryAnswered => ?schema_registry.answered,
    schema_registry::RegistryFailed => ?schema_registry.failed,
    schema_registry::RegistryProbed => ?schema_registry.probed,
    mirror::MirrorPositioned => ?mirror.positioned,
    mirror::MirrorCounted => ?mirror.counted,
    mirror::MirrorReplicated => ?mirror.replicated,
    mirror::MirrorSkipped => ?mirror.skipped,
    mirror::MirrorDropped => ?mirror.dropped,
    mirror::MirrorPartitionDifference => ?mirror.difference,
    mirror::MirrorExpired => ?mirror.expired,
    metadata::MetadataAnswered => metadata.answered,
    metadata::MetadataDelayed => metadata.delayed,
    metadata::MetadataFailed => metadata.failed,
    metadata::MetadataRefreshed => metadata.refreshed,
    topic::TopicJudged => topic.judged,
    topic::TopicChecked => topic.checked,
}

impl Observation for Allowed {
    fn record_in(self, recorder: &Recorder) {
        recorder.permissions.allow(&self.0);
    }
}

impl Observation for Refused {
    fn record_in(self, recorder: &Recorder) {
        recorder
            .permissions
            .refuse(self.right, &self.stops, &self.error);
    }
}

/// What a record is set up for, beside the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup<'a> {
    /// This running instance's id (on `heartbeat_build_info`).
    pub(crate) instance_id: &'a str,
    /// How often the cluster's id changed before this generation.
    pub(crate) cluster_id_changes: u64,
    /// Whether the cluster scan runs (the exporter's, not the one-shot check's).
    pub(crate) scans: bool,
    /// The cluster's count of configuration reloads, kept across generations.
    pub(crate) reloads: &'a Arc<Reloads>,
    /// For a replica whose source is monitored here: the source's name, and the topic its
    /// heartbeats are read from here.
    pub(crate) mirror: Option<(&'a str, &'a str)>,
}

/// The record of one generation of a cluster's tasks.
pub(crate) struct Recorder {
    /// The cluster's name.
    name: String,
    /// Every metric family of this cluster.
    metrics: ClusterMetrics,
    /// The latest metadata snapshot.
    view: watch::Sender<Arc<ClusterSnapshot>>,
    status: Status,
    observed: Observed,
    permissions: Arc<Permissions>,
    readiness: ReadinessSettings,
    reloads: Arc<Reloads>,
    /// For clients that sign in with OAuth.
    oauth: Option<OAuth>,
    heartbeat: Heartbeat,
    clients: Clients,
    commit: Commit,
    transaction: Option<Transaction>,
    metadata: Metadata,
    /// Only the exporter scans the cluster (not the one-shot check).
    scan: Option<Scan>,
    schema_registry: Option<SchemaRegistry>,
    /// For a replica whose source is monitored here.
    mirror: Option<Mirror>,
    connectivity: Connectivity,
    topic: Topic,
}

impl Recorder {
    /// The record of the cluster `config` configures, monitored by running instance
    /// `instance_id`.
    /// `cluster_id_changes`: how often the cluster's id changed before this generation.
    pub(crate) fn new(config: &Config, setup: Setup<'_>) -> Self {
        let Setup {
            instance_id,
            cluster_id_changes,
            scans,
            reloads,
            ..
        } = setup;
        let mut metrics = ClusterMetrics::builder(instance_id);
        let permissions = Arc::new(Permissions::new(config));
        metrics.add(permissions.clone());
        let admin = &config.admin;
        metrics.add(reloads.clone());
        let oauth = OAuth::new(config);
        metrics.add_some(oauth.as_ref().map(OAuth::families));
        let heartbeat = Heartbeat::new(config);
        metrics.add(heartbeat.families());
        let clients = Clients::default();
        for families in clients.families() {
            metrics.add(families);
        }
        let commit = Commit::new(config);
        metrics.add_some(commit.families());
        let transaction = Transaction::new(config);
        metrics.add_some(transaction.as_ref().map(Transaction::families));
        let metadata = Metadata::new(cluster_id_changes);
        metrics.add(metadata.families());
        let topic = Topic::default();
        metrics.add(topic.families());
        let connectivity = Connectivity::new(config);
        metrics.add(connectivity.families());
        let scan = scans.then(|| Scan::new(config));
        for families in scan.iter().flat_map(Scan::families) {
            metrics.add(families);
        }
        let schema_registry = SchemaRegistry::new(config);
        metrics.add_some(schema_registry.as_ref().map(SchemaRegistry::families));
        let mirror = setup
            .mirror
            .map(|(source, topic)| Mirror::new(config, source, topic));
        metrics.add_some(mirror.as_ref().map(Mirror::families));
        Recorder {
            name: config.name.clone(),
            reloads: reloads.clone(),
            oauth,
            heartbeat,
            clients,
            commit,
            transaction,
            metadata,
            scan,
            schema_registry,
            mirror,
            connectivity,
            topic,
            metrics: metrics.build(&config.name),
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

    /// Records what a task observed.
    pub(crate) fn record(&self, observation: impl Observation) {
        observation.record_in(self);
    }

    fn stores(&self) -> Stores<'_> {
        Stores {
            cluster: &self.name,
            status: &self.status,
            observed: &self.observed,
            view: &self.view,
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

    /// Whether the brokers answered since `since` (a heartbeat, or a throttling they said).
    pub(crate) fn answered_since(&self, since: Instant) -> bool {
        metadata::answered_since(&self.stores(), since)
    }

    /// The consumer groups reported at the last listing, with their protocol.
    pub(crate) fn listed_groups(
        &self,
    ) -> std::collections::BTreeMap<String, crate::kafka::groups::GroupProtocol> {
        self.scan
            .as_ref()
            .map(Scan::listed_groups)
            .unwrap_or_default()
    }

    /// Authentication failures the clients reported since start, and the last one until the
    /// cluster answers again.
    pub(crate) fn authentication_refusals(&self) -> (u64, Option<String>) {
        let facts = self.status.lock();
        (
            facts.authentication_failures,
            facts.authentication_error.clone(),
        )
    }

    /// Whether something about the heartbeat topic stops heartbeats.
    pub(crate) fn topic_problem(&self) -> bool {
        self.status.lock().topic_problem.is_some()
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

    /// The facts readiness is decided from, as they are now.
    pub(crate) fn facts(&self) -> StatusFacts {
        self.status.lock().clone()
    }

    /// This cluster's exposition, as [`ClusterMetrics::encode`] writes it.
    pub(crate) fn encode(
        &self,
        out: &mut String,
        cluster: &str,
        cluster_id: &str,
    ) -> std::fmt::Result {
        self.metrics.encode(out, cluster, cluster_id)
    }

    /// What the tasks saw last, for a person to read.
    pub(crate) fn observed(&self) -> &Observed {
        &self.observed
    }

    /// The rights the account needs, as the cluster answered.
    pub(crate) fn permissions(&self) -> &Permissions {
        &self.permissions
    }
}

impl ClientReports for Recorder {
    fn client_error(&self, error: ClientError) {
        self.clients.error(&self.stores(), error);
    }
}
