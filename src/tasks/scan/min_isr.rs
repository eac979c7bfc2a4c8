//! Partitions under and at their topic's min ISR: with `acks=all`, a partition whose in-sync
//! replicas are fewer than the topic's `min.insync.replicas` refuses every write; one with a
//! replica out and exactly the minimum left refuses them after the next broker loss. Counted
//! from the overview's partitions and every topic's minimum (DescribeConfigs, read by the
//! scan), with this part's series.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::overview::PartitionHealth;
use crate::metrics::Families;
use crate::sync::lock;

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

/// Topics with series of their partitions under and at min ISR, at most: those under first.
pub(super) const MIN_ISR_TOPICS_MAX: usize = 100;

/// Labels of a per-topic series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// This part's series.
#[derive(Debug, Default)]
pub(super) struct MinIsrMetrics {
    under: Gauge,
    at: Gauge,
    unknown_topics: Gauge,
    topic_under: Family<TopicLabels, Gauge>,
    topic_at: Family<TopicLabels, Gauge>,
    /// Topics with series.
    reported: Mutex<BTreeSet<TopicLabels>>,
}

impl MinIsrMetrics {
    /// Reports the cluster's counts, and each topic's for at most [`MIN_ISR_TOPICS_MAX`]
    /// topics; a topic back to health loses its series. Returns how many series did not fit.
    pub(super) fn record(&self, count: &MinIsrCount) -> u64 {
        self.under.set(count.under as i64);
        self.at.set(count.at as i64);
        self.unknown_topics.set(count.unknown_topics as i64);
        let mut reported = lock(&self.reported);
        let mut current = BTreeSet::new();
        for topic in count.topics.iter().take(MIN_ISR_TOPICS_MAX) {
            let labels = TopicLabels {
                topic: topic.topic.clone(),
            };
            self.topic_under
                .get_or_create(&labels)
                .set(topic.under as i64);
            self.topic_at.get_or_create(&labels).set(topic.at as i64);
            current.insert(labels);
        }
        for gone in reported.difference(&current) {
            self.topic_under.remove(gone);
            self.topic_at.remove(gone);
        }
        *reported = current;
        2 * count.topics.len().saturating_sub(MIN_ISR_TOPICS_MAX) as u64
    }
}

impl Families for MinIsrMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_partitions_under_min_isr",
            "Partitions with fewer in-sync replicas than their topic's min.insync.replicas (acks=all writes refused), at the last scan",
            self.under.clone(),
        );
        registry.register(
            "cluster_partitions_at_min_isr",
            "Partitions with a replica out of sync and exactly their topic's min.insync.replicas in sync (one more broker loss refuses writes), at the last scan",
            self.at.clone(),
        );
        registry.register(
            "cluster_min_isr_unknown_topics",
            "Topics whose min.insync.replicas could not be read (DESCRIBE_CONFIGS): their partitions are not counted against it",
            self.unknown_topics.clone(),
        );
        registry.register(
            "cluster_topic_partitions_under_min_isr",
            "Partitions of each topic under its min.insync.replicas, for topics with a partition under or at it (at most 100 topics, those under first)",
            self.topic_under.clone(),
        );
        registry.register(
            "cluster_topic_partitions_at_min_isr",
            "Partitions of each topic at its min.insync.replicas with a replica out of sync, for topics with a partition under or at it (at most 100 topics, those under first)",
            self.topic_at.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode_alone;

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

    #[test]
    fn topic_series_are_capped_and_go_when_the_topic_is_healthy() {
        let topic = |name: String| TopicMinIsr {
            topic: name,
            under: 1,
            at: 0,
        };
        let metrics = MinIsrMetrics::default();
        let many = MinIsrCount {
            under: MIN_ISR_TOPICS_MAX + 5,
            topics: (0..MIN_ISR_TOPICS_MAX + 5)
                .map(|index| topic(format!("t{index:03}")))
                .collect(),
            ..MinIsrCount::default()
        };
        assert_eq!(metrics.record(&many), 10);
        let text = encode_alone(&metrics);
        let series = |family: &str| {
            text.lines()
                .filter(|line| line.starts_with(&format!("{family}{{")))
                .count()
        };
        assert_eq!(
            series("heartbeat_cluster_topic_partitions_under_min_isr"),
            MIN_ISR_TOPICS_MAX
        );
        assert_eq!(metrics.record(&MinIsrCount::default()), 0);
        let text = encode_alone(&metrics);
        assert!(
            !text.contains("heartbeat_cluster_topic_partitions_under_min_isr{"),
            "{text}"
        );
        assert!(
            text.contains("heartbeat_cluster_partitions_under_min_isr 0"),
            "{text}"
        );
    }
}
