//! What the tasks of one cluster share: its configuration, what metadata said last, the facts
//! readiness is decided from, and the set its metrics are exported from.
//!
//! The metadata task publishes an immutable `ClusterSnapshot` through a `watch` channel; the
//! other tasks read the latest one (or wait for the next) without locking each other out.
//! [`Status`] holds the few facts readiness is decided from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;

use crate::clock::unix_micros;
use crate::config::Config;
use crate::metrics::ClusterMetrics;
use crate::observed::Observed;
use crate::permissions::Permissions;
use crate::sync::lock;

/// `cluster_id` label value before the cluster has been reached.
pub(crate) const UNKNOWN_CLUSTER_ID: &str = "unknown";

/// A broker as last seen in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broker {
    pub(crate) id: i32,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Rack, where the cluster tells it (DescribeCluster); `None` otherwise.
    pub(crate) rack: Option<String>,
    /// When the broker vanished from metadata; `None` while it is listed.
    pub(crate) missing_since: Option<Instant>,
}

impl Broker {
    /// `host:port`, as a client would connect to it.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A partition of the heartbeat topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    pub(crate) id: i32,
    /// The brokers holding a replica, the preferred leader first (their number is the
    /// replication factor).
    pub(crate) replicas: Vec<i32>,
    /// Leader broker id, `None` when the partition has no leader.
    pub(crate) leader: Option<i32>,
}

/// How many refreshes in a row must name the same controller, with at least two brokers
/// listed, for it to be taken as the active one. A ZooKeeper-based cluster names its active
/// controller in Metadata; a KRaft cluster (every Kafka 4, Confluent Cloud) names a live
/// broker picked at random for each request, since its controllers are not brokers a client
/// can reach: there the id changes within a few refreshes, and the controller stays unknown
/// (with two brokers, thirty equal random picks happen once in half a billion).
pub(crate) const CONTROLLER_STABLE_REFRESHES: u32 = 30;

/// Label value of a missing leader.
pub(crate) const NO_LEADER: i32 = -1;

/// The cluster as the latest successful metadata refresh saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterSnapshot {
    pub(crate) cluster_id: Option<String>,
    /// The active controller, where it is known (see [`CONTROLLER_STABLE_REFRESHES`]).
    pub(crate) controller_id: Option<i32>,
    /// The controller this refresh's Metadata named, true or not: on KRaft any live broker.
    pub(crate) named_controller: Option<i32>,
    /// How many refreshes in a row have named it.
    pub(crate) controller_streak: u32,
    /// Listed brokers and, until their retention ends, missing ones.
    pub(crate) brokers: BTreeMap<i32, Broker>,
    /// Partitions of the heartbeat topic (empty when it does not exist).
    pub(crate) partitions: BTreeMap<i32, Partition>,
    /// Why the heartbeat topic's metadata could not be read, if it could not.
    pub(crate) topic_error: Option<RDKafkaErrorCode>,
    /// When this snapshot was taken.
    pub(crate) refreshed_at: Option<Instant>,
}

impl ClusterSnapshot {
    /// Brokers currently listed in metadata.
    pub(crate) fn listed_brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers
            .values()
            .filter(|broker| broker.missing_since.is_none())
    }

    /// Whether metadata says the heartbeat topic does not exist (not merely unreadable).
    pub(crate) fn topic_missing(&self) -> bool {
        self.refreshed_at.is_some()
            && self.partitions.is_empty()
            && matches!(
                self.topic_error,
                None | Some(
                    RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
                )
            )
    }

    /// The `cluster_id` label value.
    pub(crate) fn cluster_id_label(&self) -> &str {
        self.cluster_id.as_deref().unwrap_or(UNKNOWN_CLUSTER_ID)
    }

    /// The leader of `partition`, or [`NO_LEADER`].
    pub(crate) fn leader_of(&self, partition: i32) -> i32 {
        self.partitions
            .get(&partition)
            .and_then(|partition| partition.leader)
            .unwrap_or(NO_LEADER)
    }
}

/// Why a cluster is not ready before it first answered, nothing having failed.
pub(crate) const NOT_REACHED_YET: &str = "cluster not reached yet: no answer yet";

/// Why a cluster is not ready while its first heartbeats are on their way.
pub(crate) const NO_ROUND_TRIP_YET: &str = "no heartbeat has made the round trip yet";

/// Facts readiness is decided from, updated by the tasks.
#[derive(Debug, Default)]
pub struct StatusFacts {
    /// When a heartbeat last made the full round trip.
    pub last_round_trip: Option<Instant>,
    /// When a broker last acknowledged a heartbeat.
    pub last_acknowledged: Option<Instant>,
    /// The throttling the producer's statistics last showed, said for a person, and when.
    pub producer_throttled: Option<(String, Instant)>,
    /// The throttling the consumer's statistics last showed, said for a person, and when.
    pub consumer_throttled: Option<(String, Instant)>,
    /// The last metadata error, while refreshes fail.
    pub metadata_error: Option<String>,
    /// What is wrong with the heartbeat topic so that heartbeats cannot run, if anything.
    pub topic_problem: Option<String>,
    /// What is not right with the heartbeat topic without stopping heartbeats.
    pub topic_warning: Option<String>,
    /// The last error librdkafka reported for this cluster (e.g. authentication).
    pub client_error: Option<String>,
    /// The last authentication failure, until metadata is answered again.
    pub authentication_error: Option<String>,
    /// What the connection checks found, while every checked broker fails.
    pub connection_problem: Option<String>,
    /// Why the Schema Registry refuses the exporter (its credentials), while it does.
    pub schema_registry_refused: Option<String>,
    /// Authentication failures the clients reported since start (each sign-in refused).
    pub authentication_failures: u64,
    /// Signing in through an identity provider, when the clients use OAuth.
    pub signin: Option<SignInFacts>,
    /// The replication pipeline this cluster is the replica of, as its mirror reader sees it
    /// (never a readiness cause: the replica itself may be fine).
    pub mirror: Option<MirrorFacts>,
}

/// What a replica's mirror reader knows of its pipeline.
#[derive(Debug, Clone, Default)]
pub struct MirrorFacts {
    pub source: String,
    pub topic: String,
    /// Age of the newest source heartbeat read here, since its send.
    pub last_replicated_age_seconds: f64,
    /// Source heartbeats read here since the reader started.
    pub replicated: u64,
    /// Why the mirror topic cannot be read, while it cannot.
    pub problem: Option<String>,
}

/// What the sign-in task knows of signing in with OAuth.
#[derive(Debug, Clone, Default)]
pub struct SignInFacts {
    /// The token endpoint's host (never its path).
    pub endpoint: String,
    pub client_id: String,
    /// Unix time the clients' token expires.
    pub expires_at: Option<f64>,
    /// Unix time the last token was obtained.
    pub refreshed_at: Option<f64>,
    /// How long the last token request took.
    pub last_request_seconds: Option<f64>,
    /// Why token requests fail, while they do.
    pub failing: Option<String>,
    /// Why the clients cannot sign in, while they cannot: no valid token, or the brokers
    /// refuse it.
    pub problem: Option<String>,
}

/// Shared, lock-protected [`StatusFacts`]; every lock is held for a few field writes only.
#[derive(Debug, Default)]
pub struct Status(Mutex<StatusFacts>);

impl Status {
    /// Locks the facts, recovering them if a panicking thread held the lock.
    pub fn lock(&self) -> MutexGuard<'_, StatusFacts> {
        lock(&self.0)
    }
}

/// What became of one heartbeat of a pipeline's source, for the replicas that read it where
/// the pipeline delivers it.
#[derive(Debug, Clone)]
pub(crate) enum Beat {
    /// Handed to the producer for `partition` of the source's heartbeat topic, first sent at
    /// `sent`.
    Sent {
        instance: Arc<str>,
        partition: i32,
        sequence: u64,
        sent: Instant,
    },
    /// The producer gave up on it: it never reached the source.
    Failed {
        instance: Arc<str>,
        partition: i32,
        sequence: u64,
    },
}

/// A cluster's heartbeats, for its replicas (one receiver each).
pub(crate) type BeatFeed = tokio::sync::broadcast::Sender<Beat>;

/// How many beats a feed holds for a receiver that has not read them yet: minutes of a
/// hundred partitions; a receiver further behind loses the oldest, counted.
pub(crate) const BEAT_FEED_CAPACITY: usize = 16_384;

/// A cluster's place in replication pipelines: the feed it fills for its replicas, and, for a
/// replica, its source's name and the feed of its chain's first cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Links {
    /// Filled with this cluster's producer's heartbeats when some replica reads them: only a
    /// chain's first cluster has one, since every replica down the chain reads its heartbeats
    /// (a replica's reader never re-tells what it read, so no replica depends on another
    /// reader having read first).
    pub(crate) feed: Option<BeatFeed>,
    /// For a replica (`mirror.of`): its source.
    pub(crate) source: Option<Source>,
}

/// A replica's source: its name (`mirror.of`), the feed of its chain's first cluster (the
/// source itself, unless it is a replica too), and the topic those heartbeats are read from
/// on the replica.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) feed: BeatFeed,
    pub(crate) topic: String,
}

/// Everything the tasks of one cluster share.
pub(crate) struct ClusterShared {
    /// The validated configuration of this cluster.
    pub(crate) config: Config,
    /// Id of this running instance, written into every heartbeat.
    pub(crate) instance_id: String,
    /// Wall-clock start of this process, in microseconds since the Unix epoch.
    pub(crate) started_at_us: i64,
    /// When these tasks started.
    pub(crate) started: Instant,
    /// Every metric family of this cluster; each task adds its own when it is created.
    pub(crate) metrics: ClusterMetrics,
    /// The latest metadata snapshot.
    pub(crate) view: watch::Sender<Arc<ClusterSnapshot>>,
    pub(crate) status: Arc<Status>,
    /// The rights the account needs, as the cluster answered.
    pub(crate) permissions: Arc<Permissions>,
    /// What the tasks saw last, for a person to read.
    pub(crate) observed: Observed,
    /// The producer's SASL user name and password reloaded since these tasks started, for a
    /// producer created later (the transaction probe's, anew after a fencing).
    pub(crate) reloaded_producer_credentials: Mutex<Option<(String, String)>>,
    /// Asks the metadata task for a refresh now (e.g. right after the topic was created).
    pub(crate) refresh_now: tokio::sync::Notify,
    /// Told when the bootstrap servers lead to another cluster (its id changed): everything
    /// measured so far was of the old one, so the cluster's tasks start afresh.
    pub(crate) cluster_changed: tokio::sync::Notify,
    /// How many times that happened before these tasks started.
    pub(crate) cluster_id_changes: u64,
    /// Replication pipelines this cluster is part of.
    pub(crate) links: Links,
}

/// The current shared state of a cluster, replaced when its tasks start afresh.
pub(crate) struct ClusterHandle(Mutex<Arc<ClusterShared>>);

impl ClusterHandle {
    pub(crate) fn new(shared: Arc<ClusterShared>) -> Self {
        ClusterHandle(Mutex::new(shared))
    }

    /// The state of the cluster's current tasks.
    pub(crate) fn current(&self) -> Arc<ClusterShared> {
        lock(&self.0).clone()
    }

    pub(crate) fn replace(&self, shared: Arc<ClusterShared>) {
        *lock(&self.0) = shared;
    }
}

impl ClusterShared {
    /// Shared state for a cluster configured by `config`.
    pub(crate) fn new(config: Config, cluster_id_changes: u64, links: Links) -> Arc<Self> {
        let instance_id = uuid::Uuid::new_v4().simple().to_string();
        let metrics = ClusterMetrics::new(&instance_id);
        let permissions = Arc::new(Permissions::new(&config));
        metrics.add(permissions.clone());
        Arc::new(ClusterShared {
            permissions,
            observed: Observed::default(),
            reloaded_producer_credentials: Mutex::new(None),
            instance_id,
            started_at_us: unix_micros(),
            started: Instant::now(),
            metrics,
            view: watch::Sender::new(Arc::new(ClusterSnapshot::default())),
            status: Arc::new(Status::default()),
            refresh_now: tokio::sync::Notify::new(),
            cluster_changed: tokio::sync::Notify::new(),
            cluster_id_changes,
            links,
            config,
        })
    }

    /// The latest snapshot.
    pub(crate) fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.view.borrow().clone()
    }

    /// How old metadata may be and still count as fresh: three refresh periods, at least two
    /// timeouts.
    pub(crate) fn metadata_stale_after(&self) -> std::time::Duration {
        let admin = &self.config.admin;
        (admin.check_metadata_period * 3).max(admin.check_metadata_timeout * 2)
    }

    /// Ok when metadata is fresh and heartbeats make the round trip; else the reason why not.
    pub(crate) fn readiness(&self, now: Instant) -> Result<(), String> {
        let admin = &self.config.admin;
        let snapshot = self.snapshot();
        let facts = self.status.lock();
        let stale_after = self.metadata_stale_after();
        // Why the cluster does not answer: every cause known, most specific first.
        let causes = || {
            let causes: Vec<&str> = [
                facts
                    .signin
                    .as_ref()
                    .and_then(|signin| signin.problem.as_deref()),
                facts.connection_problem.as_deref(),
                facts.client_error.as_deref(),
                facts.metadata_error.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect();
            if causes.is_empty() {
                "no answer yet".to_string()
            } else {
                causes.join("; ")
            }
        };
        match snapshot.refreshed_at {
            None => return Err(format!("cluster not reached yet: {}", causes())),
            Some(at) if now.saturating_duration_since(at) > stale_after => {
                return Err(format!(
                    "metadata is stale ({}s old): {}",
                    now.saturating_duration_since(at).as_secs(),
                    causes()
                ));
            }
            Some(_) => {}
        }
        if let Some(problem) = &facts.topic_problem {
            return Err(problem.clone());
        }
        // A refusal is said at once, with the right that is missing, not only once round
        // trips have been missing for a while.
        let mut refused = self.permissions.causes();
        refused.extend(facts.schema_registry_refused.clone());
        if !refused.is_empty() {
            return Err(refused.join("; "));
        }
        let round_trip_window = admin.lost_after;
        match facts.last_round_trip {
            Some(at) if now.saturating_duration_since(at) <= round_trip_window => Ok(()),
            Some(at) => Err(format!(
                "no heartbeat made the round trip in the last {}s (last {}s ago)",
                round_trip_window.as_secs(),
                now.saturating_duration_since(at).as_secs()
            )),
            None => Err(NO_ROUND_TRIP_YET.to_string()),
        }
    }
}
