//! What the heartbeat's producer and consumer of one cluster share, and nothing else does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::Statistics;
use tokio::sync::watch;

use super::metrics::HeartbeatMetrics;
use crate::cluster::Beat;
use crate::kafka::client::Role;
use crate::shared::ClusterShared;
use crate::tracker::MessageTracker;

use crate::kafka::throttle::ThrottleMetrics;
use crate::sync::lock;

/// What the producer and the consumer of one cluster share.
pub(super) struct HeartbeatState {
    pub(super) shared: Arc<ClusterShared>,
    pub(super) metrics: Arc<HeartbeatMetrics>,
    tracker: Mutex<MessageTracker>,
    /// Partitions the end-to-end consumer is positioned on; only these get heartbeats, so a
    /// heartbeat is never sent before its reader is in place.
    pub(super) reading: watch::Sender<Arc<BTreeSet<i32>>>,
    /// How much each broker throttles the producer and the consumer.
    pub(super) throttle: Arc<ThrottleMetrics>,
}

impl HeartbeatState {
    /// Nothing in flight, no partition positioned yet.
    pub(super) fn new(shared: &Arc<ClusterShared>, metrics: Arc<HeartbeatMetrics>) -> Self {
        let throttle = Arc::new(ThrottleMetrics::default());
        shared.recorder.metrics().add(throttle.clone());
        HeartbeatState {
            throttle,
            shared: shared.clone(),
            metrics,
            tracker: Mutex::new(MessageTracker::new(shared.config.admin.lost_after)),
            reading: watch::Sender::new(Arc::new(BTreeSet::new())),
        }
    }

    pub(super) fn tracker(&self) -> MutexGuard<'_, MessageTracker> {
        lock(&self.tracker)
    }

    /// Records one statistics report of `role`'s client (the producer's or the consumer's) and
    /// keeps the last throttling it shows, with its time, in the cluster's status: a quiet
    /// report after it does not undo that the connection was held back just now.
    pub(super) fn record_throttling(&self, role: Role, statistics: &Statistics) {
        let Some(what) = self.throttle.record(role, statistics) else {
            return;
        };
        let mut status = self.shared.recorder.status().lock();
        let slot = match role {
            Role::Consumer => &mut status.consumer_throttled,
            _ => &mut status.producer_throttled,
        };
        *slot = Some((what, Instant::now()));
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

    /// Sets the in-flight gauge from the tracker's count.
    pub(super) fn set_in_flight(&self, pending: usize) {
        self.metrics.messages_in_flight.set(pending as i64);
    }
}
