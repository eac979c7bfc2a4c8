//! What the heartbeat's producer and consumer of one cluster share, and nothing else does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::cluster::Beat;
use crate::recorder::heartbeat::InFlight;
use crate::shared::ClusterShared;
use crate::sync::lock;
use crate::tracker::MessageTracker;

/// What the producer and the consumer of one cluster share.
pub(super) struct HeartbeatState {
    pub(super) shared: Arc<ClusterShared>,
    tracker: Mutex<MessageTracker>,
    /// Partitions the end-to-end consumer is positioned on; only these get heartbeats, so a
    /// heartbeat is never sent before its reader is in place.
    pub(super) reading: watch::Sender<Arc<BTreeSet<i32>>>,
}

impl HeartbeatState {
    /// Nothing in flight, no partition positioned yet.
    pub(super) fn new(shared: &Arc<ClusterShared>) -> Self {
        HeartbeatState {
            shared: shared.clone(),
            tracker: Mutex::new(MessageTracker::new(shared.config.admin.lost_after)),
            reading: watch::Sender::new(Arc::new(BTreeSet::new())),
        }
    }

    pub(super) fn tracker(&self) -> MutexGuard<'_, MessageTracker> {
        lock(&self.tracker)
    }

    /// Tells the replicas reading this cluster's heartbeats (a pipeline's first cluster only:
    /// a replica's own feed carries what it read of its source) that `beat` happened.
    pub(super) fn tell_replicas(&self, beat: impl FnOnce(Arc<str>) -> Beat) {
        let shared = &self.shared;
        if shared.config.admin.mirror_of.is_some() {
            return;
        }
        if let Some(feed) = &shared.links.feed {
            // No replica listening right now is not an error.
            let _ = feed.send(beat(Arc::from(shared.instance_id.as_str())));
        }
    }

    /// Records how many heartbeats the tracker holds in flight.
    pub(super) fn set_in_flight(&self, pending: usize) {
        self.shared.recorder.record(InFlight(pending));
    }
}
