//! The cluster overview: how many topics and partitions the cluster has, and how many of its
//! partitions are under-replicated (fewer in-sync replicas than replicas) or offline (no
//! leader), from one metadata request for every topic; it also gives every topic's partitions
//! to [`super::min_isr`].

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::kafka::handle::AnyClient;
use crate::kafka::TopicPartition;
use crate::recorder::scan::found::ClusterOverview;

/// One partition as the scan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartitionHealth {
    /// Leader broker id, `None` when offline.
    pub(super) leader: Option<i32>,
    pub(super) replicas: usize,
    pub(super) in_sync: usize,
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
}
