//! What metadata said of one cluster, and its place in replication pipelines.
//!
//! The metadata task publishes an immutable `ClusterSnapshot` through a `watch` channel (the
//! recorder's); the other tasks read the latest one (or wait for the next) without locking each
//! other out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::types::RDKafkaErrorCode;

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
