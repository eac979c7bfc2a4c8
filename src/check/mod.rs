//! `cc-heartbeat check`: every check of a cluster once, for the person on call asking "is it
//! the cluster or my network?". It runs the exporter's own tasks (all but the scan of other
//! groups) for one cluster until each has answered (or the timeout), then reports what they
//! found, with one line for each failure saying what to fix. It changes nothing on the
//! cluster beyond one heartbeat per partition: the topic is checked, never created.
//!
//! - `collect`: one cluster's report, gathered from what its tasks observed;
//! - `report`: the report's shape (also its JSON);
//! - `fixes`: what to change for each kind of failure;
//! - `render`: the report as text.

mod collect;
mod fixes;
mod render;
mod report;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use self::report::{ClusterReport, Report, EXIT_CONFIGURATION, EXIT_FAILED, EXIT_HEALTHY};

use crate::cluster::Links;
use crate::config::Config;
use crate::monitor::{links_of, ClusterMonitor, Purpose};
use crate::recorder::observed::Connection;
use crate::shared::ClusterShared;

/// How long a decisive failure (nothing reachable, authentication refused, a right missing,
/// the topic missing) is watched before the report, so that what follows from it is seen too.
const SETTLE: Duration = Duration::from_secs(2);

/// How often the tasks' observations are read while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Checks every cluster of `configs` at once, each bounded by `timeout`.
pub async fn run(configs: Vec<Config>, timeout: Duration) -> Report {
    let started = Instant::now();
    let mut links = links_of(&configs);
    let checks = configs.into_iter().map(|config| {
        let links = links.remove(&config.name).unwrap_or_default();
        check_cluster(config, timeout, links)
    });
    let finished = futures::future::join_all(checks).await;
    // A pipeline's source beats until its replicas have been checked too: every cluster's
    // tasks stop together, once every report is made. The clients are closed in the
    // background; the report does not wait for a dead cluster.
    let mut clusters = Vec::with_capacity(finished.len());
    let mut stopping = Vec::new();
    for (report, running) in finished {
        clusters.push(report);
        if let Some((cancel, monitor)) = running {
            cancel.cancel();
            stopping.push(tokio::time::timeout(Duration::from_secs(2), monitor.join()));
        }
    }
    futures::future::join_all(stopping).await;
    Report::new(clusters, started.elapsed())
}

/// Checks one cluster: its tasks run until they have all answered, or one failure decides the
/// outcome, or `timeout`.
async fn check_cluster(
    config: Config,
    timeout: Duration,
    links: Links,
) -> (ClusterReport, Option<(CancellationToken, ClusterMonitor)>) {
    let started = Instant::now();
    let manages_topic = config.admin.heartbeat_topic_manage;
    let config = for_check(config);
    let cancel = CancellationToken::new();
    let monitor = match ClusterMonitor::start(config.clone(), &cancel, Purpose::Check, links) {
        Ok(monitor) => monitor,
        Err(error) => return (collect::not_started(&config, &error.to_string()), None),
    };
    let handle = monitor.handle();
    // Connection checks are replaced as they are redone (the bootstrap servers' by the
    // brokers'): every one seen is kept for the report.
    let mut connections: BTreeMap<String, Connection> = BTreeMap::new();
    let mut decided_at: Option<Instant> = None;
    let timed_out = loop {
        let shared = handle.current();
        for connection in shared.recorder.observed().connections() {
            connections.insert(connection.target.clone(), connection);
        }
        let now = Instant::now();
        if complete(&shared, &connections) {
            break false;
        }
        if decisive(&shared) {
            let at = *decided_at.get_or_insert(now);
            if now.duration_since(at) >= SETTLE {
                break false;
            }
        } else {
            decided_at = None;
        }
        if now.duration_since(started) >= timeout {
            break true;
        }
        tokio::time::sleep(POLL).await;
    };
    let shared = handle.current();
    let report = collect::build(
        &shared,
        manages_topic,
        connections.into_values().collect(),
        timed_out.then_some(timeout),
        started.elapsed(),
    );
    (report, Some((cancel, monitor)))
}

/// The configuration as the check runs it: the topic is checked, not created or grown, and
/// no transaction probe starts (its transactional id is the running exporter's: starting
/// one would fence that exporter's).
fn for_check(mut config: Config) -> Config {
    config.admin.heartbeat_topic_manage = false;
    config.admin.probe_transactions = false;
    config
}

/// Whether every check has answered well: metadata, every listed broker's connection, a round
/// trip on every partition.
fn complete(shared: &ClusterShared, connections: &BTreeMap<String, Connection>) -> bool {
    let snapshot = shared.snapshot();
    if snapshot.refreshed_at.is_none() || snapshot.partitions.is_empty() {
        return false;
    }
    let brokers_checked = snapshot.listed_brokers().all(|broker| {
        connections
            .get(&broker.id.to_string())
            .is_some_and(|connection| connection.ok)
    });
    let round_trips: BTreeMap<i32, u64> = shared
        .recorder
        .observed()
        .partitions(Instant::now())
        .into_iter()
        .map(|partition| (partition.partition, partition.consumed))
        .collect();
    let every_partition = snapshot
        .partitions
        .keys()
        .all(|partition| round_trips.get(partition).is_some_and(|count| *count > 0));
    let replicated = shared.links.source.is_none()
        || shared
            .recorder
            .facts()
            .mirror
            .as_ref()
            .is_some_and(|mirror| mirror.replicated > 0);
    brokers_checked
        && every_partition
        && replicated
        && shared.recorder.permissions().causes().is_empty()
}

/// Whether a failure already decides the outcome: nothing answers (a whole round of
/// connection checks failed), no token comes from the identity provider, the credentials or a
/// right are refused, or the topic does not exist.
fn decisive(shared: &ClusterShared) -> bool {
    let snapshot = shared.snapshot();
    let facts = shared.recorder.facts();
    let unreachable = snapshot.refreshed_at.is_none() && facts.connection_problem.is_some();
    let broken_pipeline = facts
        .mirror
        .as_ref()
        .is_some_and(|mirror| mirror.problem.is_some());
    let no_token = facts
        .signin
        .as_ref()
        .is_some_and(|signin| signin.problem.is_some());
    unreachable
        || no_token
        || broken_pipeline
        || facts.authentication_error.is_some()
        || snapshot.topic_missing()
        || facts.topic_problem.is_some()
        || !shared.recorder.permissions().causes().is_empty()
}
