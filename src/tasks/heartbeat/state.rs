//! What the heartbeat's producer and consumer of one cluster share, and nothing else does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::cluster::{Beat, BeatFeed, ClusterSnapshot};
use crate::config::Config;
use crate::recorder::heartbeat::InFlight;
use crate::recorder::Recorder;
use crate::sync::lock;
use crate::tracker::MessageTracker;

/// What the heartbeat's tasks are given: the cluster's configuration (their clients' settings
/// and their own), the record, the running instance, and where replicas read its beats.
pub(crate) struct Given {
    pub(crate) config: Config,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) instance_id: String,
    pub(crate) started_at_us: i64,
    /// Filled for the replicas reading this cluster's heartbeats, when some do.
    pub(crate) feed: Option<BeatFeed>,
    /// The producer's SASL credentials reloaded since the start (the transaction probe's
    /// producers, made later, take them).
    pub(crate) reloaded_producer_credentials: Arc<Mutex<Option<(String, String)>>>,
}

/// What the producer and the consumer of one cluster share.
pub(super) struct HeartbeatState {
    /// The cluster's configuration: the clients' settings, and the heartbeat's own.
    pub(super) config: Config,
    pub(super) recorder: Arc<Recorder>,
    /// Id of this running instance, written into every heartbeat.
    pub(super) instance_id: String,
    /// Wall-clock start of this process, in microseconds since the Unix epoch.
    pub(super) started_at_us: i64,
    /// Filled with this cluster's heartbeats for the replicas that read them (a pipeline's
    /// first cluster only: every replica down the chain reads its heartbeats).
    feed: Option<BeatFeed>,
    /// The producer's SASL credentials reloaded since the start, for producers made later.
    pub(super) reloaded_producer_credentials: Arc<Mutex<Option<(String, String)>>>,
    tracker: Mutex<MessageTracker>,
    /// Partitions the end-to-end consumer is positioned on; only these get heartbeats, so a
    /// heartbeat is never sent before its reader is in place.
    pub(super) reading: watch::Sender<Arc<BTreeSet<i32>>>,
}

impl HeartbeatState {
    /// Nothing in flight, no partition positioned yet.
    pub(super) fn new(given: Given) -> Self {
        let Given {
            config,
            recorder,
            instance_id,
            started_at_us,
            feed,
            reloaded_producer_credentials,
        } = given;
        HeartbeatState {
            tracker: Mutex::new(MessageTracker::new(config.admin.lost_after)),
            // A replica's feed carries what it read of its source, never its own heartbeats.
            feed: feed.filter(|_| config.admin.mirror_of.is_none()),
            config,
            recorder,
            instance_id,
            started_at_us,
            reloaded_producer_credentials,
            reading: watch::Sender::new(Arc::new(BTreeSet::new())),
        }
    }

    pub(super) fn tracker(&self) -> MutexGuard<'_, MessageTracker> {
        lock(&self.tracker)
    }

    /// Tells the replicas reading this cluster's heartbeats (a pipeline's first cluster only:
    /// a replica's own feed carries what it read of its source) that `beat` happened.
    pub(super) fn tell_replicas(&self, beat: impl FnOnce(Arc<str>) -> Beat) {
        if let Some(feed) = &self.feed {
            // No replica listening right now is not an error.
            let _ = feed.send(beat(Arc::from(self.instance_id.as_str())));
        }
    }

    /// Records how many heartbeats the tracker holds in flight.
    pub(super) fn set_in_flight(&self, pending: usize) {
        self.recorder.record(InFlight(pending));
    }

    /// The latest metadata snapshot.
    pub(super) fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.recorder.snapshot()
    }
}
