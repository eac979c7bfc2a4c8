//! The cluster scan: a slow, separate look at the whole cluster, every
//! `check.consumer.group.period.seconds` (60 s by default): how many topics and partitions it
//! has, and how many partitions are under-replicated (fewer in-sync replicas than replicas) or
//! offline (no leader).
//!
//! It also lists the consumer groups (ListGroups and DescribeGroups, within
//! `consumer.group.allow`/`consumer.group.deny`): how many, in which state, with how many
//! members. Idle and empty groups keep their series, so a stuck consumer stays visible; a
//! deleted group's series go. (Their lag is to be scanned here too.)
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
use crate::config::AdminSettings;
use crate::logging::LogThrottle;
use crate::metrics::{GroupLabels, GroupStateLabels, KindLabels};

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

/// Asks for the metadata of every topic. Blocking.
fn fetch_overview(
    client: &AdminClient<ClientLog>,
    timeout: Duration,
) -> Result<ClusterOverview, KafkaError> {
    let metadata = client.inner().fetch_metadata(None, timeout)?;
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
    Ok(overview(topics.iter().map(Vec::as_slice)))
}

/// A consumer group as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    /// As the coordinator reports it: Stable, Empty, PreparingRebalance, Dead, …
    pub state: String,
    pub members: usize,
}

/// Whether `name` passes the allow and deny expressions.
pub fn group_wanted(admin: &AdminSettings, name: &str) -> bool {
    admin
        .consumer_group_allow
        .as_ref()
        .is_none_or(|allow| allow.0.is_match(name))
        && !admin
            .consumer_group_deny
            .as_ref()
            .is_some_and(|deny| deny.0.is_match(name))
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
            members: group.members().len(),
        })
        .collect())
}

/// Why the scan's client could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the cluster scan's client: {0}")]
pub struct ScanError(#[from] KafkaError);

/// The cluster scan task of one cluster.
pub struct ClusterScan {
    shared: Arc<ClusterShared>,
    client: Arc<AdminClient<ClientLog>>,
    throttle: LogThrottle,
    /// Groups and states reported by the last scan, to remove what is gone.
    reported: Mutex<(BTreeMap<String, String>, BTreeSet<String>)>,
}

impl ClusterScan {
    pub fn new(shared: Arc<ClusterShared>) -> Result<Self, ScanError> {
        let config = client_config(&shared.config, Role::Admin);
        let client = config.create_with_context(ClientLog::new(
            &shared.config.name,
            Role::Admin,
            shared.status.clone(),
        ))?;
        Ok(ClusterScan {
            shared,
            client: Arc::new(client),
            throttle: LogThrottle::default(),
            reported: Mutex::default(),
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
        let client = self.client;
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    }

    async fn scan(&self) {
        self.scan_topics().await;
        self.scan_groups().await;
    }

    async fn scan_topics(&self) {
        let client = self.client.clone();
        // A whole-cluster answer can be large: more time than a heartbeat-topic request.
        let timeout = self.shared.config.admin.check_metadata_timeout * 3;
        let start = Instant::now();
        let result = tokio::task::spawn_blocking(move || fetch_overview(&client, timeout)).await;
        let metrics = &self.shared.metrics;
        match result {
            Ok(Ok(overview)) => {
                metrics.cluster_topics.set(overview.topics as i64);
                metrics.cluster_partitions.set(overview.partitions as i64);
                metrics
                    .cluster_under_replicated_partitions
                    .set(overview.under_replicated as i64);
                metrics
                    .cluster_offline_partitions
                    .set(overview.offline as i64);
                metrics
                    .cluster_scan_duration
                    .set(start.elapsed().as_secs_f64());
                self.throttle.reset("topics");
            }
            Ok(Err(error)) => self.failed("topics", &error.to_string(), false),
            Err(error) => self.failed("topics", &error.to_string(), false),
        }
    }

    async fn scan_groups(&self) {
        let client = self.client.clone();
        let timeout = self.shared.config.admin.check_metadata_timeout * 3;
        let result = tokio::task::spawn_blocking(move || fetch_groups(&client, timeout)).await;
        match result {
            Ok(Ok(groups)) => {
                let admin = &self.shared.config.admin;
                let groups: Vec<GroupSummary> = groups
                    .into_iter()
                    .filter(|group| group_wanted(admin, &group.name))
                    .collect();
                self.record_groups(&groups);
                self.throttle.reset("groups");
            }
            Ok(Err(error)) => {
                // Some brokers do not list groups (librdkafka's mock cluster among them): say it
                // quietly, it will not change.
                let unsupported = error.rdkafka_error_code()
                    == Some(rdkafka::types::RDKafkaErrorCode::UnsupportedFeature);
                self.failed("groups", &error.to_string(), unsupported)
            }
            Err(error) => self.failed("groups", &error.to_string(), false),
        }
    }

    fn record_groups(&self, groups: &[GroupSummary]) {
        let metrics = &self.shared.metrics;
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (states_of_groups, states_seen) = &mut *reported;
        let current: BTreeMap<String, String> = groups
            .iter()
            .map(|group| (group.name.clone(), group.state.clone()))
            .collect();
        for (name, state) in states_of_groups.iter() {
            if current.get(name) != Some(state) {
                metrics.consumer_group_state.remove(&GroupStateLabels {
                    group: name.clone(),
                    state: state.clone(),
                });
            }
            if !current.contains_key(name) {
                metrics.consumer_group_members.remove(&GroupLabels {
                    group: name.clone(),
                });
            }
        }
        let mut by_state: BTreeMap<String, i64> =
            states_seen.iter().map(|state| (state.clone(), 0)).collect();
        for group in groups {
            metrics
                .consumer_group_state
                .get_or_create(&GroupStateLabels {
                    group: group.name.clone(),
                    state: group.state.clone(),
                })
                .set(1);
            metrics
                .consumer_group_members
                .get_or_create(&GroupLabels {
                    group: group.name.clone(),
                })
                .set(group.members as i64);
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
        states_seen.extend(by_state.into_keys());
        *states_of_groups = current;
    }

    fn failed(&self, part: &str, error: &str, quietly: bool) {
        self.shared
            .metrics
            .cluster_scan_failures
            .get_or_create(&KindLabels {
                kind: part.to_string(),
            })
            .inc();
        if let Some(held_back) = self.throttle.admit(part) {
            if quietly {
                tracing::debug!(held_back, "cluster scan of {part} failed: {error}");
            } else {
                tracing::warn!(held_back, "cluster scan of {part} failed: {error}");
            }
        }
    }
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
