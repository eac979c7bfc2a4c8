//! The partitions under and at their topic's min ISR, as series: the cluster's counts, and
//! each topic's for at most [`MIN_ISR_TOPICS_MAX`] topics.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::found::MinIsrCount;
use crate::metrics::Families;
use crate::sync::lock;

/// Topics with series of their partitions under and at min ISR, at most: those under first.
pub(crate) const MIN_ISR_TOPICS_MAX: usize = 100;

/// Labels of a per-topic series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// This part's series.
#[derive(Debug, Default)]
pub(crate) struct MinIsrMetrics {
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
    pub(crate) fn record(&self, count: &MinIsrCount) -> u64 {
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
    use super::super::found::TopicMinIsr;
    use super::*;
    use crate::metrics::encode_alone;

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
