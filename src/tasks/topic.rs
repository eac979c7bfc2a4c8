//! The topic task: makes sure the heartbeat topic exists with at least one partition per
//! broker (so every broker leads some heartbeat), replication factor min(3, brokers) and a
//! 24-hour retention. It creates the topic or adds partitions when allowed
//! (`heartbeat.topic.manage`), never deletes anything, and otherwise says exactly what is wrong.
//! It runs at start, every `check.topic.period.seconds`, and when the broker count grows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterSnapshot;
use crate::config::Config;
use crate::kafka::client::is_authorization_failure;
use crate::kafka::handle::AnyClient;
use crate::kafka::native_admin::NativeAdminError;
use crate::kafka::topic_admin;
use crate::recorder::permissions::{Allowed, Operation, Refused, Resource, Right};
use crate::recorder::topic::{TopicChecked, TopicJudged};
use crate::recorder::Recorder;

/// Retention of heartbeats: long enough to look back at an incident, small on disk.
const RETENTION_MS: &str = "86400000";

/// What the topic needs, judged from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicPlan {
    /// Metadata has not been read yet.
    Wait,
    /// Exists with enough partitions and replicas.
    Fine,
    /// Metadata could not say whether it exists (e.g. not authorized to describe it).
    Unreadable(RDKafkaErrorCode),
    Create {
        partitions: usize,
        replication_factor: i32,
    },
    /// Fewer partitions than brokers: add some, each new one led by a broker that leads none.
    AddPartitions {
        from: usize,
        to: usize,
        /// The replicas of each new partition, its preferred leader first.
        assignment: Vec<Vec<i32>>,
    },
    /// Some partition has fewer replicas than min(3, brokers); only a reassignment fixes that.
    UnderReplicated {
        replication_factor: usize,
        wanted: usize,
    },
}

/// Decides what the topic needs, from the latest metadata.
fn plan(snapshot: &ClusterSnapshot) -> TopicPlan {
    if snapshot.refreshed_at.is_none() {
        return TopicPlan::Wait;
    }
    let brokers = snapshot.listed_brokers().count().max(1);
    let wanted_replicas = brokers.min(3);
    let partitions = snapshot.partitions.len();
    let replication_factor = snapshot
        .partitions
        .values()
        .map(|partition| partition.replicas.len())
        .min()
        .unwrap_or_default();
    if partitions == 0 {
        match snapshot.topic_error {
            Some(code) if !snapshot.topic_missing() => TopicPlan::Unreadable(code),
            _ => TopicPlan::Create {
                partitions: brokers,
                replication_factor: wanted_replicas as i32,
            },
        }
    } else if partitions < brokers {
        TopicPlan::AddPartitions {
            from: partitions,
            to: brokers,
            assignment: new_partition_replicas(snapshot, brokers - partitions, replication_factor),
        }
    } else if replication_factor < wanted_replicas {
        TopicPlan::UnderReplicated {
            replication_factor,
            wanted: wanted_replicas,
        }
    } else {
        TopicPlan::Fine
    }
}

/// Replicas for `count` new partitions of a topic of `replication_factor`: each led by a
/// listed broker that leads no partition yet (else one leading fewest), so every broker leads
/// a heartbeat; its other replicas on the brokers holding fewest, other racks first. Left to
/// itself, Kafka may give the new partition to a broker that already leads one.
fn new_partition_replicas(
    snapshot: &ClusterSnapshot,
    count: usize,
    replication_factor: usize,
) -> Vec<Vec<i32>> {
    let racks: BTreeMap<i32, Option<&str>> = snapshot
        .listed_brokers()
        .map(|broker| (broker.id, broker.rack.as_deref()))
        .collect();
    let mut leads: BTreeMap<i32, usize> = racks.keys().map(|id| (*id, 0)).collect();
    let mut holds = leads.clone();
    for partition in snapshot.partitions.values() {
        if let Some(count) = partition.leader.and_then(|leader| leads.get_mut(&leader)) {
            *count += 1;
        }
        for replica in &partition.replicas {
            if let Some(count) = holds.get_mut(replica) {
                *count += 1;
            }
        }
    }
    let replication_factor = replication_factor.clamp(1, racks.len().max(1));
    let mut assignment = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(leader) = leads
            .iter()
            .min_by_key(|(id, led)| (**led, holds[*id], **id))
            .map(|(id, _)| *id)
        else {
            break;
        };
        let mut replicas = vec![leader];
        let mut used_racks = BTreeSet::from([racks[&leader]]);
        while replicas.len() < replication_factor {
            let Some(next) = holds
                .iter()
                .filter(|(id, _)| !replicas.contains(id))
                .min_by_key(|(id, held)| (used_racks.contains(&racks[*id]), **held, **id))
                .map(|(id, _)| *id)
            else {
                break;
            };
            used_racks.insert(racks[&next]);
            replicas.push(next);
        }
        *leads.entry(leader).or_default() += 1;
        for replica in &replicas {
            *holds.entry(*replica).or_default() += 1;
        }
        assignment.push(replicas);
    }
    assignment
}

/// Why creating the topic or its partitions failed.
#[derive(Debug, thiserror::Error)]
enum TopicError {
    #[error("{0}")]
    Request(#[from] NativeAdminError),
    #[error("the request's thread failed: {0}")]
    Task(String),
}

/// What the topic task needs of the configuration.
struct Settings {
    /// `heartbeat.topic`.
    topic: String,
    /// `heartbeat.topic.manage`: whether it creates the topic and adds partitions.
    manage: bool,
    /// `check.topic.period.seconds`.
    period: Duration,
    /// `check.topic.timeout.seconds`, for each admin request.
    timeout: Duration,
}

impl Settings {
    fn of(config: &Config) -> Self {
        let admin = &config.admin;
        Settings {
            topic: admin.heartbeat_topic.clone(),
            manage: admin.heartbeat_topic_manage,
            period: admin.check_topic_period,
            timeout: admin.check_topic_timeout,
        }
    }
}

/// The topic task of one cluster.
pub(crate) struct TopicManager {
    settings: Settings,
    recorder: Arc<Recorder>,
    /// Asks the metadata task for a refresh now (the topic was created or grew).
    refresh_now: Arc<Notify>,
    client: Arc<dyn AnyClient>,
}

impl TopicManager {
    pub(crate) fn new(
        config: &Config,
        recorder: &Arc<Recorder>,
        refresh_now: &Arc<Notify>,
        client: Arc<dyn AnyClient>,
    ) -> Self {
        TopicManager {
            settings: Settings::of(config),
            recorder: recorder.clone(),
            refresh_now: refresh_now.clone(),
            client,
        }
    }

    /// Checks the topic periodically and whenever the broker count grows, until cancelled.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.settings.period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut view = self.recorder.subscribe();
        let mut brokers_seen = 0;
        let mut checked = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => checked = false,
                changed = view.changed() => if changed.is_err() { break },
            }
            let snapshot = self.recorder.snapshot();
            let fine = plan(&snapshot) == TopicPlan::Fine;
            self.recorder.record(TopicJudged { fine });
            let brokers = snapshot.listed_brokers().count();
            let topic_missing = snapshot.refreshed_at.is_some() && snapshot.partitions.is_empty();
            let problem_outstanding = self.recorder.topic_problem();
            if checked && brokers <= brokers_seen && !topic_missing && !problem_outstanding {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                done = self.ensure(&snapshot) => checked = done,
            }
            brokers_seen = brokers_seen.max(brokers);
        }
        // The last holder of the client destroys it, which blocks: not on a worker.
        let client = self.client;
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    }

    /// One check; returns false when it could not decide yet (no metadata).
    async fn ensure(&self, snapshot: &ClusterSnapshot) -> bool {
        let topic = self.settings.topic.as_str();
        let manage = self.settings.manage;
        let plan = plan(snapshot);
        match plan {
            TopicPlan::Wait => {}
            TopicPlan::Unreadable(code) => {
                let refused: Result<(), _> = Err(NativeAdminError::Failed {
                    operation: "Metadata",
                    code,
                    message: "the heartbeat topic's metadata".to_string(),
                });
                self.note_right(
                    Operation::Describe,
                    &refused,
                    "the heartbeat topic cannot be seen",
                );
            }
            TopicPlan::Fine | TopicPlan::UnderReplicated { .. } => {
                // The topic is there, with its partitions: a refused CREATE or ALTER is no
                // longer needed (someone else created it, or added them).
                for operation in [Operation::Describe, Operation::Create, Operation::Alter] {
                    self.note_right(operation, &Ok::<(), NativeAdminError>(()), "");
                }
            }
            _ => self.note_right(Operation::Describe, &Ok::<(), NativeAdminError>(()), ""),
        }
        // `problem` stops heartbeats (and readiness); `warning` is worth saying, not fatal.
        let (problem, warning) = match plan {
            TopicPlan::Wait => return false,
            TopicPlan::Fine => (None, None),
            TopicPlan::Unreadable(code) => (
                Some(format!(
                    "cannot read the metadata of heartbeat topic `{topic}`: {code} \
                     (the account needs DESCRIBE on the topic)"
                )),
                None,
            ),
            TopicPlan::Create {
                partitions,
                replication_factor,
            } if manage => match self.create(topic, partitions, replication_factor).await {
                Ok(created) => {
                    if created {
                        tracing::info!(topic, partitions, replication_factor, "created the heartbeat topic");
                    } else {
                        tracing::info!(topic, "the heartbeat topic was created meanwhile by someone else");
                    }
                    self.refresh_now.notify_one();
                    (None, None)
                }
                Err(error) => (
                    Some(format!(
                        "heartbeat topic `{topic}` does not exist and creating it failed: {error} \
                         (needs CREATE on the topic; or create it yourself with {partitions} partitions, \
                         replication factor {replication_factor}, retention.ms={RETENTION_MS})"
                    )),
                    None,
                ),
            },
            TopicPlan::Create {
                partitions,
                replication_factor,
            } => (
                Some(format!(
                    "heartbeat topic `{topic}` does not exist and heartbeat.topic.manage is false: \
                     create it with {partitions} partitions (one per broker), replication factor \
                     {replication_factor}, retention.ms={RETENTION_MS}"
                )),
                None,
            ),
            TopicPlan::AddPartitions { from, to, assignment } if manage => match self.add_partitions(topic, to, &assignment).await {
                Ok(()) => {
                    let leaders: Vec<i32> = assignment.iter().filter_map(|replicas| replicas.first().copied()).collect();
                    tracing::info!(topic, from, to, ?leaders, "added partitions to the heartbeat topic");
                    self.refresh_now.notify_one();
                    (None, None)
                }
                Err(error) => (
                    None,
                    Some(format!(
                        "heartbeat topic `{topic}` has {from} partitions for {to} brokers and adding \
                         partitions failed: {error} (needs ALTER on the topic); some brokers lead no heartbeat"
                    )),
                ),
            },
            TopicPlan::AddPartitions { from, to, .. } => (
                None,
                Some(format!(
                    "heartbeat topic `{topic}` has {from} partitions for {to} brokers and \
                     heartbeat.topic.manage is false: some brokers lead no heartbeat; add partitions"
                )),
            ),
            TopicPlan::UnderReplicated {
                replication_factor,
                wanted,
            } => (
                None,
                Some(format!(
                    "heartbeat topic `{topic}` has replication factor {replication_factor}, below \
                     {wanted}: heartbeats do not prove that replication works; reassign its partitions"
                )),
            ),
        };
        self.recorder.record(TopicChecked { problem, warning });
        true
    }

    /// Creates the topic; false when someone else created it meanwhile.
    async fn create(
        &self,
        topic: &str,
        partitions: usize,
        replication_factor: i32,
    ) -> Result<bool, TopicError> {
        let client = self.client.clone();
        let topic = topic.to_string();
        let timeout = self.settings.timeout;
        let answer = tokio::task::spawn_blocking(move || {
            topic_admin::create_topic(
                client.requests(),
                &topic,
                partitions as i32,
                replication_factor,
                &[("retention.ms", RETENTION_MS)],
                timeout,
            )
        })
        .await
        .map_err(|error| TopicError::Task(error.to_string()))?;
        let created = match answer {
            Ok(()) => Ok(true),
            Err(NativeAdminError::Failed {
                code: RDKafkaErrorCode::TopicAlreadyExists,
                ..
            }) => Ok(false),
            Err(error) => Err(error),
        };
        self.note_right(
            Operation::Create,
            &created,
            "the heartbeat topic cannot be created",
        );
        Ok(created?)
    }

    /// Records what an operation needing `operation` on the heartbeat topic said of that right.
    fn note_right<T>(
        &self,
        operation: Operation,
        result: &Result<T, NativeAdminError>,
        stops: &str,
    ) {
        let right = Right::new(operation, Resource::Topic(self.settings.topic.clone()));
        match result {
            Ok(_) => self.recorder.record(Allowed(right)),
            Err(error) if is_authorization_failure(error.code()) => {
                self.recorder.record(Refused::new(right, stops, error))
            }
            Err(_) => {}
        }
    }

    async fn add_partitions(
        &self,
        topic: &str,
        to: usize,
        assignment: &[Vec<i32>],
    ) -> Result<(), TopicError> {
        let client = self.client.clone();
        let topic = topic.to_string();
        let assignment = assignment.to_vec();
        let timeout = self.settings.timeout;
        let added = tokio::task::spawn_blocking(move || {
            topic_admin::create_partitions(client.requests(), &topic, to, &assignment, timeout)
        })
        .await
        .map_err(|error| TopicError::Task(error.to_string()))?;
        self.note_right(
            Operation::Alter,
            &added,
            "partitions cannot be added to the heartbeat topic",
        );
        Ok(added?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Broker, Partition};
    use std::time::Instant;

    fn snapshot(brokers: i32, partitions: i32) -> ClusterSnapshot {
        ClusterSnapshot {
            brokers: (1..=brokers)
                .map(|id| {
                    (
                        id,
                        Broker {
                            id,
                            host: "h".into(),
                            port: 9092,
                            rack: None,
                            missing_since: None,
                        },
                    )
                })
                .collect(),
            partitions: (0..partitions)
                .map(|id| {
                    (
                        id,
                        Partition {
                            id,
                            replicas: (1..=brokers.min(3)).collect(),
                            leader: Some(1),
                        },
                    )
                })
                .collect(),
            refreshed_at: Some(Instant::now()),
            ..ClusterSnapshot::default()
        }
    }

    #[test]
    fn plans_follow_the_broker_count() {
        assert_eq!(plan(&ClusterSnapshot::default()), TopicPlan::Wait);
        assert_eq!(
            plan(&snapshot(5, 0)),
            TopicPlan::Create {
                partitions: 5,
                replication_factor: 3
            }
        );
        assert_eq!(
            plan(&snapshot(2, 0)),
            TopicPlan::Create {
                partitions: 2,
                replication_factor: 2
            }
        );
        assert!(matches!(
            plan(&snapshot(4, 3)),
            TopicPlan::AddPartitions { from: 3, to: 4, .. }
        ));
        assert_eq!(plan(&snapshot(3, 6)), TopicPlan::Fine);
    }

    #[test]
    fn unreadable_and_under_replicated_topics_are_told_apart() {
        let mut denied = snapshot(3, 0);
        denied.topic_error = Some(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(
            plan(&denied),
            TopicPlan::Unreadable(RDKafkaErrorCode::TopicAuthorizationFailed)
        );
        let mut missing = snapshot(3, 0);
        missing.topic_error = Some(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert!(matches!(plan(&missing), TopicPlan::Create { .. }));
        let mut thin = snapshot(3, 3);
        for partition in thin.partitions.values_mut() {
            partition.replicas = vec![1];
        }
        assert_eq!(
            plan(&thin),
            TopicPlan::UnderReplicated {
                replication_factor: 1,
                wanted: 3
            }
        );
    }

    #[test]
    fn new_partitions_are_led_by_brokers_that_lead_none_with_replicas_on_other_racks() {
        let mut grown = snapshot(5, 3);
        for (id, broker) in grown.brokers.iter_mut() {
            broker.rack = Some(format!("az-{}", (*id - 1) % 3));
        }
        // Partitions 0..3 are led by 1, 2, 3 and held by 1, 2, 3.
        for (id, partition) in grown.partitions.iter_mut() {
            partition.leader = Some(id + 1);
            partition.replicas = vec![1, 2, 3];
        }
        let TopicPlan::AddPartitions { assignment, .. } = plan(&grown) else {
            panic!("{:?}", plan(&grown));
        };
        assert_eq!(assignment.len(), 2);
        let leaders: Vec<i32> = assignment.iter().map(|replicas| replicas[0]).collect();
        assert_eq!(leaders, vec![4, 5]);
        for replicas in &assignment {
            assert_eq!(replicas.len(), 3);
            let racks: BTreeSet<i32> = replicas.iter().map(|id| (id - 1) % 3).collect();
            assert_eq!(racks.len(), 3, "one replica per rack: {replicas:?}");
        }
    }
}
