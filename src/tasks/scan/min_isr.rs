//! Partitions under and at their topic's min ISR: with `acks=all`, a partition whose in-sync
//! replicas are fewer than the topic's `min.insync.replicas` refuses every write; one with a
//! replica out and exactly the minimum left refuses them after the next broker loss. Counted
//! from the overview's partitions and every topic's minimum (DescribeConfigs, read by the
//! scan), with this part's series.

use std::collections::BTreeMap;

use super::overview::PartitionHealth;
use crate::recorder::scan::found::{MinIsrCount, TopicMinIsr};

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

#[cfg(test)]
mod tests {
    use super::*;

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
