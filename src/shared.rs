//! What one generation of a cluster's tasks is started with, and what the HTTP server, the
//! one-shot check and the support bundle read of it: the configuration, the instance, the
//! recorder, and the signals between tasks.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::clock::unix_micros;
use crate::cluster::{ClusterSnapshot, Links};
use crate::config::Config;
use crate::recorder::reloads::Reloads;
use crate::recorder::{Recorder, Setup};
use crate::sync::lock;

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
    /// The record of what this cluster's tasks did: metrics, readiness facts, what a person
    /// reads.
    pub(crate) recorder: Arc<Recorder>,
    /// The producer's SASL user name and password reloaded since these tasks started, for a
    /// producer created later (the transaction probe's, anew after a fencing).
    pub(crate) reloaded_producer_credentials: Arc<Mutex<Option<(String, String)>>>,
    /// Asks the metadata task for a refresh now (e.g. right after the topic was created).
    pub(crate) refresh_now: Arc<tokio::sync::Notify>,
    /// Told when the bootstrap servers lead to another cluster (its id changed): everything
    /// measured so far was of the old one, so the cluster's tasks start afresh.
    pub(crate) cluster_changed: Arc<tokio::sync::Notify>,
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
    /// `scans`: whether the cluster scan runs; `reloads`: the cluster's count of
    /// configuration reloads, kept across generations.
    pub(crate) fn new(
        config: Config,
        cluster_id_changes: u64,
        links: Links,
        (scans, reloads): (bool, &Arc<Reloads>),
    ) -> Arc<Self> {
        let instance_id = uuid::Uuid::new_v4().simple().to_string();
        let recorder = Arc::new(Recorder::new(
            &config,
            Setup {
                instance_id: &instance_id,
                cluster_id_changes,
                scans,
                reloads,
                mirror: links
                    .source
                    .as_ref()
                    .map(|source| (source.name.as_str(), source.topic.as_str())),
            },
        ));
        Arc::new(ClusterShared {
            recorder,
            reloaded_producer_credentials: Arc::default(),
            instance_id,
            started_at_us: unix_micros(),
            started: Instant::now(),
            refresh_now: Arc::default(),
            cluster_changed: Arc::default(),
            links,
            config,
        })
    }

    /// The latest snapshot.
    pub(crate) fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.recorder.snapshot()
    }
}
