//! The two numbers operators ask of a consumer group beyond its lag: how long ago its
//! committed offsets last moved, and how long until retention deletes records it has not read.
//!
//! Kafka keeps no time of a group's last commit, so it is tracked across scans: a group's
//! offsets are fingerprinted at each scan, and the age counts from the scan that first saw the
//! current ones (for a group this run has just met, from that first scan: a lower bound). The
//! retention margin is the topic's `retention.ms` minus the age of the group's oldest
//! unconsumed record on it; Kafka deletes whole segments, once their newest record is older
//! than the retention, so the record may outlive its margin, never the reverse.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::found::GroupLag;
use crate::kafka::configs::Retention;
use crate::metrics::Families;
use crate::sync::lock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct GroupTopicLabels {
    group: String,
    topic: String,
}

/// When each group's committed offsets were last seen to move.
#[derive(Debug)]
struct LastMove {
    fingerprint: u64,
    since: Instant,
}

/// The groups' commit ages and retention margins.
#[derive(Debug, Default)]
pub(super) struct GroupProgress {
    last_commit_age: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    retention_margin: Family<GroupTopicLabels, Gauge<f64, AtomicU64>>,
    moves: Mutex<HashMap<String, LastMove>>,
    margins: Mutex<BTreeSet<GroupTopicLabels>>,
}

impl GroupProgress {
    /// Records what one scan read of `groups` (those whose offsets it read), with the time
    /// retention of the topics where it is known, at `now`. A group `scanned` whose offsets
    /// could not be read this time keeps its commit age (which goes on growing); the series
    /// of a group no longer scanned go.
    pub(super) fn record(
        &self,
        groups: &BTreeMap<&str, &GroupLag>,
        scanned: &BTreeSet<&str>,
        retention: &BTreeMap<String, Retention>,
        now: Instant,
    ) {
        {
            let mut moves = lock(&self.moves);
            moves.retain(|group, _| {
                let kept = scanned.contains(group.as_str());
                if !kept {
                    self.last_commit_age.remove(&GroupLabels {
                        group: group.clone(),
                    });
                }
                kept
            });
            for (group, lag) in groups {
                let fingerprint = fingerprint(lag);
                let last = moves.entry(group.to_string()).or_insert(LastMove {
                    fingerprint,
                    since: now,
                });
                if last.fingerprint != fingerprint {
                    *last = LastMove {
                        fingerprint,
                        since: now,
                    };
                }
            }
        }
        self.refresh_ages(now);
        let mut current = BTreeSet::new();
        for (group, lag) in groups {
            for (topic, oldest) in oldest_unconsumed(lag) {
                let (Some(Some(retention)), Some(oldest)) = (retention.get(topic), oldest) else {
                    continue;
                };
                let labels = GroupTopicLabels {
                    group: group.to_string(),
                    topic: topic.to_string(),
                };
                self.retention_margin
                    .get_or_create(&labels)
                    .set(retention.as_secs_f64() - oldest);
                current.insert(labels);
            }
        }
        let mut margins = lock(&self.margins);
        for gone in margins.difference(&current) {
            self.retention_margin.remove(gone);
        }
        *margins = current;
    }

    /// Sets each group's commit age as of `now`.
    fn refresh_ages(&self, now: Instant) {
        for (group, last) in lock(&self.moves).iter() {
            self.last_commit_age
                .get_or_create(&GroupLabels {
                    group: group.clone(),
                })
                .set(now.saturating_duration_since(last.since).as_secs_f64());
        }
    }
}

/// A fingerprint of a group's committed offsets: it changes when any of them moves.
fn fingerprint(lag: &GroupLag) -> u64 {
    let mut hasher = DefaultHasher::new();
    for (partition, lag) in &lag.partitions {
        (partition, lag.committed).hash(&mut hasher);
    }
    hasher.finish()
}

/// The age in seconds of the group's oldest unconsumed record on each topic (0 without lag);
/// `None` for a topic where the age of any partition's is unknown (a lower bound would
/// overstate the margin).
fn oldest_unconsumed(lag: &GroupLag) -> BTreeMap<&str, Option<f64>> {
    let mut oldest: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for ((topic, _), partition) in &lag.partitions {
        let entry = oldest.entry(topic.as_str()).or_insert(Some(0.0));
        *entry = match (*entry, partition.seconds) {
            (Some(so_far), Some(seconds)) => Some(so_far.max(seconds)),
            _ => None,
        };
    }
    oldest
}

impl Families for GroupProgress {
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "consumer_group_last_commit_age",
            "Time since the group's committed offsets last moved, tracked across scans (for a group first seen by this run: since that scan)",
            Unit::Seconds,
            self.last_commit_age.clone(),
        );
        registry.register_with_unit(
            "consumer_group_retention_margin",
            "The topic's retention.ms minus the age of the group's oldest unconsumed record on it: how long until retention may delete records the group has not read (topics with time retention only)",
            Unit::Seconds,
            self.retention_margin.clone(),
        );
    }

    fn refresh(&self, now: Instant) {
        self.refresh_ages(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::found::PartitionLag;
    use super::*;

    fn lag(partitions: &[(&str, i32, i64, Option<f64>)]) -> GroupLag {
        GroupLag {
            partitions: partitions
                .iter()
                .map(|(topic, partition, committed, seconds)| {
                    (
                        (topic.to_string(), *partition),
                        PartitionLag {
                            committed: *committed,
                            end: Some(committed + 1),
                            messages: Some(1),
                            seconds: *seconds,
                        },
                    )
                })
                .collect(),
        }
    }

    fn age(progress: &GroupProgress, group: &str) -> f64 {
        progress
            .last_commit_age
            .get_or_create(&GroupLabels {
                group: group.to_string(),
            })
            .get()
    }

    #[test]
    fn the_commit_age_grows_until_the_offsets_move_and_goes_with_the_group() {
        let progress = GroupProgress::default();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let first = lag(&[("orders", 0, 5, Some(1.0))]);
        let (none, billing) = (BTreeMap::new(), BTreeSet::from(["billing"]));
        let read = |lag| BTreeMap::from([("billing", lag)]);
        progress.record(&read(&first), &billing, &none, at(0));
        assert_eq!(age(&progress, "billing"), 0.0);
        progress.record(&read(&first), &billing, &none, at(30));
        assert_eq!(age(&progress, "billing"), 30.0);
        progress.refresh(at(35));
        assert_eq!(age(&progress, "billing"), 35.0, "it grows between scans");
        // Its offsets unreadable in one scan: it keeps its age, which goes on growing.
        progress.record(&BTreeMap::new(), &billing, &none, at(40));
        assert_eq!(age(&progress, "billing"), 40.0);
        let moved = lag(&[("orders", 0, 6, Some(1.0))]);
        progress.record(&read(&moved), &billing, &none, at(50));
        assert_eq!(age(&progress, "billing"), 0.0);
        progress.record(&BTreeMap::new(), &BTreeSet::new(), &none, at(60));
        assert!(progress
            .last_commit_age
            .get(&GroupLabels {
                group: "billing".into()
            })
            .is_none());
    }

    #[test]
    fn the_margin_is_the_retention_minus_the_oldest_unconsumed_record() {
        let progress = GroupProgress::default();
        let group = lag(&[
            ("orders", 0, 5, Some(600.0)),
            ("orders", 1, 5, Some(1200.0)),
            ("events", 0, 5, Some(10.0)),
            ("kept", 0, 5, Some(10.0)),
            ("unread", 0, 5, None),
        ]);
        let hour = Some(Duration::from_secs(3600));
        let retention = BTreeMap::from([
            ("orders".to_string(), hour),
            ("events".to_string(), hour),
            ("kept".to_string(), None),
            ("unread".to_string(), hour),
        ]);
        let billing = BTreeSet::from(["billing"]);
        progress.record(
            &BTreeMap::from([("billing", &group)]),
            &billing,
            &retention,
            Instant::now(),
        );
        let margin = |topic: &str| {
            progress
                .retention_margin
                .get(&GroupTopicLabels {
                    group: "billing".into(),
                    topic: topic.into(),
                })
                .map(|gauge| gauge.get())
        };
        assert_eq!(
            margin("orders"),
            Some(2400.0),
            "the oldest partition's record counts"
        );
        assert_eq!(margin("events"), Some(3590.0));
        assert_eq!(margin("kept"), None, "no time retention, no margin");
        assert_eq!(margin("unread"), None, "an unknown age is not reported");
        progress.record(
            &BTreeMap::from([("billing", &group)]),
            &billing,
            &BTreeMap::new(),
            Instant::now(),
        );
        assert_eq!(margin("orders"), None, "retention unknown: the series goes");
    }
}
