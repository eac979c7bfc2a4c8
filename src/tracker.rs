//! The message tracker: which heartbeats are in flight, and what became of each.
//!
//! Every heartbeat ends exactly one way: consumed (with its end-to-end latency), failed (the
//! producer gave up on it), or lost (not consumed within the deadline). Seeing it again after
//! that is a duplicate; seeing it after it was given up is late. Memory is bounded: entries are
//! dropped once resolved for longer than the deadline, and each partition holds at most
//! [`MAX_PENDING_PER_PARTITION`] in-flight messages (beyond that the oldest is counted lost).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Cap on in-flight heartbeats per partition; a full partition resolves its oldest as lost.
pub(crate) const MAX_PENDING_PER_PARTITION: usize = crate::config::MAX_IN_FLIGHT_PER_PARTITION;

/// Cap on remembered outcomes per partition (for duplicate and late detection).
pub(crate) const MAX_RESOLVED_PER_PARTITION: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Pending {
    sent: Instant,
    leader: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Consumed,
    Failed,
    Lost,
}

#[derive(Debug, Default)]
struct PartitionState {
    next_sequence: u64,
    pending: BTreeMap<u64, Pending>,
    resolved: BTreeMap<u64, (Outcome, Instant)>,
}

/// What reading one of this instance's heartbeats means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// First sighting: the end-to-end latency, and the leader when it was sent.
    Consumed { latency: Duration, leader: i32 },
    /// Already consumed once.
    Duplicate,
    /// Already counted lost or failed.
    Late,
    /// A sequence this instance has no record of (never sent, or forgotten long ago).
    Unknown,
}

/// A heartbeat given up on as lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostMessage {
    pub partition: i32,
    pub leader: i32,
}

/// In-flight heartbeats of one instance, per partition.
#[derive(Debug)]
pub struct MessageTracker {
    deadline: Duration,
    partitions: HashMap<i32, PartitionState>,
}

impl MessageTracker {
    /// A tracker that counts a heartbeat lost when not consumed within `deadline`.
    pub fn new(deadline: Duration) -> Self {
        MessageTracker {
            deadline,
            partitions: HashMap::new(),
        }
    }

    /// Registers a heartbeat about to be sent; returns its sequence number and any message
    /// pushed out as lost because the partition was full.
    pub fn start(
        &mut self,
        partition: i32,
        leader: i32,
        now: Instant,
    ) -> (u64, Option<LostMessage>) {
        let sequence = self.partitions.entry(partition).or_default().next_sequence;
        let evicted = self.insert(partition, sequence, Pending { sent: now, leader });
        (sequence, evicted)
    }

    /// Expects heartbeat `sequence` of `partition`, sent at `sent` by another task (the
    /// source cluster's producer, for a replica's mirror reader): as [`MessageTracker::start`]
    /// with the sequence given and no leader; returns any message pushed out because the
    /// partition was full.
    pub fn expect(&mut self, partition: i32, sequence: u64, sent: Instant) -> Option<LostMessage> {
        let leader = crate::cluster::NO_LEADER;
        self.insert(partition, sequence, Pending { sent, leader })
    }

    /// `pending` as `sequence` of `partition`, the oldest in flight counted lost if the
    /// partition is full.
    fn insert(&mut self, partition: i32, sequence: u64, pending: Pending) -> Option<LostMessage> {
        let state = self.partitions.entry(partition).or_default();
        state.next_sequence = state.next_sequence.max(sequence + 1);
        let mut evicted = None;
        if state.pending.len() >= MAX_PENDING_PER_PARTITION {
            if let Some((oldest, oldest_pending)) = state.pending.pop_first() {
                state.resolved.insert(oldest, (Outcome::Lost, pending.sent));
                evicted = Some(LostMessage {
                    partition,
                    leader: oldest_pending.leader,
                });
            }
        }
        state.pending.insert(sequence, pending);
        evicted
    }

    /// A heartbeat that was never sent after all: forgotten, as if never started.
    pub fn cancel(&mut self, partition: i32, sequence: u64) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.pending.remove(&sequence);
        }
    }

    /// The heartbeat was acknowledged by `leader`: the broker its end-to-end latency is
    /// blamed on from now on (it may differ from the one metadata named at sending time).
    pub fn acknowledged(&mut self, partition: i32, sequence: u64, leader: i32) {
        if let Some(pending) = self
            .partitions
            .get_mut(&partition)
            .and_then(|state| state.pending.get_mut(&sequence))
        {
            pending.leader = leader;
        }
    }

    /// The producer gave up on a heartbeat. Returns false when it had already been resolved
    /// (consumed or lost), so the caller does not count it twice.
    pub fn fail(&mut self, partition: i32, sequence: u64, now: Instant) -> bool {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return false;
        };
        if state.pending.remove(&sequence).is_none() {
            return false;
        }
        state.resolved.insert(sequence, (Outcome::Failed, now));
        true
    }

    /// One of this instance's heartbeats was read back.
    pub fn observe(&mut self, partition: i32, sequence: u64, now: Instant) -> Observation {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return Observation::Unknown;
        };
        if let Some(pending) = state.pending.remove(&sequence) {
            state.resolved.insert(sequence, (Outcome::Consumed, now));
            return Observation::Consumed {
                latency: now.saturating_duration_since(pending.sent),
                leader: pending.leader,
            };
        }
        match state.resolved.get(&sequence) {
            Some((Outcome::Consumed, _)) => Observation::Duplicate,
            Some((Outcome::Failed | Outcome::Lost, _)) => Observation::Late,
            None => Observation::Unknown,
        }
    }

    /// Resolves every heartbeat older than the deadline as lost, and forgets old outcomes.
    pub fn expire(&mut self, now: Instant) -> Vec<LostMessage> {
        let mut lost = Vec::new();
        for (&partition, state) in &mut self.partitions {
            while let Some((&sequence, pending)) = state.pending.first_key_value() {
                if now.saturating_duration_since(pending.sent) < self.deadline {
                    break;
                }
                lost.push(LostMessage {
                    partition,
                    leader: pending.leader,
                });
                state.pending.remove(&sequence);
                state.resolved.insert(sequence, (Outcome::Lost, now));
            }
            // Outcomes are kept long enough to recognise a late or duplicated delivery.
            let keep_for = self.deadline * 3;
            while let Some((&sequence, (_, at))) = state.resolved.first_key_value() {
                let too_many = state.resolved.len() > MAX_RESOLVED_PER_PARTITION;
                if !too_many && now.saturating_duration_since(*at) < keep_for {
                    break;
                }
                state.resolved.remove(&sequence);
            }
        }
        lost
    }

    /// Heartbeats in flight, over all partitions.
    pub fn pending(&self) -> usize {
        self.partitions
            .values()
            .map(|state| state.pending.len())
            .sum()
    }

    /// Outcomes remembered, over all partitions.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.partitions
            .values()
            .map(|state| state.resolved.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(20);

    #[test]
    fn consumed_once_then_duplicate() {
        let mut tracker = MessageTracker::new(DEADLINE);
        let start = Instant::now();
        let (sequence, _) = tracker.start(3, 1, start);
        assert_eq!(sequence, 0);
        let later = start + Duration::from_millis(15);
        assert_eq!(
            tracker.observe(3, sequence, later),
            Observation::Consumed {
                latency: Duration::from_millis(15),
                leader: 1
            }
        );
        assert_eq!(tracker.observe(3, sequence, later), Observation::Duplicate);
        assert_eq!(tracker.start(3, 1, later).0, 1);
        assert_eq!(tracker.observe(3, 99, later), Observation::Unknown);
        assert_eq!(tracker.observe(4, 0, later), Observation::Unknown);
    }

    #[test]
    fn unseen_messages_are_lost_after_the_deadline_and_late_after() {
        let mut tracker = MessageTracker::new(DEADLINE);
        let start = Instant::now();
        let (sequence, _) = tracker.start(0, 2, start);
        assert!(tracker.expire(start + Duration::from_secs(19)).is_empty());
        let lost = tracker.expire(start + DEADLINE);
        assert_eq!(
            lost,
            vec![LostMessage {
                partition: 0,
                leader: 2
            }]
        );
        assert!(
            tracker.expire(start + DEADLINE * 2).is_empty(),
            "lost counted once"
        );
        assert_eq!(
            tracker.observe(0, sequence, start + DEADLINE * 2),
            Observation::Late
        );
        assert!(
            !tracker.fail(0, sequence, start + DEADLINE * 2),
            "never failed and lost"
        );
    }

    #[test]
    fn failed_messages_are_never_lost() {
        let mut tracker = MessageTracker::new(DEADLINE);
        let start = Instant::now();
        let (sequence, _) = tracker.start(0, 1, start);
        assert!(tracker.fail(0, sequence, start));
        assert!(!tracker.fail(0, sequence, start), "failed counted once");
        assert!(tracker.expire(start + DEADLINE * 2).is_empty());
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut tracker = MessageTracker::new(DEADLINE);
        let start = Instant::now();
        let mut evicted = 0;
        for _ in 0..(MAX_PENDING_PER_PARTITION + 10) {
            if tracker.start(0, 1, start).1.is_some() {
                evicted += 1;
            }
        }
        assert_eq!(evicted, 10);
        assert_eq!(tracker.pending(), MAX_PENDING_PER_PARTITION);
        tracker.expire(start + DEADLINE);
        assert_eq!(tracker.pending(), 0);
        assert!(tracker.remembered() <= MAX_RESOLVED_PER_PARTITION);
        tracker.expire(start + DEADLINE * 5);
        assert_eq!(tracker.remembered(), 0);
    }

    #[test]
    fn the_acknowledging_leader_is_blamed() {
        let mut tracker = MessageTracker::new(DEADLINE);
        let start = Instant::now();
        let (sequence, _) = tracker.start(0, 1, start);
        tracker.acknowledged(0, sequence, 2);
        assert_eq!(
            tracker.observe(0, sequence, start),
            Observation::Consumed {
                latency: Duration::ZERO,
                leader: 2
            }
        );
    }
}
