//! `/api/status`: what the status page shows, as one JSON document (its shape is in
//! docs/oncall.md): per cluster, its state in one word and why, readiness and its reason, the
//! heartbeats failing per second, each broker's state with why, each partition's last minute
//! of round trips, and the groups furthest behind. Read from memory, like `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::unix_seconds;
use crate::recorder::observed::{Connection, Event, GroupBehind, PartitionView, ROUND_TRIP_WINDOW};
use crate::recorder::status::{NOT_REACHED_YET, NO_ROUND_TRIP_YET};
use crate::shared::{ClusterHandle, ClusterShared};

/// The document's version; fields are only ever added.
const STATUS_VERSION: u32 = 1;

/// How often the page asks for the document again.
pub(crate) const REFRESH: Duration = Duration::from_secs(2);

/// A failure this recent makes a broker `degraded`.
const RECENT: f64 = 60.0;

#[derive(Debug, Serialize)]
pub(crate) struct StatusDocument {
    version: u32,
    cc_heartbeat_version: &'static str,
    /// Unix seconds.
    generated_at: f64,
    refresh_seconds: f64,
    /// The cluster the demo's buttons act on, in demo mode.
    demo_cluster: Option<String>,
    clusters: Vec<ClusterStatus>,
}

#[derive(Debug, Serialize)]
struct ClusterStatus {
    cluster: String,
    cluster_id: String,
    /// What a person would conclude of the cluster as a whole.
    state: ClusterState,
    /// Why it is not `healthy`, most serious first.
    state_why: Vec<String>,
    /// Heartbeats lost or not delivered per second, over the last minute.
    failing_per_second: f64,
    /// Whether metadata answered recently.
    reachable: bool,
    ready: bool,
    reason: Option<String>,
    /// The controller metadata names; on KRaft a broker the cluster picks, often not one
    /// of its brokers' ids: the page shows it only when it is a listed broker.
    controller_id: Option<i32>,
    brokers: Vec<BrokerStatus>,
    partitions: Vec<PartitionStatus>,
    consumed: u64,
    lost: u64,
    failed: u64,
    groups_behind: Vec<GroupBehind>,
    /// On a replica (`mirror.of`): its replication pipeline from its source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline: Option<PipelineStatus>,
}

/// A replica's pipeline from its source: `replicating`, `stalled` (nothing read within
/// `mirror.lost.after.seconds`) or `broken` (the mirror topic cannot be read).
#[derive(Debug, Serialize)]
struct PipelineStatus {
    source: String,
    topic: String,
    state: &'static str,
    last_replicated_age_seconds: f64,
    problem: Option<String>,
}

/// The cluster as a whole: `healthy` (ready, every broker up, no heartbeat failing),
/// `degraded` (heartbeats make the round trip, but a broker, a partition or some heartbeats
/// fail), `down` (not ready: no round trip, unreachable, or refused) or `starting` (not ready
/// yet, and nothing has failed: heartbeats have not had time to come back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum ClusterState {
    Healthy,
    Degraded,
    Down,
    Starting,
}

/// `up`, `degraded` (a failure in the last minute), `down` (its connection check fails, it
/// left metadata, or heartbeats through it stopped coming back) or `unknown` (not checked yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum BrokerState {
    Up,
    Degraded,
    Down,
    Unknown,
}

#[derive(Debug, Serialize)]
struct BrokerStatus {
    id: i32,
    address: String,
    rack: Option<String>,
    state: BrokerState,
    /// Why it is not `up`.
    why: Option<String>,
    /// The last connection check's time to a connection.
    connection_seconds: Option<f64>,
    checked_at: Option<f64>,
    last_failure: Option<Event>,
    /// The heartbeat partitions it leads.
    leads: Vec<i32>,
}

#[derive(Debug, Serialize)]
struct PartitionStatus {
    leader: Option<i32>,
    /// Whether heartbeats stopped coming back.
    stalled: bool,
    #[serde(flatten)]
    view: PartitionView,
}

impl StatusDocument {
    pub(crate) fn new(clusters: &[Arc<ClusterHandle>], demo_cluster: Option<&str>) -> Self {
        let now = Instant::now();
        StatusDocument {
            version: STATUS_VERSION,
            cc_heartbeat_version: env!("CARGO_PKG_VERSION"),
            generated_at: unix_seconds(),
            refresh_seconds: REFRESH.as_secs_f64(),
            demo_cluster: demo_cluster.map(str::to_string),
            clusters: clusters
                .iter()
                .map(|cluster| cluster_status(&cluster.current(), now))
                .collect(),
        }
    }
}

/// How long a partition may go without a round trip before it counts as stalled: three beats,
/// at least two seconds.
fn stall_after(shared: &ClusterShared) -> Duration {
    (shared.config.admin.produce_period * 3).max(Duration::from_secs(2))
}

fn cluster_status(shared: &ClusterShared, now: Instant) -> ClusterStatus {
    let snapshot = shared.snapshot();
    let readiness = shared.recorder.readiness(now);
    let admin = &shared.config.admin;
    let stale_after = shared.recorder.metadata_stale_after();
    let reachable = snapshot
        .refreshed_at
        .is_some_and(|at| now.saturating_duration_since(at) <= stale_after);
    let stall = stall_after(shared).as_secs_f64();
    // Heartbeats have had time to come back once: a partition without any is stalled.
    let warmed_up = shared.started.elapsed() > admin.lost_after;
    let observed: BTreeMap<i32, PartitionView> = shared
        .recorder
        .observed()
        .partitions(now)
        .into_iter()
        .map(|view| (view.partition, view))
        .collect();
    let partitions: Vec<PartitionStatus> = snapshot
        .partitions
        .values()
        .map(|partition| {
            let view = observed
                .get(&partition.id)
                .cloned()
                .unwrap_or_else(|| PartitionView::empty(partition.id));
            let stalled = match view.last_round_trip_age_seconds {
                Some(age) => age > stall,
                None => warmed_up,
            };
            PartitionStatus {
                leader: partition.leader,
                stalled,
                view,
            }
        })
        .collect();
    let connections: BTreeMap<String, Connection> = shared
        .recorder
        .observed()
        .connections()
        .into_iter()
        .map(|connection| (connection.target.clone(), connection))
        .collect();
    let brokers: Vec<BrokerStatus> = snapshot
        .brokers
        .values()
        .map(|broker| {
            let leads: Vec<&PartitionStatus> = partitions
                .iter()
                .filter(|partition| partition.leader == Some(broker.id))
                .collect();
            let connection = connections.get(&broker.id.to_string());
            let (state, why) = broker_state(broker.missing_since.is_some(), connection, &leads);
            BrokerStatus {
                id: broker.id,
                address: broker.address(),
                rack: broker.rack.clone(),
                state,
                why,
                connection_seconds: connection.and_then(|connection| connection.seconds),
                checked_at: connection.map(|connection| connection.checked_at),
                last_failure: connection.and_then(|connection| connection.last_failure.clone()),
                leads: leads
                    .iter()
                    .map(|partition| partition.view.partition)
                    .collect(),
            }
        })
        .collect();
    let failures: usize = partitions
        .iter()
        .map(|partition| partition.view.failures_last_minute)
        .sum();
    let failing_per_second = failures as f64 / ROUND_TRIP_WINDOW.as_secs_f64();
    let (state, state_why) = cluster_state(&Seen {
        readiness: &readiness,
        warmed_up,
        brokers: &brokers,
        partitions: &partitions,
        failures,
        topic_warning: shared.recorder.facts().topic_warning.clone(),
    });
    ClusterStatus {
        cluster: shared.config.name.clone(),
        cluster_id: snapshot.cluster_id_label().to_string(),
        state,
        state_why,
        failing_per_second,
        reachable,
        ready: readiness.is_ok(),
        reason: readiness.err(),
        controller_id: snapshot.controller_id,
        brokers,
        consumed: partitions
            .iter()
            .map(|partition| partition.view.consumed)
            .sum(),
        lost: partitions.iter().map(|partition| partition.view.lost).sum(),
        failed: partitions
            .iter()
            .map(|partition| partition.view.failed)
            .sum(),
        partitions,
        groups_behind: shared.recorder.observed().groups_behind(),
        pipeline: pipeline_status(shared),
    }
}

/// The replica's pipeline, as its mirror reader last saw it.
fn pipeline_status(shared: &ClusterShared) -> Option<PipelineStatus> {
    let mirror = shared.recorder.facts().mirror.clone()?;
    let stalled_after = shared.config.admin.mirror_lost_after.as_secs_f64();
    let state = if mirror.problem.is_some() {
        "broken"
    } else if mirror.last_replicated_age_seconds > stalled_after {
        "stalled"
    } else {
        "replicating"
    };
    Some(PipelineStatus {
        source: mirror.source,
        topic: mirror.topic,
        state,
        last_replicated_age_seconds: mirror.last_replicated_age_seconds,
        problem: mirror.problem,
    })
}

/// What the cluster's state is decided from.
struct Seen<'a> {
    readiness: &'a Result<(), String>,
    /// Whether heartbeats have had time to come back once.
    warmed_up: bool,
    brokers: &'a [BrokerStatus],
    partitions: &'a [PartitionStatus],
    /// Heartbeats failed or lost in the last minute.
    failures: usize,
    topic_warning: Option<String>,
}

/// The cluster's state, and why it is not `healthy`: what a person looking at the brokers
/// and partitions would conclude, said in one word.
fn cluster_state(seen: &Seen<'_>) -> (ClusterState, Vec<String>) {
    if let Err(reason) = seen.readiness {
        // Before heartbeats had time to come back, only a named failure is an outage.
        let nothing_failed = reason == NO_ROUND_TRIP_YET || reason == NOT_REACHED_YET;
        let state = if !seen.warmed_up && nothing_failed && seen.failures == 0 {
            ClusterState::Starting
        } else {
            ClusterState::Down
        };
        return (state, vec![reason.clone()]);
    }
    let mut why = Vec::new();
    for broker in seen.brokers {
        if matches!(broker.state, BrokerState::Down | BrokerState::Degraded) {
            why.push(format!(
                "broker {} {}: {}",
                broker.id,
                match broker.state {
                    BrokerState::Down => "down",
                    _ => "degraded",
                },
                broker.why.as_deref().unwrap_or("")
            ));
        }
    }
    let leaderless: Vec<String> = seen
        .partitions
        .iter()
        .filter(|partition| partition.leader.is_none())
        .map(|partition| partition.view.partition.to_string())
        .collect();
    if !leaderless.is_empty() {
        why.push(format!(
            "no leader for heartbeat partition {}",
            leaderless.join(", ")
        ));
    }
    let stalled: Vec<String> = seen
        .partitions
        .iter()
        .filter(|partition| partition.stalled && partition.leader.is_some())
        .map(|partition| partition.view.partition.to_string())
        .collect();
    if !stalled.is_empty() {
        why.push(format!(
            "heartbeats stopped coming back on partition {}",
            stalled.join(", ")
        ));
    }
    if seen.failures > 0 {
        why.push(format!(
            "{} heartbeat{} failed or lost in the last minute",
            seen.failures,
            if seen.failures == 1 { "" } else { "s" }
        ));
    }
    why.extend(seen.topic_warning.clone());
    let state = if why.is_empty() {
        ClusterState::Healthy
    } else {
        ClusterState::Degraded
    };
    (state, why)
}

/// A broker's state, and why it is not `up`.
fn broker_state(
    missing: bool,
    connection: Option<&Connection>,
    leads: &[&PartitionStatus],
) -> (BrokerState, Option<String>) {
    if missing {
        return (BrokerState::Down, Some("gone from metadata".to_string()));
    }
    if let Some(failure) = connection.and_then(|connection| connection.failure.as_ref()) {
        return (
            BrokerState::Down,
            Some(format!(
                "connection check: {} {}: {}",
                failure.phase, failure.reason, failure.detail
            )),
        );
    }
    let stalled: Vec<String> = leads
        .iter()
        .filter(|partition| partition.stalled)
        .map(|partition| partition.view.partition.to_string())
        .collect();
    if !stalled.is_empty() {
        return (
            BrokerState::Down,
            Some(format!(
                "heartbeats through it stopped coming back (partition {})",
                stalled.join(", ")
            )),
        );
    }
    let Some(connection) = connection else {
        return (BrokerState::Unknown, Some("not checked yet".to_string()));
    };
    let now = unix_seconds();
    let recent = |event: &Option<Event>| {
        event
            .as_ref()
            .filter(|event| now - event.at <= RECENT)
            .map(|event| event.what.clone())
    };
    let failure = recent(&connection.last_failure).or_else(|| {
        leads
            .iter()
            .find_map(|partition| recent(&partition.view.last_failure))
            .map(|what| format!("a heartbeat in the last minute: {what}"))
    });
    match failure {
        Some(what) => (BrokerState::Degraded, Some(what)),
        None => (BrokerState::Up, None),
    }
}
