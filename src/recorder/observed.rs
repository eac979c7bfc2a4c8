//! What a person looks at, beside the metrics: the latest outcome of each connection check,
//! each partition's recent round trips and outcome counts, how long metadata took, and the
//! consumer groups furthest behind. The recorder writes it from what the tasks observe (its
//! writes are the recorder's alone); the status page, the one-shot check and the support
//! bundle read it. Bounded: a minute of round trips per
//! partition, a few groups.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock::unix_seconds;
use crate::sync::lock;

/// How far back the round trips of a partition are kept.
pub(crate) const ROUND_TRIP_WINDOW: Duration = Duration::from_secs(60);

/// Round trips kept per partition, whatever the produce period.
const MAX_ROUND_TRIPS: usize = 600;

/// Consumer groups kept, furthest behind first.
pub(crate) const GROUPS_KEPT: usize = 10;

/// A TLS certificate a broker presented.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Certificate {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    /// Unix seconds.
    pub(crate) expires_at: Option<f64>,
}

/// Why a connection check failed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct ConnectionFailure {
    /// `dns`, `tcp` or `tls`.
    pub(crate) phase: &'static str,
    /// The `reason` label of the connectivity series.
    pub(crate) reason: &'static str,
    pub(crate) detail: String,
}

/// Something that happened: when (Unix seconds) and what.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Event {
    pub(crate) at: f64,
    pub(crate) what: String,
}

/// The latest connection check of one broker (or bootstrap server).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Connection {
    /// The `broker` label: the broker id, or `bootstrap-N`.
    pub(crate) target: String,
    pub(crate) broker_id: Option<i32>,
    pub(crate) address: String,
    /// When it was checked (Unix seconds).
    pub(crate) checked_at: f64,
    pub(crate) ok: bool,
    /// Time to an established connection, on success.
    pub(crate) seconds: Option<f64>,
    /// Time of each phase reached (`dns`, `tcp`, `tls`).
    pub(crate) phases: BTreeMap<&'static str, f64>,
    pub(crate) certificate: Option<Certificate>,
    pub(crate) failure: Option<ConnectionFailure>,
    /// The last failure, kept after the checks succeed again.
    pub(crate) last_failure: Option<Event>,
}

/// One partition's recent heartbeats.
#[derive(Debug, Default)]
struct PartitionTrips {
    /// (when read back, end-to-end latency), oldest first, within [`ROUND_TRIP_WINDOW`].
    recent: VecDeque<(Instant, Duration)>,
    consumed: u64,
    lost: u64,
    failed: u64,
    last_round_trip: Option<Instant>,
    /// The latest acknowledgement latency.
    last_acknowledged: Option<Duration>,
    /// The latest failure or loss.
    last_failure: Option<Event>,
    /// When heartbeats failed or were lost, oldest first, within [`ROUND_TRIP_WINDOW`].
    recent_failures: VecDeque<Instant>,
}

impl PartitionTrips {
    /// A heartbeat failed or was lost at `now`: remembered for the failure rate.
    fn failure(&mut self, now: Instant, what: String) {
        self.last_failure = Some(Event {
            at: unix_seconds(),
            what,
        });
        self.recent_failures.push_back(now);
        while self.recent_failures.len() > MAX_ROUND_TRIPS
            || self
                .recent_failures
                .front()
                .is_some_and(|at| now.saturating_duration_since(*at) > ROUND_TRIP_WINDOW)
        {
            self.recent_failures.pop_front();
        }
    }
}

/// One partition, as read for a person: the last minute's round trips, and counts since start.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct PartitionView {
    pub(crate) partition: i32,
    /// Round trips in the last minute.
    pub(crate) samples: usize,
    pub(crate) p50_seconds: Option<f64>,
    pub(crate) p99_seconds: Option<f64>,
    /// The last minute's round trips in seconds, oldest first (at most 60: one per slot).
    pub(crate) sparkline: Vec<f64>,
    pub(crate) consumed: u64,
    pub(crate) lost: u64,
    pub(crate) failed: u64,
    /// Heartbeats lost or not delivered in the last minute.
    pub(crate) failures_last_minute: usize,
    /// How long ago the last heartbeat came back.
    pub(crate) last_round_trip_age_seconds: Option<f64>,
    pub(crate) last_round_trip_seconds: Option<f64>,
    pub(crate) last_acknowledged_seconds: Option<f64>,
    pub(crate) last_failure: Option<Event>,
}

/// A consumer group behind its topics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct GroupBehind {
    pub(crate) group: String,
    pub(crate) lag_messages: i64,
    pub(crate) lag_seconds: Option<f64>,
    /// As the broker names it (Stable, Empty, Reconciling, …), `Unknown` when not listed.
    pub(crate) state: String,
    /// `classic`, `consumer` (KIP-848) or `unknown`.
    pub(crate) protocol: &'static str,
    /// `None` when not known.
    pub(crate) members: Option<usize>,
}

/// How the last metadata request went.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct MetadataAnswer {
    /// When it was answered (Unix seconds).
    pub(crate) at: f64,
    pub(crate) seconds: f64,
}

#[derive(Debug, Default)]
struct Inner {
    connections: BTreeMap<String, Connection>,
    partitions: BTreeMap<i32, PartitionTrips>,
    groups_behind: Vec<GroupBehind>,
    metadata: Option<MetadataAnswer>,
}

/// What one cluster's tasks observed last; every lock is held for a few field writes only.
#[derive(Debug, Default)]
pub(crate) struct Observed(Mutex<Inner>);

impl Observed {
    /// A connection check finished; a failure is remembered past the next success.
    pub(super) fn connection(&self, mut connection: Connection) {
        let mut inner = lock(&self.0);
        let previous = inner.connections.get(&connection.target);
        connection.last_failure = match &connection.failure {
            Some(failure) => Some(Event {
                at: connection.checked_at,
                what: format!("{} {}: {}", failure.phase, failure.reason, failure.detail),
            }),
            None => previous.and_then(|previous| previous.last_failure.clone()),
        };
        inner
            .connections
            .insert(connection.target.clone(), connection);
    }

    /// Drops the connection checks of targets not in `keep` (bootstrap servers once brokers are
    /// known, brokers forgotten).
    pub(super) fn retain_connections(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.0).connections.retain(|target, _| keep(target));
    }

    pub(crate) fn connections(&self) -> Vec<Connection> {
        lock(&self.0).connections.values().cloned().collect()
    }

    /// A heartbeat of `partition` came back after `latency`.
    pub(super) fn round_trip(&self, partition: i32, latency: Duration, now: Instant) {
        let mut inner = lock(&self.0);
        let trips = inner.partitions.entry(partition).or_default();
        trips.consumed += 1;
        trips.last_round_trip = Some(now);
        trips.recent.push_back((now, latency));
        while trips.recent.len() > MAX_ROUND_TRIPS
            || trips
                .recent
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > ROUND_TRIP_WINDOW)
        {
            trips.recent.pop_front();
        }
    }

    /// A heartbeat of `partition` was acknowledged after `latency`.
    pub(super) fn acknowledged(&self, partition: i32, latency: Duration) {
        lock(&self.0)
            .partitions
            .entry(partition)
            .or_default()
            .last_acknowledged = Some(latency);
    }

    /// A heartbeat of `partition` was not delivered (`why`: the failure reason).
    pub(super) fn failed(&self, partition: i32, why: &str) {
        let mut inner = lock(&self.0);
        let trips = inner.partitions.entry(partition).or_default();
        trips.failed += 1;
        trips.failure(Instant::now(), format!("not delivered: {why}"));
    }

    /// A heartbeat of `partition` was not read back in time.
    pub(super) fn lost(&self, partition: i32) {
        let mut inner = lock(&self.0);
        let trips = inner.partitions.entry(partition).or_default();
        trips.lost += 1;
        trips.failure(Instant::now(), "lost: not read back in time".to_string());
    }

    /// Every partition seen, as of `now`.
    pub(crate) fn partitions(&self, now: Instant) -> Vec<PartitionView> {
        let inner = lock(&self.0);
        inner
            .partitions
            .iter()
            .map(|(partition, trips)| view(*partition, trips, now))
            .collect()
    }

    /// A metadata request was answered after `took`.
    pub(super) fn metadata_answered(&self, took: Duration) {
        lock(&self.0).metadata = Some(MetadataAnswer {
            at: unix_seconds(),
            seconds: took.as_secs_f64(),
        });
    }

    pub(crate) fn metadata(&self) -> Option<MetadataAnswer> {
        lock(&self.0).metadata.clone()
    }

    /// The groups of the latest lag scan, keeping those furthest behind (in messages).
    pub(super) fn groups_scanned(&self, mut groups: Vec<GroupBehind>) {
        groups.sort_by(|a, b| {
            b.lag_messages
                .cmp(&a.lag_messages)
                .then_with(|| a.group.cmp(&b.group))
        });
        groups.truncate(GROUPS_KEPT);
        lock(&self.0).groups_behind = groups;
    }

    pub(crate) fn groups_behind(&self) -> Vec<GroupBehind> {
        lock(&self.0).groups_behind.clone()
    }
}

impl PartitionView {
    /// A partition no heartbeat has been seen on.
    pub(crate) fn empty(partition: i32) -> Self {
        view(partition, &PartitionTrips::default(), Instant::now())
    }
}

fn view(partition: i32, trips: &PartitionTrips, now: Instant) -> PartitionView {
    let mut recent: Vec<(Instant, f64)> = trips
        .recent
        .iter()
        .filter(|(at, _)| now.saturating_duration_since(*at) <= ROUND_TRIP_WINDOW)
        .map(|(at, latency)| (*at, latency.as_secs_f64()))
        .collect();
    // At most 60 points: the highest of each run of samples, so a spike is never hidden.
    let per_point = recent.len().div_ceil(60).max(1);
    let sparkline = recent
        .chunks(per_point)
        .map(|chunk| {
            chunk
                .iter()
                .map(|(_, seconds)| *seconds)
                .fold(0.0, f64::max)
        })
        .collect();
    let mut sorted: Vec<f64> = recent.drain(..).map(|(_, seconds)| seconds).collect();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        (!sorted.is_empty()).then(|| {
            let rank = (q * sorted.len() as f64).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        })
    };
    PartitionView {
        partition,
        samples: sorted.len(),
        p50_seconds: quantile(0.5),
        p99_seconds: quantile(0.99),
        sparkline,
        consumed: trips.consumed,
        lost: trips.lost,
        failed: trips.failed,
        failures_last_minute: trips
            .recent_failures
            .iter()
            .filter(|at| now.saturating_duration_since(**at) <= ROUND_TRIP_WINDOW)
            .count(),
        last_round_trip_age_seconds: trips
            .last_round_trip
            .map(|at| now.saturating_duration_since(at).as_secs_f64()),
        last_round_trip_seconds: trips
            .recent
            .back()
            .map(|(_, latency)| latency.as_secs_f64()),
        last_acknowledged_seconds: trips.last_acknowledged.map(|latency| latency.as_secs_f64()),
        last_failure: trips.last_failure.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_older_than_a_minute_leave_the_quantiles_and_counts_stay() {
        let observed = Observed::default();
        let start = Instant::now();
        for second in 0..100u64 {
            observed.round_trip(
                0,
                Duration::from_millis(second + 1),
                start + Duration::from_secs(second),
            );
        }
        let now = start + Duration::from_secs(99);
        let [partition] = observed.partitions(now).try_into().unwrap();
        assert_eq!(partition.consumed, 100);
        // Seconds 39..=99 are within the minute: latencies 40..=100 ms.
        assert_eq!(partition.samples, 61);
        assert_eq!(partition.p50_seconds, Some(0.070));
        assert_eq!(partition.p99_seconds, Some(0.100));
        assert!(
            partition.sparkline.len() <= 60,
            "{}",
            partition.sparkline.len()
        );
        assert_eq!(partition.sparkline.last(), Some(&0.100));
        assert_eq!(partition.last_round_trip_age_seconds, Some(0.0));
    }

    #[test]
    fn failures_of_the_last_minute_are_counted_apart_from_those_since_start() {
        let observed = Observed::default();
        observed.failed(1, "timed_out");
        observed.lost(1);
        let [partition] = observed.partitions(Instant::now()).try_into().unwrap();
        assert_eq!((partition.failed, partition.lost), (1, 1));
        assert_eq!(partition.failures_last_minute, 2);
        let [later] = observed
            .partitions(Instant::now() + ROUND_TRIP_WINDOW + Duration::from_secs(1))
            .try_into()
            .unwrap();
        assert_eq!((later.failed, later.lost), (1, 1));
        assert_eq!(later.failures_last_minute, 0);
    }

    #[test]
    fn a_connection_failure_is_remembered_after_a_success() {
        let observed = Observed::default();
        let check = |ok: bool, at: f64| Connection {
            target: "1".to_string(),
            broker_id: Some(1),
            address: "b1:9092".to_string(),
            checked_at: at,
            ok,
            seconds: ok.then_some(0.01),
            phases: BTreeMap::new(),
            certificate: None,
            failure: (!ok).then(|| ConnectionFailure {
                phase: "tcp",
                reason: "refused",
                detail: "connection refused".to_string(),
            }),
            last_failure: None,
        };
        observed.connection(check(false, 10.0));
        observed.connection(check(true, 20.0));
        let [connection] = observed.connections().try_into().unwrap();
        assert!(connection.ok);
        assert_eq!(
            connection.last_failure,
            Some(Event {
                at: 10.0,
                what: "tcp refused: connection refused".to_string()
            })
        );
        observed.retain_connections(|target| target != "1");
        assert!(observed.connections().is_empty());
    }

    #[test]
    fn only_the_groups_furthest_behind_are_kept() {
        let observed = Observed::default();
        let groups = (0..20)
            .map(|lag| GroupBehind {
                group: format!("g{lag}"),
                lag_messages: lag,
                lag_seconds: None,
                state: "Stable".to_string(),
                protocol: "consumer",
                members: Some(1),
            })
            .collect();
        observed.groups_scanned(groups);
        let kept = observed.groups_behind();
        assert_eq!(kept.len(), GROUPS_KEPT);
        assert_eq!(kept[0].group, "g19");
    }
}
