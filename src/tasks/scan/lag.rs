//! Consumer-group lag, for the cluster scan: committed offsets against log end offsets (lag in
//! messages), and how long ago the oldest unconsumed record was written (lag in seconds).
//!
//! Lag in seconds is exact, not interpolated: it is the age of the record at the committed
//! offset, read by the [`super::probe`]. Only partitions with lag are read, so a group that
//! keeps up costs no read at all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::kafka::handle::Requests;

use super::probe::LagProbe;
use crate::clock::unix_millis;
use crate::kafka::native_admin::{self, NativeAdminError};
use crate::kafka::TopicPartition;
use crate::recorder::scan::found::{
    GroupLag, LagScan, PartitionLag, ProbeOutcome, ProbeRound, ProbeTarget,
};

/// Lag in messages from a committed and a log end offset, clamped at zero. The flag says a
/// committed offset was past the end (the offsets were read at different instants, or the log
/// was truncated): a race to count, not a negative lag to report.
pub(super) fn lag_in_messages(committed: i64, end: i64) -> (i64, bool) {
    if committed > end {
        (0, true)
    } else {
        (end - committed, false)
    }
}

/// Groups whose committed offsets are requested at once (librdkafka takes one per request).
const OFFSETS_IN_FLIGHT: usize = 16;

/// Committed offsets of each group asked for, or why they could not be read.
type Committed<'a> = BTreeMap<&'a str, Result<BTreeMap<TopicPartition, i64>, NativeAdminError>>;

/// Reads the lag of `groups`: their committed offsets (only on topics `topic_wanted` accepts;
/// with `partitions`, only on those, named in each request),
/// the log end offsets of those partitions in one request, and with a probe the age of each
/// lagging partition's oldest unconsumed record. Each request is bounded by `timeout`, and no
/// request or batch starts after `budget` from now. Blocking.
pub(super) fn scan_lag(
    admin: &dyn Requests,
    probe: Option<&mut LagProbe>,
    groups: &[String],
    partitions: Option<&[TopicPartition]>,
    topic_wanted: &dyn Fn(&str) -> bool,
    timeout: Duration,
    budget: Duration,
) -> LagScan {
    let deadline = Instant::now() + budget;
    let mut scan = LagScan::default();
    let committed = committed_offsets(admin, groups, partitions, topic_wanted, timeout, deadline);
    let partitions: BTreeSet<TopicPartition> = committed
        .values()
        .flatten()
        .flat_map(|listed| listed.keys().cloned())
        .collect();
    let partitions: Vec<TopicPartition> = partitions.into_iter().collect();
    match native_admin::list_end_offsets(admin, &partitions, timeout) {
        Ok(ends) => {
            scan.end_offsets = ends
                .into_iter()
                .filter_map(|p| Some(((p.topic, p.partition), p.offset?)))
                .collect();
        }
        Err(error) => scan.end_offsets_error = Some(error),
    }
    let targets = scan.compute_lag(committed, probe.is_some());
    if let Some(probe) = probe {
        let round = probe.probe(&targets, timeout, deadline);
        scan.apply_probe(&round, unix_millis());
        scan.probe = Some(round);
    }
    scan
}

/// Each group's committed offsets on the topics `topic_wanted` accepts. Blocking.
fn committed_offsets<'a>(
    admin: &dyn Requests,
    groups: &'a [String],
    partitions: Option<&[TopicPartition]>,
    topic_wanted: &dyn Fn(&str) -> bool,
    timeout: Duration,
    deadline: Instant,
) -> Committed<'a> {
    let offsets = native_admin::list_group_offsets(
        admin,
        groups,
        partitions,
        OFFSETS_IN_FLIGHT,
        timeout,
        deadline,
    );
    groups
        .iter()
        .zip(offsets)
        .map(|(group, answer)| {
            let answer = answer.map(|listed| {
                listed
                    .into_iter()
                    .filter(|p| topic_wanted(&p.topic))
                    .filter_map(|p| Some(((p.topic, p.partition), p.offset?)))
                    .collect::<BTreeMap<_, _>>()
            });
            (group.as_str(), answer)
        })
        .collect()
}

impl LagScan {
    /// Each group's lag in messages from its committed offsets and the log end offsets read;
    /// returns the lagging partitions, whose oldest unconsumed record the probe reads.
    /// `with_seconds`: lag in seconds is wanted (0 where there is no lag).
    fn compute_lag(
        &mut self,
        committed: Committed<'_>,
        with_seconds: bool,
    ) -> BTreeSet<ProbeTarget> {
        let mut targets = BTreeSet::new();
        for (group, answer) in committed {
            let lag = answer.map(|listed| {
                let mut lag = GroupLag::default();
                for (key, committed) in listed {
                    let end = self.end_offsets.get(&key).copied();
                    let messages = end.map(|end| {
                        let (messages, raced) = lag_in_messages(committed, end);
                        self.races += u64::from(raced);
                        messages
                    });
                    if let (Some(end), Some(1..)) = (end, messages) {
                        targets.insert(ProbeTarget {
                            topic: key.0.clone(),
                            partition: key.1,
                            committed,
                            end,
                        });
                    }
                    let seconds = (with_seconds && messages == Some(0)).then_some(0.0);
                    lag.partitions.insert(
                        key,
                        PartitionLag {
                            committed,
                            end,
                            messages,
                            seconds,
                        },
                    );
                }
                lag
            });
            self.groups.insert(group.to_string(), lag);
        }
        targets
    }

    /// Lag in seconds of every lagging partition, from what the probe found (at `now_millis`).
    fn apply_probe(&mut self, round: &ProbeRound, now_millis: i64) {
        for lag in self.groups.values_mut().flatten() {
            for ((topic, partition), lag) in lag.partitions.iter_mut() {
                let (Some(end), Some(1..)) = (lag.end, lag.messages) else {
                    continue;
                };
                let target = ProbeTarget {
                    topic: topic.clone(),
                    partition: *partition,
                    committed: lag.committed,
                    end,
                };
                lag.seconds = match round.outcomes.get(&target) {
                    Some(ProbeOutcome::Timestamp(timestamp)) => {
                        Some(age_seconds(*timestamp, now_millis))
                    }
                    // Only records a consumer skips are left: nothing is waiting.
                    Some(ProbeOutcome::NoRecord) => Some(0.0),
                    _ => None,
                };
            }
        }
    }
}

/// Seconds between a record's timestamp and `now_millis`; never negative (producer clocks
/// run ahead sometimes).
fn age_seconds(timestamp_millis: i64, now_millis: i64) -> f64 {
    (now_millis.saturating_sub(timestamp_millis)).max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_clamped_and_races_are_flagged() {
        assert_eq!(lag_in_messages(10, 15), (5, false));
        assert_eq!(lag_in_messages(15, 15), (0, false));
        assert_eq!(lag_in_messages(16, 15), (0, true));
    }

    #[test]
    fn group_totals() {
        let lag = |messages: Option<i64>, seconds: Option<f64>| PartitionLag {
            committed: 0,
            end: messages,
            messages,
            seconds,
        };
        let group = GroupLag {
            partitions: BTreeMap::from([
                (("a".to_string(), 0), lag(Some(3), Some(1.5))),
                (("a".to_string(), 1), lag(Some(7), Some(0.5))),
                (("b".to_string(), 0), lag(None, None)),
            ]),
        };
        assert_eq!(group.total(), 10);
        assert_eq!(group.max(), 7);
        assert_eq!(group.max_seconds(), Some(1.5));
        let empty = GroupLag::default();
        assert_eq!(
            (empty.total(), empty.max(), empty.max_seconds()),
            (0, 0, None)
        );
    }

    #[test]
    fn ages_are_never_negative() {
        assert_eq!(age_seconds(1_000, 3_500), 2.5);
        assert_eq!(age_seconds(5_000, 3_500), 0.0);
    }
}
