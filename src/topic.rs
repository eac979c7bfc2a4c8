//! The topic task: makes sure the heartbeat topic exists with at least one partition per
//! broker (so every broker leads some heartbeat), replication factor min(3, brokers) and a
//! 24-hour retention. It creates the topic or adds partitions when allowed
//! (`heartbeat.topic.manage`), never deletes anything, and otherwise says exactly what is wrong.
//! It runs at start, every `check.topic.period.seconds`, and when the broker count grows.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::client::ClientLog;
use crate::cluster::{ClusterShared, ClusterSnapshot};

/// Retention of heartbeats: long enough to look back at an incident, small on disk.
pub const RETENTION_MS: &str = "86400000";

/// What the topic needs, judged from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPlan {
    /// Metadata has not been read yet.
    Wait,
    /// Exists with enough partitions.
    Fine,
    Create {
        partitions: usize,
        replication_factor: i32,
    },
    AddPartitions {
        from: usize,
        to: usize,
    },
}

/// Decides what the topic needs, from the latest metadata.
pub fn plan(snapshot: &ClusterSnapshot) -> TopicPlan {
    if snapshot.refreshed_at.is_none() {
        return TopicPlan::Wait;
    }
    let brokers = snapshot.listed_brokers().count().max(1);
    let partitions = snapshot.partitions.len();
    if partitions == 0 {
        TopicPlan::Create {
            partitions: brokers,
            replication_factor: brokers.min(3) as i32,
        }
    } else if partitions < brokers {
        TopicPlan::AddPartitions {
            from: partitions,
            to: brokers,
        }
    } else {
        TopicPlan::Fine
    }
}

/// Why creating the topic or its partitions failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("{0}")]
    Request(#[from] KafkaError),
    #[error("{0}")]
    Refused(RDKafkaErrorCode),
}

/// The topic task of one cluster.
pub struct TopicManager {
    shared: Arc<ClusterShared>,
    client: Arc<AdminClient<ClientLog>>,
}

impl TopicManager {
    pub fn new(shared: Arc<ClusterShared>, client: Arc<AdminClient<ClientLog>>) -> Self {
        TopicManager { shared, client }
    }

    /// Checks the topic periodically and whenever the broker count grows, until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.shared.config.admin.check_topic_period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut view = self.shared.view.subscribe();
        let mut brokers_seen = 0;
        let mut checked = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => checked = false,
                changed = view.changed() => if changed.is_err() { break },
            }
            let snapshot = self.shared.snapshot();
            let fine = plan(&snapshot) == TopicPlan::Fine;
            self.shared.metrics.topic_ok.set(i64::from(fine));
            let brokers = snapshot.listed_brokers().count();
            let topic_missing = snapshot.refreshed_at.is_some() && snapshot.partitions.is_empty();
            let problem_outstanding = self.shared.status.lock().topic_problem.is_some();
            if checked && brokers <= brokers_seen && !topic_missing && !problem_outstanding {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                done = self.ensure(&snapshot) => checked = done,
            }
            brokers_seen = brokers_seen.max(brokers);
        }
    }

    /// One check; returns false when it could not decide yet (no metadata).
    pub async fn ensure(&self, snapshot: &ClusterSnapshot) -> bool {
        let admin = &self.shared.config.admin;
        let topic = admin.heartbeat_topic.as_str();
        let plan = plan(snapshot);
        let problem = match &plan {
            TopicPlan::Wait => return false,
            TopicPlan::Fine => None,
            TopicPlan::Create {
                partitions,
                replication_factor,
            } if admin.heartbeat_topic_manage => {
                match self.create(topic, *partitions, *replication_factor).await {
                    Ok(()) => {
                        tracing::info!(
                            topic,
                            partitions,
                            replication_factor,
                            "created the heartbeat topic"
                        );
                        self.shared.refresh_now.notify_one();
                        None
                    }
                    Err(error) => Some(format!(
                        "heartbeat topic `{topic}` does not exist and creating it failed: {error} \
                         (needs CREATE on the topic; or create it yourself with {partitions} partitions, \
                         replication factor {replication_factor}, retention.ms={RETENTION_MS})"
                    )),
                }
            }
            TopicPlan::Create {
                partitions,
                replication_factor,
            } => Some(format!(
                "heartbeat topic `{topic}` does not exist and heartbeat.topic.manage is false: \
                 create it with {partitions} partitions (one per broker), replication factor \
                 {replication_factor}, retention.ms={RETENTION_MS}"
            )),
            TopicPlan::AddPartitions { from, to } if admin.heartbeat_topic_manage => {
                match self.add_partitions(topic, *to).await {
                    Ok(()) => {
                        tracing::info!(topic, from, to, "added partitions to the heartbeat topic");
                        self.shared.refresh_now.notify_one();
                    }
                    Err(error) => tracing::warn!(
                        topic,
                        from,
                        to,
                        "heartbeat topic has fewer partitions than brokers and adding them failed: {error} \
                         (some brokers lead no heartbeat partition)"
                    ),
                }
                None
            }
            TopicPlan::AddPartitions { from, to } => {
                tracing::warn!(
                    topic,
                    from,
                    to,
                    "heartbeat topic has {from} partitions for {to} brokers and heartbeat.topic.manage \
                     is false: some brokers lead no heartbeat partition; add partitions to cover them"
                );
                None
            }
        };
        let mut facts = self.shared.status.lock();
        if let Some(problem) = &problem {
            if facts.topic_problem.as_ref() != Some(problem) {
                tracing::error!("{problem}");
            }
        }
        facts.topic_problem = problem;
        true
    }

    fn options(&self) -> AdminOptions {
        let timeout = Duration::from_secs(30);
        AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout))
    }

    async fn create(
        &self,
        topic: &str,
        partitions: usize,
        replication_factor: i32,
    ) -> Result<(), TopicError> {
        let new_topic = NewTopic::new(
            topic,
            partitions as i32,
            TopicReplication::Fixed(replication_factor),
        )
        .set("retention.ms", RETENTION_MS);
        let results = self
            .client
            .create_topics([&new_topic], &self.options())
            .await?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(TopicError::Refused(code)),
            }
        }
        Ok(())
    }

    async fn add_partitions(&self, topic: &str, to: usize) -> Result<(), TopicError> {
        let partitions = NewPartitions::new(topic, to);
        let results = self
            .client
            .create_partitions([&partitions], &self.options())
            .await?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(TopicError::Refused(code));
            }
        }
        Ok(())
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
        assert_eq!(
            plan(&snapshot(4, 3)),
            TopicPlan::AddPartitions { from: 3, to: 4 }
        );
        assert_eq!(plan(&snapshot(3, 6)), TopicPlan::Fine);
    }
}
