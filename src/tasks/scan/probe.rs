//! The lag probe: reads the oldest unconsumed record of lagging partitions, for lag in
//! seconds. It assigns partitions at the group's committed offset, never joins a group and
//! never commits; its cost is bounded: batches of [`PROBE_BATCH`] partitions under a timeout,
//! each partition paused once its first record came, and timestamps cached while a group's
//! committed offset stays on them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::client::ClientLog;
use crate::kafka::TopicPartition;

/// A partition the probe reads: where the group's committed offset is, and where the log ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct ProbeTarget {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) committed: i64,
    pub(super) end: i64,
}

/// What the probe learned of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeOutcome {
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
    /// The `kind` of a partition answered from the cache, without a read.
    pub(super) const CACHED: &'static str = "cached";

    /// Every `kind` of `heartbeat_consumer_group_lag_probes_total`: how a partition was
    /// answered.
    pub(super) const KINDS: [&'static str; 5] = [
        ProbeOutcome::CACHED,
        ProbeOutcome::Timestamp(0).kind(),
        ProbeOutcome::NoRecord.kind(),
        ProbeOutcome::TimedOut.kind(),
        ProbeOutcome::Failed.kind(),
    ];

    /// The label of `heartbeat_consumer_group_lag_probes_total` for this outcome.
    pub(super) const fn kind(self) -> &'static str {
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
pub(super) struct ProbeRound {
    pub(super) outcomes: HashMap<ProbeTarget, ProbeOutcome>,
    /// Targets by how they were answered: [`ProbeOutcome::CACHED`], or an outcome's [`ProbeOutcome::kind`].
    pub(super) counts: BTreeMap<&'static str, u64>,
    /// The first error that stopped a batch, to report.
    pub(super) error: Option<KafkaError>,
}

/// Partitions assigned at once: bounds the probe's fetch sessions and its prefetch.
pub(super) const PROBE_BATCH: usize = 200;

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
pub(super) struct LagProbe {
    consumer: Arc<BaseConsumer<ClientLog>>,
    /// Record timestamps by (topic, partition, offset), for offsets still committed somewhere.
    cache: HashMap<(String, i32, i64), i64>,
}

impl LagProbe {
    pub(super) fn new(consumer: Arc<BaseConsumer<ClientLog>>) -> Self {
        LagProbe {
            consumer,
            cache: HashMap::new(),
        }
    }

    /// Timestamps for `targets`, each batch of [`PROBE_BATCH`] partitions bounded by `timeout`;
    /// no batch starts after `deadline` (its partitions time out). Cached timestamps are
    /// reused; the cache then keeps only this round's offsets.
    pub(super) fn probe(
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
                    *round.counts.entry(ProbeOutcome::CACHED).or_default() += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
