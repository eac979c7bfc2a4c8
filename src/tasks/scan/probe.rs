//! The lag probe: reads the oldest unconsumed record of lagging partitions, for lag in
//! seconds. It assigns partitions at the group's committed offset, never joins a group and
//! never commits; its cost is bounded: batches of [`PROBE_BATCH`] partitions under a timeout,
//! each partition paused once the records wanted came, and timestamps cached while a group's
//! committed offset stays on them. Groups committed close together on one partition (within
//! [`RUN_SPAN`] offsets) are read in one pass from the lowest: many groups on a topic would
//! otherwise cost one assignment and fetch round each.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::client::ClientLog;
use crate::kafka::TopicPartition;
use crate::recorder::scan::found::{ProbeOutcome, ProbeRound, ProbeTarget};

/// Partitions assigned at once: bounds the probe's fetch sessions and its prefetch.
pub(super) const PROBE_BATCH: usize = 200;

/// After an error, how long a batch still waits without any partition answering.
const ERROR_GRACE: Duration = Duration::from_secs(2);

/// Offsets one pass reads at most, from its first target to its last: a target farther on
/// starts another pass, in another batch. Bounds what a pass reads beyond what a read per
/// target would (each fetch brings a batch of records anyway).
pub(super) const RUN_SPAN: i64 = 100;

/// Targets of one partition read in one pass: from the first's committed offset until every
/// one has its record. Sorted by committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    targets: Vec<ProbeTarget>,
}

impl Run {
    fn first(&self) -> &ProbeTarget {
        &self.targets[0]
    }
}

/// Cuts `targets` into runs (a partition's targets within [`RUN_SPAN`] of the run's first) and
/// those into batches of at most [`PROBE_BATCH`] where no partition comes twice (one assignment
/// holds a partition once, so its runs far apart are read in different batches).
fn batches(mut targets: Vec<ProbeTarget>) -> Vec<Vec<Run>> {
    targets.sort();
    let mut runs: Vec<Run> = Vec::new();
    for target in targets {
        match runs.last_mut() {
            Some(run)
                if run.first().topic == target.topic
                    && run.first().partition == target.partition
                    && target.committed - run.first().committed <= RUN_SPAN =>
            {
                run.targets.push(target)
            }
            _ => runs.push(Run {
                targets: vec![target],
            }),
        }
    }
    // Each batch with the partitions it holds.
    type Batch = (BTreeSet<TopicPartition>, Vec<Run>);
    let mut batches: Vec<Batch> = Vec::new();
    for run in runs {
        let key = (run.first().topic.clone(), run.first().partition);
        let open = batches
            .iter_mut()
            .find(|(keys, batch)| batch.len() < PROBE_BATCH && !keys.contains(&key));
        match open {
            Some((keys, batch)) => {
                keys.insert(key);
                batch.push(run);
            }
            None => batches.push((BTreeSet::from([key]), vec![run])),
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
                batch
                    .iter()
                    .map(|run| vec![ProbeOutcome::TimedOut; run.targets.len()])
                    .collect()
            };
            debug_assert_eq!(
                outcomes.iter().map(Vec::len).sum::<usize>(),
                batch.iter().map(|run| run.targets.len()).sum::<usize>()
            );
            let targets = batch.iter().flat_map(|run| &run.targets);
            for (target, outcome) in targets.zip(outcomes.into_iter().flatten()) {
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

    /// Reads one batch; the outcomes of each run's targets, in order.
    fn read_batch(
        &self,
        batch: &[Run],
        timeout: Duration,
        error: &mut Option<KafkaError>,
    ) -> Vec<Vec<ProbeOutcome>> {
        let mut reads: Vec<RunRead> = batch.iter().map(RunRead::new).collect();
        // Runs still reading, by partition: a batch holds each partition once.
        let mut waiting: HashMap<(&str, i32), usize> = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for (index, run) in batch.iter().enumerate() {
            let first = run.first();
            let added = assignment.add_partition_offset(
                &first.topic,
                first.partition,
                Offset::Offset(first.committed),
            );
            if added.is_err() {
                reads[index].settle(ProbeOutcome::Failed);
                continue;
            }
            waiting.insert((first.topic.as_str(), first.partition), index);
        }
        let finish = |reads: Vec<RunRead>| reads.into_iter().map(|read| read.outcomes).collect();
        // Client-wide errors that came while nobody polled (between scans) belong to no batch.
        while self.consumer.poll(Duration::ZERO).is_some() {}
        if let Err(failure) = self.consumer.assign(&assignment) {
            error.get_or_insert(failure);
            reads
                .iter_mut()
                .for_each(|read| read.settle(ProbeOutcome::Failed));
            return finish(reads);
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
                    reads[*index].settle(ProbeOutcome::Failed);
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
                    let outcome = match message.timestamp().to_millis() {
                        Some(timestamp) if timestamp >= 0 => ProbeOutcome::Timestamp(timestamp),
                        _ => ProbeOutcome::NoRecord,
                    };
                    if reads[index].record(message.offset(), outcome) {
                        let first = batch[index].first();
                        waiting.remove(&(first.topic.as_str(), first.partition));
                        // Its records wanted all came: stop fetching it.
                        let mut done = TopicPartitionList::new();
                        done.add_partition(&first.topic, first.partition);
                        let _ = self.consumer.pause(&done);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // The error names the partition, not the topic: settle every waiting
                    // partition of that number that has reached its end.
                    self.settle_at_end(batch, &mut waiting, &mut reads, partition);
                }
                Some(Err(failure @ KafkaError::MessageConsumptionFatal(_))) => {
                    error.get_or_insert(failure);
                    for index in waiting.values() {
                        reads[*index].settle(ProbeOutcome::Failed);
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
        finish(reads)
    }

    fn settle_at_end<'a>(
        &self,
        batch: &'a [Run],
        waiting: &mut HashMap<(&'a str, i32), usize>,
        reads: &mut [RunRead],
        partition: i32,
    ) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let at_end: Vec<usize> = waiting
            .iter()
            .filter(|((_, number), _)| *number == partition)
            .filter(|(_, index)| {
                let first = batch[**index].first();
                positions
                    .find_partition(&first.topic, first.partition)
                    .and_then(|element| element.offset().to_raw())
                    .is_some_and(|position| position >= first.end)
            })
            .map(|(_, index)| *index)
            .collect();
        for index in at_end {
            reads[index].settle(ProbeOutcome::NoRecord);
            let first = batch[index].first();
            waiting.remove(&(first.topic.as_str(), first.partition));
        }
    }
}

/// One run being read: its targets' outcomes, and the first still waiting for a record.
struct RunRead<'a> {
    run: &'a Run,
    outcomes: Vec<ProbeOutcome>,
    next: usize,
}

impl<'a> RunRead<'a> {
    fn new(run: &'a Run) -> Self {
        RunRead {
            run,
            outcomes: vec![ProbeOutcome::TimedOut; run.targets.len()],
            next: 0,
        }
    }

    /// A record at `offset` read: it is the oldest unconsumed one of every waiting target
    /// committed at or before it. Returns whether the run is done.
    fn record(&mut self, offset: i64, outcome: ProbeOutcome) -> bool {
        let targets = &self.run.targets;
        while self.next < targets.len() && targets[self.next].committed <= offset {
            self.outcomes[self.next] = outcome;
            self.next += 1;
        }
        self.next == targets.len()
    }

    /// Every target still waiting ends with `outcome`.
    fn settle(&mut self, outcome: ProbeOutcome) {
        for waiting in &mut self.outcomes[self.next..] {
            *waiting = outcome;
        }
        self.next = self.run.targets.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(partition: i32, committed: i64) -> ProbeTarget {
        ProbeTarget {
            topic: "orders".to_string(),
            partition,
            committed,
            end: 1_000,
        }
    }

    #[test]
    fn a_batch_holds_each_partition_once_and_close_groups_share_a_run() {
        let mut targets = vec![
            target(0, 1),
            target(0, 2),
            target(1, 1),
            target(0, 3),
            target(0, 1 + RUN_SPAN),
            target(0, 2 + RUN_SPAN),
        ];
        targets.extend((2..PROBE_BATCH as i32 + 2).map(|partition| target(partition, 1)));
        let batches = batches(targets.clone());
        for batch in &batches {
            assert!(batch.len() <= PROBE_BATCH);
            let unique: BTreeSet<(&str, i32)> = batch
                .iter()
                .map(|run| (run.first().topic.as_str(), run.first().partition))
                .collect();
            assert_eq!(unique.len(), batch.len());
        }
        let runs_of_0: Vec<Vec<i64>> = batches
            .iter()
            .flatten()
            .filter(|run| run.first().partition == 0)
            .map(|run| run.targets.iter().map(|t| t.committed).collect())
            .collect();
        // At most RUN_SPAN from a pass's first target to its last, however close each step.
        assert_eq!(runs_of_0, [vec![1, 2, 3, 1 + RUN_SPAN], vec![2 + RUN_SPAN]]);
        let mut all: Vec<ProbeTarget> = batches
            .into_iter()
            .flatten()
            .flat_map(|run| run.targets)
            .collect();
        all.sort();
        targets.sort();
        assert_eq!(all, targets);
    }

    #[test]
    fn a_record_answers_every_group_committed_at_or_before_it() {
        let run = Run {
            targets: vec![target(0, 5), target(0, 7), target(0, 8), target(0, 20)],
        };
        let mut read = RunRead::new(&run);
        assert!(!read.record(5, ProbeOutcome::Timestamp(50)));
        // 6 and 7 were compacted away: the record at 9 is the oldest left for 7 and 8.
        assert!(!read.record(9, ProbeOutcome::Timestamp(90)));
        read.settle(ProbeOutcome::NoRecord);
        assert_eq!(
            read.outcomes,
            [
                ProbeOutcome::Timestamp(50),
                ProbeOutcome::Timestamp(90),
                ProbeOutcome::Timestamp(90),
                ProbeOutcome::NoRecord
            ]
        );
        let mut read = RunRead::new(&run);
        assert!(read.record(25, ProbeOutcome::NoRecord));
    }
}
