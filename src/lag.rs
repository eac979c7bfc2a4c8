//! Consumer-group lag, for the cluster scan: committed offsets against log end offsets (lag in
//! messages), and how long ago the oldest unconsumed record was written (lag in seconds).
//!
//! Lag in seconds is exact, not interpolated: it is the age of the record at the committed
//! offset, read by a consumer that assigns partitions and never joins a group or commits. Its
//! cost is bounded: only partitions with lag are read, in batches under a timeout, and a
//! record's timestamp is cached while the group's committed offset stays on it, so a stuck
//! consumer costs one read, not one per scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::ClientLog;
use crate::native_admin::{self, NativeAdminError};

/// Lag in messages from a committed and a log end offset, clamped at zero. The flag says a
/// committed offset was past the end (the offsets were read at different instants, or the log
/// was truncated): a race to count, not a negative lag to report.
pub fn lag_in_messages(committed: i64, end: i64) -> (i64, bool) {
    if committed > end {
        (0, true)
    } else {
        (end - committed, false)
    }
}

/// A partition of a topic.
pub type TopicPartition = (String, i32);

/// One group's lag on one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    pub committed: i64,
    /// `None` when the log end offset could not be read.
    pub end: Option<i64>,
    /// Messages behind, never negative; `None` without the log end offset.
    pub messages: Option<i64>,
    /// Age of the oldest unconsumed record; `Some(0.0)` without lag, `None` when unknown.
    pub seconds: Option<f64>,
}

/// One group's lag, per partition and in total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupLag {
    pub partitions: BTreeMap<TopicPartition, PartitionLag>,
}

impl GroupLag {
    /// Messages behind on all partitions.
    pub fn total(&self) -> i64 {
        self.partitions.values().filter_map(|p| p.messages).sum()
    }

    /// Messages behind on the partition furthest behind.
    pub fn max(&self) -> i64 {
        self.partitions
            .values()
            .filter_map(|p| p.messages)
            .max()
            .unwrap_or(0)
    }

    /// Age of the oldest unconsumed record over all partitions, when any is known.
    pub fn max_seconds(&self) -> Option<f64> {
        self.partitions
            .values()
            .filter_map(|p| p.seconds)
            .reduce(f64::max)
    }
}

/// A partition the probe reads: where the group's committed offset is, and where the log ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeTarget {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub end: i64,
}

/// What the probe learned of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Timestamp (milliseconds since the epoch) of the oldest unconsumed record.
    Timestamp(i64),
    /// Only records without a timestamp, or control records, are left to consume.
    NoRecord,
    /// Nothing came before the batch's timeout.
    TimedOut,
    /// The partition could not be read (authorization, unknown partition, …).
    Failed,
}

impl ProbeOutcome {
    /// The label of `heartbeat_consumer_group_lag_probes_total` for this outcome.
    pub fn kind(self) -> &'static str {
        match self {
            ProbeOutcome::Timestamp(_) => "read",
            ProbeOutcome::NoRecord => "no_record",
            ProbeOutcome::TimedOut => "timed_out",
            ProbeOutcome::Failed => "failed",
        }
    }
}

/// How one probe round went.
#[derive(Debug, Default)]
pub struct ProbeRound {
    pub outcomes: HashMap<ProbeTarget, ProbeOutcome>,
    /// Targets by how they were answered: `cached`, or an outcome's [`ProbeOutcome::kind`].
    pub counts: BTreeMap<&'static str, u64>,
    /// The first error that stopped a batch, to report.
    pub error: Option<KafkaError>,
}

/// Partitions assigned at once: bounds the probe's fetch sessions and its prefetch.
pub const PROBE_BATCH: usize = 200;

/// After an error, how long a batch still waits without any partition answering.
const ERROR_GRACE: Duration = Duration::from_secs(2);

/// Splits `targets` into batches of at most [`PROBE_BATCH`] where no partition comes twice
/// (groups at different offsets of one partition are read in different batches: one
/// assignment holds a partition once).
fn batches(targets: Vec<ProbeTarget>) -> Vec<Vec<ProbeTarget>> {
    // Each batch with the partitions it holds.
    type Batch = (BTreeSet<TopicPartition>, Vec<ProbeTarget>);
    let mut batches: Vec<Batch> = Vec::new();
    for target in targets {
        let key = (target.topic.clone(), target.partition);
        let open = batches
            .iter_mut()
            .find(|(keys, batch)| batch.len() < PROBE_BATCH && !keys.contains(&key));
        match open {
            Some((keys, batch)) => {
                keys.insert(key);
                batch.push(target);
            }
            None => batches.push((BTreeSet::from([key]), vec![target])),
        }
    }
    batches.into_iter().map(|(_, batch)| batch).collect()
}

/// Reads the oldest unconsumed record's timestamp of lagging partitions. Blocking: run on a
/// blocking thread.
pub struct LagProbe {
    consumer: BaseConsumer<ClientLog>,
    /// Record timestamps by (topic, partition, offset), for offsets still committed somewhere.
    cache: HashMap<(String, i32, i64), i64>,
}

impl LagProbe {
    pub fn new(consumer: BaseConsumer<ClientLog>) -> Self {
        LagProbe {
            consumer,
            cache: HashMap::new(),
        }
    }

    /// Timestamps for `targets`, each batch of [`PROBE_BATCH`] partitions bounded by `timeout`;
    /// no batch starts after `deadline` (its partitions time out). Cached timestamps are
    /// reused; the cache then keeps only this round's offsets.
    pub fn probe(
        &mut self,
        targets: &BTreeSet<ProbeTarget>,
        timeout: Duration,
        deadline: Instant,
    ) -> ProbeRound {
        let mut round = ProbeRound::default();
        let mut cache = HashMap::new();
        let mut to_read = Vec::new();
        for target in targets {
            let key = (target.topic.clone(), target.partition, target.committed);
            match self.cache.get(&key) {
                Some(timestamp) => {
                    *round.counts.entry("cached").or_default() += 1;
                    round
                        .outcomes
                        .insert(target.clone(), ProbeOutcome::Timestamp(*timestamp));
                    cache.insert(key, *timestamp);
                }
                None => to_read.push(target.clone()),
            }
        }
        for batch in batches(to_read) {
            let batch = batch.as_slice();
            let outcomes = if Instant::now() < deadline {
                self.read_batch(batch, timeout, &mut round.error)
            } else {
                vec![ProbeOutcome::TimedOut; batch.len()]
            };
            for (target, outcome) in batch.iter().zip(outcomes) {
                *round.counts.entry(outcome.kind()).or_default() += 1;
                if let ProbeOutcome::Timestamp(timestamp) = outcome {
                    cache.insert(
                        (target.topic.clone(), target.partition, target.committed),
                        timestamp,
                    );
                }
                round.outcomes.insert(target.clone(), outcome);
            }
        }
        self.cache = cache;
        round
    }

    fn read_batch(
        &self,
        batch: &[ProbeTarget],
        timeout: Duration,
        error: &mut Option<KafkaError>,
    ) -> Vec<ProbeOutcome> {
        let mut outcomes = vec![ProbeOutcome::TimedOut; batch.len()];
        let mut waiting: HashMap<(&str, i32), usize> = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for (index, target) in batch.iter().enumerate() {
            let added = assignment.add_partition_offset(
                &target.topic,
                target.partition,
                Offset::Offset(target.committed),
            );
            if added.is_err() {
                outcomes[index] = ProbeOutcome::Failed;
                continue;
            }
            waiting.insert((target.topic.as_str(), target.partition), index);
        }
        // Client-wide errors that came while nobody polled (between scans) belong to no batch.
        while self.consumer.poll(Duration::ZERO).is_some() {}
        if let Err(failure) = self.consumer.assign(&assignment) {
            error.get_or_insert(failure);
            return vec![ProbeOutcome::Failed; batch.len()];
        }
        let deadline = Instant::now() + timeout;
        // After an error, which names no partition, the batch waits only while others still
        // answer: a partition that cannot be read would otherwise cost the whole timeout.
        let mut failing_since: Option<Instant> = None;
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if failing_since.is_some_and(|since| since.elapsed() >= ERROR_GRACE) {
                for index in waiting.values() {
                    outcomes[*index] = ProbeOutcome::Failed;
                }
                break;
            }
            match self.consumer.poll(left.min(Duration::from_millis(200))) {
                None => {}
                Some(Ok(message)) => {
                    failing_since = failing_since.map(|_| Instant::now());
                    let key = (message.topic(), message.partition());
                    let Some(index) = waiting.get(&key).copied() else {
                        continue;
                    };
                    outcomes[index] = match message.timestamp().to_millis() {
                        Some(timestamp) if timestamp >= 0 => ProbeOutcome::Timestamp(timestamp),
                        _ => ProbeOutcome::NoRecord,
                    };
                    let target = &batch[index];
                    waiting.remove(&(target.topic.as_str(), target.partition));
                    // Its first record is all that is wanted: stop fetching it.
                    let mut done = TopicPartitionList::new();
                    done.add_partition(&target.topic, target.partition);
                    let _ = self.consumer.pause(&done);
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // The error names the partition, not the topic: settle every waiting
                    // partition of that number that has reached its end.
                    self.settle_at_end(batch, &mut waiting, &mut outcomes, partition);
                }
                Some(Err(failure @ KafkaError::MessageConsumptionFatal(_))) => {
                    error.get_or_insert(failure);
                    for index in waiting.values() {
                        outcomes[*index] = ProbeOutcome::Failed;
                    }
                    break;
                }
                Some(Err(failure)) => {
                    // Authorization, a vanished topic, a broker gone: the other partitions of
                    // the batch may still answer.
                    error.get_or_insert(failure);
                    failing_since = Some(Instant::now());
                }
            }
        }
        // librdkafka keeps a partition paused across assignments: resume before letting go.
        let _ = self.consumer.resume(&assignment);
        if let Err(failure) = self.consumer.unassign() {
            error.get_or_insert(failure);
        }
        outcomes
    }

    fn settle_at_end<'a>(
        &self,
        batch: &'a [ProbeTarget],
        waiting: &mut HashMap<(&'a str, i32), usize>,
        outcomes: &mut [ProbeOutcome],
        partition: i32,
    ) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let at_end: Vec<usize> = waiting
            .iter()
            .filter(|((_, number), _)| *number == partition)
            .filter(|(_, index)| {
                let target = &batch[**index];
                positions
                    .find_partition(&target.topic, target.partition)
                    .and_then(|element| element.offset().to_raw())
                    .is_some_and(|position| position >= target.end)
            })
            .map(|(_, index)| *index)
            .collect();
        for index in at_end {
            outcomes[index] = ProbeOutcome::NoRecord;
            let target = &batch[index];
            waiting.remove(&(target.topic.as_str(), target.partition));
        }
    }
}

/// Groups whose committed offsets are requested at once (librdkafka takes one per request).
pub const OFFSETS_IN_FLIGHT: usize = 16;

/// What one lag scan found.
#[derive(Debug, Default)]
pub struct LagScan {
    /// Every group asked for: its lag, or why its offsets could not be read.
    pub groups: BTreeMap<String, Result<GroupLag, NativeAdminError>>,
    /// Log end offsets of the committed partitions, when some could be read.
    pub end_offsets: BTreeMap<TopicPartition, i64>,
    /// Why the log end offsets could not be read.
    pub end_offsets_error: Option<NativeAdminError>,
    /// Committed offsets found past the log end (clamped to zero lag).
    pub races: u64,
    /// The lag-in-seconds round, when the probe ran.
    pub probe: Option<ProbeRound>,
}

/// Reads the lag of `groups`: their committed offsets (only on topics `topic_wanted` accepts;
/// with `partitions`, only on those, named in each request),
/// the log end offsets of those partitions in one request, and with a probe the age of each
/// lagging partition's oldest unconsumed record. Each request is bounded by `timeout`, and no
/// request or batch starts after `budget` from now. Blocking.
pub fn scan_lag<C: ClientContext>(
    admin: &Client<C>,
    probe: Option<&mut LagProbe>,
    groups: &[String],
    partitions: Option<&[TopicPartition]>,
    topic_wanted: &dyn Fn(&str) -> bool,
    timeout: Duration,
    budget: Duration,
) -> LagScan {
    let deadline = Instant::now() + budget;
    let mut scan = LagScan::default();
    let offsets = native_admin::list_group_offsets(
        admin,
        groups,
        partitions,
        OFFSETS_IN_FLIGHT,
        timeout,
        deadline,
    );
    let mut committed: BTreeMap<&str, Result<BTreeMap<TopicPartition, i64>, NativeAdminError>> =
        BTreeMap::new();
    let mut partitions = BTreeSet::new();
    for (group, answer) in groups.iter().zip(offsets) {
        let answer = answer.map(|listed| {
            listed
                .into_iter()
                .filter(|p| topic_wanted(&p.topic))
                .filter_map(|p| Some(((p.topic, p.partition), p.offset?)))
                .collect::<BTreeMap<_, _>>()
        });
        if let Ok(listed) = &answer {
            partitions.extend(listed.keys().cloned());
        }
        committed.insert(group, answer);
    }
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
    let mut targets = BTreeSet::new();
    let with_seconds = probe.is_some();
    for (group, answer) in committed {
        let lag = answer.map(|listed| {
            let mut lag = GroupLag::default();
            for (key, committed) in listed {
                let end = scan.end_offsets.get(&key).copied();
                let messages = end.map(|end| {
                    let (messages, raced) = lag_in_messages(committed, end);
                    scan.races += u64::from(raced);
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
        scan.groups.insert(group.to_string(), lag);
    }
    if let Some(probe) = probe {
        let round = probe.probe(&targets, timeout, deadline);
        let now = now_millis();
        for lag in scan.groups.values_mut().flatten() {
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
                    Some(ProbeOutcome::Timestamp(timestamp)) => Some(age_seconds(*timestamp, now)),
                    // Only records a consumer skips are left: nothing is waiting.
                    Some(ProbeOutcome::NoRecord) => Some(0.0),
                    _ => None,
                };
            }
        }
        scan.probe = Some(round);
    }
    scan
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// Seconds between a record's timestamp and `now_millis`; never negative (producer clocks
/// run ahead sometimes).
pub fn age_seconds(timestamp_millis: i64, now_millis: i64) -> f64 {
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
    fn a_batch_holds_each_partition_once() {
        let target = |partition: i32, committed: i64| ProbeTarget {
            topic: "orders".to_string(),
            partition,
            committed,
            end: 100,
        };
        let mut targets = vec![target(0, 1), target(0, 2), target(1, 1), target(0, 3)];
        targets.extend((2..PROBE_BATCH as i32 + 2).map(|partition| target(partition, 1)));
        let batches = batches(targets.clone());
        for batch in &batches {
            assert!(batch.len() <= PROBE_BATCH);
            let unique: BTreeSet<(&str, i32)> = batch
                .iter()
                .map(|t| (t.topic.as_str(), t.partition))
                .collect();
            assert_eq!(unique.len(), batch.len());
        }
        let mut all: Vec<ProbeTarget> = batches.into_iter().flatten().collect();
        all.sort();
        targets.sort();
        assert_eq!(all, targets);
    }

    #[test]
    fn ages_are_never_negative() {
        assert_eq!(age_seconds(1_000, 3_500), 2.5);
        assert_eq!(age_seconds(5_000, 3_500), 0.0);
    }
}
