//! The cluster scan: a slow, separate look at the whole cluster, every
//! `check.consumer.group.period.seconds` (60 s by default): how many topics and partitions it
//! has, and how many partitions are under-replicated (fewer in-sync replicas than replicas) or
//! offline (no leader).
//!
//! It also lists the consumer groups (ListGroups and DescribeGroups, within
//! `consumer.group.allow`/`consumer.group.deny`, plus `consumer.group.names`): how many, in
//! which state, with how many members, and their lag (see [`crate::lag`]). Idle and empty
//! groups keep their series, so a stuck consumer stays visible; a deleted group's series go.
//! A value one part of a scan could not read is not reported (rather than a stale one that
//! could hide a growing lag) and the failure is counted by kind.
//!
//! It has its own client and its own task, and makes its requests on blocking threads, so a
//! large cluster's slow answer never delays a heartbeat.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::client::{client_config, ClientLog, Role};
use crate::cluster::ClusterShared;
use crate::config::{AdminSettings, LagGranularity, Pattern};
use crate::lag::{scan_lag, LagProbe, LagScan, TopicPartition};
use crate::logging::LogThrottle;
use crate::metrics::{
    GroupLabels, GroupPartitionLabels, GroupStateLabels, KindLabels, TopicPartitionLabels,
};

/// One partition as the scan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Leader broker id, `None` when offline.
    pub leader: Option<i32>,
    pub replicas: usize,
    pub in_sync: usize,
}

/// What one scan counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterOverview {
    pub topics: usize,
    pub partitions: usize,
    pub under_replicated: usize,
    pub offline: usize,
}

/// Counts topics and partitions, and the unhealthy ones, from each topic's partitions.
pub fn overview<'a>(topics: impl IntoIterator<Item = &'a [PartitionHealth]>) -> ClusterOverview {
    let mut overview = ClusterOverview::default();
    for partitions in topics {
        overview.topics += 1;
        for partition in partitions {
            overview.partitions += 1;
            if partition.leader.is_none() {
                overview.offline += 1;
            }
            if partition.in_sync < partition.replicas {
                overview.under_replicated += 1;
            }
        }
    }
    overview
}

/// Asks for the metadata of every topic: the overview, and every partition of the topics
/// `topic_wanted` accepts. Blocking.
fn fetch_overview(
    client: &AdminClient<ClientLog>,
    timeout: Duration,
    topic_wanted: &dyn Fn(&str) -> bool,
) -> Result<(ClusterOverview, Vec<TopicPartition>), KafkaError> {
    let metadata = client.inner().fetch_metadata(None, timeout)?;
    let wanted = metadata
        .topics()
        .iter()
        .filter(|topic| topic_wanted(topic.name()))
        .flat_map(|topic| {
            topic
                .partitions()
                .iter()
                .map(|partition| (topic.name().to_string(), partition.id()))
        })
        .collect();
    let topics: Vec<Vec<PartitionHealth>> = metadata
        .topics()
        .iter()
        .map(|topic| {
            topic
                .partitions()
                .iter()
                .map(|partition| PartitionHealth {
                    leader: (partition.leader() >= 0).then_some(partition.leader()),
                    replicas: partition.replicas().len(),
                    in_sync: partition.isr().len(),
                })
                .collect()
        })
        .collect();
    Ok((overview(topics.iter().map(Vec::as_slice)), wanted))
}

/// A consumer group as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    /// As the coordinator reports it: Stable, Empty, PreparingRebalance, Dead, …
    pub state: String,
    /// `None` when not known (the listing failed).
    pub members: Option<usize>,
}

/// The state of a group the cluster could not be asked about (the listing failed or is not
/// served): named groups, and those listed before, are still reported, as this.
pub const UNKNOWN_STATE: &str = "Unknown";

/// Whether `name` matches `allow` (when set) and not `deny`.
fn admitted(allow: &Option<Pattern>, deny: &Option<Pattern>, name: &str) -> bool {
    allow.as_ref().is_none_or(|allow| allow.0.is_match(name))
        && !deny.as_ref().is_some_and(|deny| deny.0.is_match(name))
}

/// Whether group `name` is reported, by `consumer.group.allow`/`deny`.
pub fn group_wanted(admin: &AdminSettings, name: &str) -> bool {
    admitted(
        &admin.consumer_group_allow,
        &admin.consumer_group_deny,
        name,
    )
}

/// Whether lag on `topic` is reported, by `consumer.group.topic.allow`/`deny`.
pub fn topic_wanted(admin: &AdminSettings, topic: &str) -> bool {
    admitted(
        &admin.consumer_group_topic_allow,
        &admin.consumer_group_topic_deny,
        topic,
    )
}

/// Lists the consumer groups and their state. Blocking.
fn fetch_groups(
    client: &AdminClient<ClientLog>,
    timeout: Duration,
) -> Result<Vec<GroupSummary>, KafkaError> {
    let groups = client.inner().fetch_group_list(None, timeout)?;
    Ok(groups
        .groups()
        .iter()
        .map(|group| GroupSummary {
            name: group.name().to_string(),
            state: group.state().to_string(),
            members: Some(group.members().len()),
        })
        .collect())
}

/// Why the scan's clients could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the cluster scan's client: {0}")]
pub struct ScanError(#[from] KafkaError);

/// What the last scans reported, to remove the series of what is gone.
#[derive(Default)]
struct Reported {
    /// The state of each group, from the last listing that worked.
    states: BTreeMap<String, String>,
    /// Every state ever counted, so a state no group is in any more reports 0.
    states_seen: BTreeSet<String>,
    /// Groups with lag series.
    lag_groups: BTreeSet<String>,
    /// (group, topic, partition) with lag series.
    lag_partitions: BTreeSet<GroupPartitionLabels>,
    /// Partitions with a log end offset series.
    end_offsets: BTreeSet<TopicPartitionLabels>,
}

/// The cluster scan task of one cluster.
pub struct ClusterScan {
    shared: Arc<ClusterShared>,
    client: Arc<AdminClient<ClientLog>>,
    /// Reads the records lag in seconds needs; `None` with `consumer.group.lag.seconds` off.
    probe: Option<Arc<Mutex<LagProbe>>>,
    throttle: LogThrottle,
    reported: Mutex<Reported>,
    /// Partitions of the topics lag is reported on, from the last metadata that came (`None`
    /// before any came).
    topic_partitions: Mutex<Option<Vec<TopicPartition>>>,
}

impl ClusterScan {
    pub fn new(shared: Arc<ClusterShared>) -> Result<Self, ScanError> {
        let name = &shared.config.name;
        let client = client_config(&shared.config, Role::Admin)
            .create_with_context(ClientLog::new(name, Role::Admin, shared.status.clone()))?;
        let probe = if shared.config.admin.consumer_group_lag_seconds {
            let consumer = client_config(&shared.config, Role::LagProbe)
                .create_with_context(ClientLog::new(name, Role::LagProbe, shared.status.clone()))?;
            Some(Arc::new(Mutex::new(LagProbe::new(consumer))))
        } else {
            None
        };
        // Every failure and outcome kind starts at zero, so increase() sees the first one.
        for kind in ["topics", "groups", "offsets", "end_offsets", "lag_seconds"] {
            shared
                .metrics
                .cluster_scan_failures
                .get_or_create(&KindLabels {
                    kind: kind.to_string(),
                })
                .inc_by(0);
        }
        if probe.is_some() {
            for kind in ["read", "cached", "no_record", "timed_out", "failed"] {
                shared
                    .metrics
                    .consumer_group_lag_probes
                    .get_or_create(&KindLabels {
                        kind: kind.to_string(),
                    })
                    .inc_by(0);
            }
        }
        Ok(ClusterScan {
            shared,
            client: Arc::new(client),
            probe,
            throttle: LogThrottle::default(),
            reported: Mutex::default(),
            topic_partitions: Mutex::default(),
        })
    }

    /// Scans every `check.consumer.group.period.seconds` until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut interval =
            tokio::time::interval(self.shared.config.admin.check_consumer_group_period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.scan() => {}
            }
        }
        let (client, probe) = (self.client, self.probe);
        let _ = tokio::task::spawn_blocking(move || drop((client, probe))).await;
    }

    async fn scan(&self) {
        let start = Instant::now();
        self.scan_topics().await;
        let groups = self.scan_groups().await;
        self.scan_lag(groups).await;
        self.shared
            .metrics
            .cluster_scan_duration
            .set(start.elapsed().as_secs_f64());
    }

    async fn scan_topics(&self) {
        let client = self.client.clone();
        let admin = self.shared.config.admin.clone();
        let timeout = admin.check_consumer_group_timeout;
        let result = tokio::task::spawn_blocking(move || {
            fetch_overview(&client, timeout, &|topic| topic_wanted(&admin, topic))
        })
        .await;
        let metrics = &self.shared.metrics;
        match result {
            Ok(Ok((overview, partitions))) => {
                metrics.cluster_topics.set(overview.topics as i64);
                metrics.cluster_partitions.set(overview.partitions as i64);
                metrics
                    .cluster_under_replicated_partitions
                    .set(overview.under_replicated as i64);
                metrics
                    .cluster_offline_partitions
                    .set(overview.offline as i64);
                *lock(&self.topic_partitions) = Some(partitions);
                self.throttle.reset("topics");
            }
            Ok(Err(error)) => self.failed("topics", &error.to_string()),
            Err(error) => self.failed("topics", &error.to_string()),
        }
    }

    /// Lists the groups and reports their state; returns the groups whose lag to scan: those
    /// listed (or, when listing failed, last listed) and those named in the configuration.
    async fn scan_groups(&self) -> Vec<String> {
        let client = self.client.clone();
        let timeout = self.shared.config.admin.check_consumer_group_timeout;
        let result = tokio::task::spawn_blocking(move || fetch_groups(&client, timeout)).await;
        let admin = &self.shared.config.admin;
        match result {
            Ok(Ok(groups)) => {
                let groups: Vec<GroupSummary> = groups
                    .into_iter()
                    .filter(|group| group_wanted(admin, &group.name))
                    .collect();
                self.record_groups(&groups);
                self.throttle.reset("groups");
            }
            Ok(Err(error)) => {
                // Some brokers do not list groups (librdkafka's mock cluster among them): a
                // property of the broker, not a failing scan; named groups are still scanned.
                let unsupported = error.rdkafka_error_code()
                    == Some(rdkafka::types::RDKafkaErrorCode::UnsupportedFeature);
                if unsupported {
                    if self.throttle.admit("groups").is_some() {
                        tracing::info!("the cluster does not list consumer groups ({error}): only consumer.group.names are scanned, in state {UNKNOWN_STATE}");
                    }
                } else {
                    self.failed("groups", &error.to_string());
                }
                self.record_unknown_groups();
            }
            Err(error) => {
                self.failed("groups", &error.to_string());
                self.record_unknown_groups();
            }
        }
        self.reported_and_named().into_iter().collect()
    }

    /// The groups reported at the last listing and those named in the configuration.
    fn reported_and_named(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = lock(&self.reported).states.keys().cloned().collect();
        names.extend(
            self.shared
                .config
                .admin
                .consumer_group_names
                .iter()
                .cloned(),
        );
        names
    }

    /// Without a listing, the groups listed before and the named ones are in an unknown state,
    /// with an unknown number of members; their lag is still read.
    fn record_unknown_groups(&self) {
        let groups: Vec<GroupSummary> = self
            .reported_and_named()
            .into_iter()
            .map(|name| GroupSummary {
                name,
                state: UNKNOWN_STATE.to_string(),
                members: None,
            })
            .collect();
        self.record_groups(&groups);
    }

    fn record_groups(&self, groups: &[GroupSummary]) {
        let metrics = &self.shared.metrics;
        let mut reported = lock(&self.reported);
        let current: BTreeMap<String, String> = groups
            .iter()
            .map(|group| (group.name.clone(), group.state.clone()))
            .collect();
        for (name, state) in reported.states.iter() {
            if !current.contains_key(name) {
                metrics.consumer_group_members.remove(&GroupLabels {
                    group: name.clone(),
                });
            }
            if current.get(name) != Some(state) {
                metrics.consumer_group_state.remove(&GroupStateLabels {
                    group: name.clone(),
                    state: state.clone(),
                });
            }
        }
        let mut by_state: BTreeMap<String, i64> = reported
            .states_seen
            .iter()
            .map(|state| (state.clone(), 0))
            .collect();
        for group in groups {
            metrics
                .consumer_group_state
                .get_or_create(&GroupStateLabels {
                    group: group.name.clone(),
                    state: group.state.clone(),
                })
                .set(1);
            let labels = GroupLabels {
                group: group.name.clone(),
            };
            match group.members {
                Some(members) => {
                    metrics
                        .consumer_group_members
                        .get_or_create(&labels)
                        .set(members as i64);
                }
                None => {
                    metrics.consumer_group_members.remove(&labels);
                }
            }
            *by_state.entry(group.state.clone()).or_default() += 1;
        }
        for (state, count) in &by_state {
            metrics
                .consumer_groups_by_state
                .get_or_create(&KindLabels {
                    kind: state.clone(),
                })
                .set(*count);
        }
        metrics.consumer_groups.set(groups.len() as i64);
        reported.states_seen.extend(by_state.into_keys());
        reported.states = current;
    }

    async fn scan_lag(&self, groups: Vec<String>) {
        let client = self.client.clone();
        let probe = self.probe.clone();
        let admin = self.shared.config.admin.clone();
        // Real brokers answer "every committed partition"; naming the partitions (only when
        // topics are restricted) keeps answers small, and is what librdkafka's mock serves.
        let partitions = if admin.consumer_group_topic_allow.is_some() {
            match lock(&self.topic_partitions).clone() {
                Some(partitions) => Some(partitions),
                // Which partitions to ask about is not known yet (the topics' failure is
                // counted): reporting every group with no lag would be wrong.
                None => return,
            }
        } else {
            None
        };
        let result = tokio::task::spawn_blocking(move || {
            let mut probe = probe.as_ref().map(|probe| lock(probe));
            scan_lag(
                client.inner(),
                probe.as_deref_mut(),
                &groups,
                partitions.as_deref(),
                &|topic| topic_wanted(&admin, topic),
                admin.check_consumer_group_timeout,
                // A scan ends within about its period, so scans never pile up.
                admin.check_consumer_group_period,
            )
        })
        .await;
        match result {
            Ok(scan) => self.record_lag(&scan),
            Err(error) => self.failed("offsets", &error.to_string()),
        }
    }

    fn record_lag(&self, scan: &LagScan) {
        let metrics = &self.shared.metrics;
        let mut reported = lock(&self.reported);
        // A value not read this scan is not reported: a stale one could hide a growing lag.
        let mut current = BTreeSet::new();
        let per_partition =
            self.shared.config.admin.consumer_group_lag_granularity == LagGranularity::Partition;
        let mut failures = Vec::new();
        for (group, answer) in &scan.groups {
            let labels = GroupLabels {
                group: group.clone(),
            };
            let lag = match answer {
                Ok(lag) => lag,
                Err(error) => {
                    failures.push(format!("{group}: {error}"));
                    metrics.consumer_group_total_lag.remove(&labels);
                    metrics.consumer_group_max_lag.remove(&labels);
                    metrics.consumer_group_max_lag_seconds.remove(&labels);
                    continue;
                }
            };
            // With group granularity, only the group's own series below.
            let partitions = lag.partitions.iter().filter(|_| per_partition);
            for ((topic, partition), partition_lag) in partitions {
                let labels = GroupPartitionLabels {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: partition.to_string(),
                };
                metrics
                    .consumer_group_committed_offset
                    .get_or_create(&labels)
                    .set(partition_lag.committed);
                match partition_lag.messages {
                    Some(messages) => {
                        metrics
                            .consumer_group_lag
                            .get_or_create(&labels)
                            .set(messages);
                    }
                    None => {
                        metrics.consumer_group_lag.remove(&labels);
                    }
                }
                match partition_lag.seconds {
                    Some(seconds) => {
                        metrics
                            .consumer_group_lag_seconds
                            .get_or_create(&labels)
                            .set(seconds);
                    }
                    None => {
                        metrics.consumer_group_lag_seconds.remove(&labels);
                    }
                }
                current.insert(labels);
            }
            if lag.partitions.values().all(|p| p.messages.is_some()) {
                metrics
                    .consumer_group_total_lag
                    .get_or_create(&labels)
                    .set(lag.total());
                metrics
                    .consumer_group_max_lag
                    .get_or_create(&labels)
                    .set(lag.max());
            } else {
                metrics.consumer_group_total_lag.remove(&labels);
                metrics.consumer_group_max_lag.remove(&labels);
            }
            let all_seconds = lag.partitions.values().all(|p| p.seconds.is_some());
            match lag.max_seconds() {
                Some(seconds) if all_seconds => {
                    metrics
                        .consumer_group_max_lag_seconds
                        .get_or_create(&labels)
                        .set(seconds);
                }
                None if self.probe.is_some() && lag.partitions.is_empty() => {
                    metrics
                        .consumer_group_max_lag_seconds
                        .get_or_create(&labels)
                        .set(0.0);
                }
                _ => {
                    metrics.consumer_group_max_lag_seconds.remove(&labels);
                }
            }
        }
        for gone in reported.lag_partitions.difference(&current) {
            metrics.consumer_group_committed_offset.remove(gone);
            metrics.consumer_group_lag.remove(gone);
            metrics.consumer_group_lag_seconds.remove(gone);
        }
        for group in &reported.lag_groups {
            if !scan.groups.contains_key(group) {
                let labels = GroupLabels {
                    group: group.clone(),
                };
                metrics.consumer_group_total_lag.remove(&labels);
                metrics.consumer_group_max_lag.remove(&labels);
                metrics.consumer_group_max_lag_seconds.remove(&labels);
            }
        }
        reported.lag_partitions = current;
        reported.lag_groups = scan.groups.keys().cloned().collect();
        if failures.is_empty() {
            self.throttle.reset("offsets");
        } else {
            let summary = format!(
                "committed offsets of {} of {} groups could not be read; first: {}",
                failures.len(),
                scan.groups.len(),
                failures[0]
            );
            self.failed("offsets", &summary);
        }

        if let Some(error) = &scan.end_offsets_error {
            self.failed("end_offsets", &error.to_string());
        } else {
            self.throttle.reset("end_offsets");
        }
        let current: BTreeSet<TopicPartitionLabels> = scan
            .end_offsets
            .iter()
            .map(|((topic, partition), end)| {
                let labels = TopicPartitionLabels {
                    topic: topic.clone(),
                    partition: partition.to_string(),
                };
                metrics
                    .partition_log_end_offset
                    .get_or_create(&labels)
                    .set(*end);
                labels
            })
            .collect();
        for gone in reported.end_offsets.difference(&current) {
            metrics.partition_log_end_offset.remove(gone);
        }
        reported.end_offsets = current;
        metrics.consumer_group_offset_races.inc_by(scan.races);

        if let Some(round) = &scan.probe {
            for (kind, count) in &round.counts {
                metrics
                    .consumer_group_lag_probes
                    .get_or_create(&KindLabels {
                        kind: kind.to_string(),
                    })
                    .inc_by(*count);
            }
            match &round.error {
                Some(error) => self.failed("lag_seconds", &error.to_string()),
                None => self.throttle.reset("lag_seconds"),
            }
        }
    }

    fn failed(&self, part: &str, error: &str) {
        self.shared
            .metrics
            .cluster_scan_failures
            .get_or_create(&KindLabels {
                kind: part.to_string(),
            })
            .inc();
        if let Some(held_back) = self.throttle.admit(part) {
            tracing::warn!(held_back, "cluster scan of {part} failed: {error}");
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_partitions_are_counted() {
        let healthy = PartitionHealth {
            leader: Some(1),
            replicas: 3,
            in_sync: 3,
        };
        let lagging = PartitionHealth {
            leader: Some(2),
            replicas: 3,
            in_sync: 2,
        };
        let offline = PartitionHealth {
            leader: None,
            replicas: 3,
            in_sync: 0,
        };
        let topics = [vec![healthy, lagging], vec![offline], vec![]];
        assert_eq!(
            overview(topics.iter().map(Vec::as_slice)),
            ClusterOverview {
                topics: 3,
                partitions: 3,
                under_replicated: 2,
                offline: 1
            }
        );
    }

    #[test]
    fn groups_are_bounded_by_allow_and_deny() {
        let config = crate::config::Config::from_ini(
            "[admin]\nconsumer.group.allow = ^orders\nconsumer.group.deny = -test$\n",
            std::path::Path::new("t.ini"),
            std::iter::empty(),
        )
        .unwrap();
        assert!(group_wanted(&config.admin, "orders-service"));
        assert!(!group_wanted(&config.admin, "orders-service-test"));
        assert!(!group_wanted(&config.admin, "billing"));
        let everything =
            crate::config::Config::from_ini("", std::path::Path::new("t.ini"), std::iter::empty())
                .unwrap();
        assert!(group_wanted(&everything.admin, "anything"));
    }
}
