//! The cluster overview: how many topics and partitions the cluster has, and how many of its
//! partitions are under-replicated (fewer in-sync replicas than replicas) or offline (no
//! leader), from one metadata request for every topic; and, with each topic's
//! `min.insync.replicas`, how many refuse `acks=all` writes (under their min ISR) or would after
//! one more broker loss (at it).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::kafka::handle::AnyClient;
use crate::kafka::TopicPartition;

/// One partition as the scan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartitionHealth {
    /// Leader broker id, `None` when offline.
    pub(super) leader: Option<i32>,
    pub(super) replicas: usize,
    pub(super) in_sync: usize,
}

/// What one scan counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ClusterOverview {
    pub(super) topics: usize,
    pub(super) partitions: usize,
    pub(super) under_replicated: usize,
    pub(super) offline: usize,
}

/// A topic's partitions under and at their min ISR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct TopicMinIsr {
    pub(super) topic: String,
    /// Fewer in-sync replicas than `min.insync.replicas`: `acks=all` writes are refused.
    pub(super) under: usize,
    /// Exactly `min.insync.replicas` in sync, fewer than all replicas: a replica is already
    /// out, and one more broker loss refuses writes. A topic whose minimum equals its
    /// replication factor is there by design while all are in sync, and is not counted then.
    pub(super) at: usize,
}

/// The cluster's partitions under and at their min ISR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct MinIsrCount {
    pub(super) under: usize,
    pub(super) at: usize,
    /// Topics whose `min.insync.replicas` is not known (not readable): not counted.
    pub(super) unknown_topics: usize,
    /// The topics with a partition under or at their min ISR, those under first, then by how
    /// many, then by name.
    pub(super) topics: Vec<TopicMinIsr>,
}

/// Counts partitions under and at their topic's `min.insync.replicas` (`min_isr`, by topic).
pub(super) fn min_isr<'a>(
    topics: impl IntoIterator<Item = (&'a str, &'a [PartitionHealth])>,
    min_isr: &BTreeMap<String, usize>,
) -> MinIsrCount {
    let mut count = MinIsrCount::default();
    for (topic, partitions) in topics {
        let Some(&minimum) = min_isr.get(topic) else {
            count.unknown_topics += 1;
            continue;
        };
        let mut this = TopicMinIsr {
            topic: topic.to_string(),
            ..TopicMinIsr::default()
        };
        for partition in partitions {
            if partition.in_sync < minimum {
                this.under += 1;
            } else if partition.in_sync == minimum && partition.in_sync < partition.replicas {
                this.at += 1;
            }
        }
        count.under += this.under;
        count.at += this.at;
        if this.under + this.at > 0 {
            count.topics.push(this);
        }
    }
    count.topics.sort_by(|a, b| {
        b.under
            .cmp(&a.under)
            .then(b.at.cmp(&a.at))
            .then_with(|| a.topic.cmp(&b.topic))
    });
    count
}

/// Counts topics and partitions, and the unhealthy ones, from each topic's partitions.
pub(super) fn overview<'a>(
    topics: impl IntoIterator<Item = &'a [PartitionHealth]>,
) -> ClusterOverview {
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

/// Every topic's partitions, by topic name.
pub(super) type TopicsHealth = BTreeMap<String, Vec<PartitionHealth>>;

/// Asks for the metadata of every topic: the overview, every partition of the topics
/// `topic_wanted` accepts, and every topic's partitions. Blocking.
pub(super) fn fetch_overview(
    client: &dyn AnyClient,
    timeout: Duration,
    topic_wanted: &dyn Fn(&str) -> bool,
) -> Result<(ClusterOverview, Vec<TopicPartition>, TopicsHealth), KafkaError> {
    let metadata = client.requests().fetch_metadata(None, timeout)?;
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
    let topics: TopicsHealth = metadata
        .topics()
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions()
                .iter()
                .map(|partition| PartitionHealth {
                    leader: (partition.leader() >= 0).then_some(partition.leader()),
                    replicas: partition.replicas().len(),
                    in_sync: partition.isr().len(),
                })
                .collect();
            (topic.name().to_string(), partitions)
        })
        .collect();
    Ok((overview(topics.values().map(Vec::as_slice)), wanted, topics))
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
    fn partitions_under_and_at_their_min_isr_are_counted_by_topic() {
        let partition = |replicas, in_sync| PartitionHealth {
            leader: Some(1),
            replicas,
            in_sync,
        };
        let orders = [partition(3, 3), partition(3, 2), partition(3, 1)];
        let strict = [partition(3, 3), partition(3, 2)];
        // min.insync.replicas = replication factor = 1: at its minimum by design, not counted.
        let single = [partition(1, 1)];
        let unreadable = [partition(3, 1)];
        let minimums: BTreeMap<String, usize> = [("orders", 2), ("strict", 3), ("single", 1)]
            .into_iter()
            .map(|(topic, min)| (topic.to_string(), min))
            .collect();
        let count = min_isr(
            [
                ("orders", &orders[..]),
                ("strict", &strict[..]),
                ("single", &single[..]),
                ("unreadable", &unreadable[..]),
            ],
            &minimums,
        );
        assert_eq!((count.under, count.at, count.unknown_topics), (2, 1, 1));
        assert_eq!(
            count.topics,
            vec![
                TopicMinIsr {
                    topic: "orders".to_string(),
                    under: 1,
                    at: 1
                },
                TopicMinIsr {
                    topic: "strict".to_string(),
                    under: 1,
                    at: 0
                },
            ]
        );
    }
}
