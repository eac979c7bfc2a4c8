//! The shared view of one cluster: what metadata said last, and how the heartbeat is doing.
//!
//! The metadata task publishes an immutable [`ClusterSnapshot`] through a `watch` channel; the
//! other tasks read the latest one (or wait for the next) without locking each other out.
//! [`Status`] holds the few facts readiness is decided from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::{Metrics, UNKNOWN_CLUSTER_ID};
use crate::tracker::MessageTracker;

/// A broker as last seen in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: u16,
    /// Rack, where the cluster tells it (DescribeCluster); `None` otherwise.
    pub rack: Option<String>,
    /// When the broker vanished from metadata; `None` while it is listed.
    pub missing_since: Option<Instant>,
}

impl Broker {
    /// `host:port`, as a client would connect to it.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A partition of the heartbeat topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub id: i32,
    /// Number of replicas (the replication factor).
    pub replicas: usize,
    /// Leader broker id, `None` when the partition has no leader.
    pub leader: Option<i32>,
}

/// Label value of a missing leader.
pub const NO_LEADER: i32 = -1;

/// The cluster as the latest successful metadata refresh saw it.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    /// Listed brokers and, until their retention ends, missing ones.
    pub brokers: BTreeMap<i32, Broker>,
    /// Partitions of the heartbeat topic (empty when it does not exist).
    pub partitions: BTreeMap<i32, Partition>,
    /// Why the heartbeat topic's metadata could not be read, if it could not.
    pub topic_error: Option<RDKafkaErrorCode>,
    /// When this snapshot was taken.
    pub refreshed_at: Option<Instant>,
}

impl ClusterSnapshot {
    /// Brokers currently listed in metadata.
    pub fn listed_brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers
            .values()
            .filter(|broker| broker.missing_since.is_none())
    }

    /// Whether metadata says the heartbeat topic does not exist (not merely unreadable).
    pub fn topic_missing(&self) -> bool {
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
    pub fn cluster_id_label(&self) -> &str {
        self.cluster_id.as_deref().unwrap_or(UNKNOWN_CLUSTER_ID)
    }

    /// The leader of `partition`, or [`NO_LEADER`].
    pub fn leader_of(&self, partition: i32) -> i32 {
        self.partitions
            .get(&partition)
            .and_then(|partition| partition.leader)
            .unwrap_or(NO_LEADER)
    }
}

/// Facts readiness is decided from, updated by the tasks.
#[derive(Debug, Default)]
pub struct StatusFacts {
    /// When a heartbeat last made the full round trip.
    pub last_round_trip: Option<Instant>,
    /// The last metadata error, while refreshes fail.
    pub metadata_error: Option<String>,
    /// What is wrong with the heartbeat topic so that heartbeats cannot run, if anything.
    pub topic_problem: Option<String>,
    /// What is not right with the heartbeat topic without stopping heartbeats.
    pub topic_warning: Option<String>,
    /// The last error librdkafka reported for this cluster (e.g. authentication).
    pub client_error: Option<String>,
    /// What the connection checks found, while every checked broker fails.
    pub connection_problem: Option<String>,
}

/// Shared, lock-protected [`StatusFacts`]; every lock is held for a few field writes only.
#[derive(Debug, Default)]
pub struct Status(Mutex<StatusFacts>);

impl Status {
    /// Locks the facts, recovering them if a panicking thread held the lock.
    pub fn lock(&self) -> MutexGuard<'_, StatusFacts> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Everything the tasks of one cluster share.
pub struct ClusterShared {
    /// The validated configuration of this cluster.
    pub config: Config,
    /// Id of this running instance, written into every heartbeat.
    pub instance_id: String,
    /// Wall-clock start of this process, in microseconds since the Unix epoch.
    pub started_at_us: i64,
    pub metrics: Metrics,
    /// The latest metadata snapshot.
    pub view: watch::Sender<Arc<ClusterSnapshot>>,
    /// Partitions the end-to-end consumer is positioned on; only these get heartbeats, so a
    /// heartbeat is never sent before its reader is in place.
    pub reading: watch::Sender<Arc<BTreeSet<i32>>>,
    pub tracker: Mutex<MessageTracker>,
    pub status: Arc<Status>,
    /// Asks the metadata task for a refresh now (e.g. right after the topic was created).
    pub refresh_now: tokio::sync::Notify,
}

impl ClusterShared {
    /// Shared state for a cluster configured by `config`.
    pub fn new(config: Config) -> Arc<Self> {
        let instance_id = uuid::Uuid::new_v4().simple().to_string();
        let admin = &config.admin;
        let metrics = Metrics::new(admin, &instance_id);
        let tracker = MessageTracker::new(admin.lost_after);
        Arc::new(ClusterShared {
            instance_id,
            started_at_us: unix_micros(),
            metrics,
            view: watch::Sender::new(Arc::new(ClusterSnapshot::default())),
            reading: watch::Sender::new(Arc::new(BTreeSet::new())),
            tracker: Mutex::new(tracker),
            status: Arc::new(Status::default()),
            refresh_now: tokio::sync::Notify::new(),
            config,
        })
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.view.borrow().clone()
    }

    /// Locks the message tracker, recovering it if a panicking thread held the lock.
    pub fn tracker(&self) -> MutexGuard<'_, MessageTracker> {
        self.tracker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ok when metadata is fresh and heartbeats make the round trip; else the reason why not.
    pub fn readiness(&self, now: Instant) -> Result<(), String> {
        let admin = &self.config.admin;
        let snapshot = self.snapshot();
        let facts = self.status.lock();
        let stale_after = (admin.check_metadata_period * 3).max(admin.check_metadata_timeout * 2);
        // Why the cluster does not answer: every cause known, most specific first.
        let causes = || {
            let causes: Vec<&str> = [
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
        let round_trip_window = admin.lost_after;
        match facts.last_round_trip {
            Some(at) if now.saturating_duration_since(at) <= round_trip_window => Ok(()),
            Some(at) => Err(format!(
                "no heartbeat made the round trip in the last {}s (last {}s ago)",
                round_trip_window.as_secs(),
                now.saturating_duration_since(at).as_secs()
            )),
            None => Err("no heartbeat has made the round trip yet".to_string()),
        }
    }
}

/// Microseconds since the Unix epoch, by the wall clock.
pub fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

/// Seconds since the Unix epoch, by the wall clock.
pub fn unix_seconds() -> f64 {
    unix_micros() as f64 / 1e6
}
