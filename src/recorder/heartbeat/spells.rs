//! Spells of failure per leader, for the log. A broker in trouble fails every partition it
//! leads: one line per leader says so (repeats summarised), and one line says when it is over,
//! once every partition that failed through that leader has succeeded again, through whichever
//! broker leads it by then (leadership often moves away from a broker in trouble).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::logging::{LogThrottle, Spell};
use crate::sync::lock;

#[derive(Debug, Default)]
pub(super) struct LeaderSpells {
    throttle: LogThrottle,
    /// Per leader, its spell's partitions.
    failing: Mutex<BTreeMap<i32, Failing>>,
}

#[derive(Debug, Default)]
struct Failing {
    /// Failed through the leader and not succeeded since.
    open: BTreeSet<i32>,
    /// Every partition the spell touched, for the line that ends it.
    touched: BTreeSet<i32>,
}

/// A spell that ended: its leader, the partitions it touched, how long and how many.
#[derive(Debug)]
pub(super) struct Ended {
    pub(super) leader: i32,
    pub(super) partitions: BTreeSet<i32>,
    pub(super) spell: Spell,
}

fn key(leader: i32) -> String {
    format!("leader {leader}")
}

impl LeaderSpells {
    /// A failure of `partition` through `leader`, standing for `count` heartbeats: `Some` when
    /// it is to be logged, with what was held back (as [`LogThrottle::admit`]).
    pub(super) fn fail(&self, leader: i32, partition: i32, count: u64) -> Option<Option<u64>> {
        let mut failing = lock(&self.failing);
        let spell = failing.entry(leader).or_default();
        spell.open.insert(partition);
        spell.touched.insert(partition);
        drop(failing);
        self.throttle.admit_counting(&key(leader), count)
    }

    /// `partition` succeeded: the spells of the leaders it had failed through, ended by it.
    pub(super) fn succeed(&self, partition: i32) -> Vec<Ended> {
        let mut failing = lock(&self.failing);
        if failing.is_empty() {
            return Vec::new();
        }
        let mut ended = Vec::new();
        failing.retain(|&leader, failing| {
            if !failing.open.remove(&partition) || !failing.open.is_empty() {
                return true;
            }
            if let Some(spell) = self.throttle.reset(&key(leader)) {
                ended.push(Ended {
                    leader,
                    partitions: std::mem::take(&mut failing.touched),
                    spell,
                });
            }
            false
        });
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spell_ends_when_every_partition_it_failed_succeeds() {
        let spells = LeaderSpells::default();
        assert_eq!(spells.fail(2, 1, 1), Some(None));
        assert_eq!(spells.fail(2, 4, 1), None, "repeats are held back");
        assert_eq!(spells.fail(2, 1, 1), None);
        assert!(
            spells.succeed(0).is_empty(),
            "a partition that never failed"
        );
        assert!(spells.succeed(1).is_empty(), "partition 4 still fails");
        let ended = spells.succeed(4);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].leader, 2);
        assert_eq!(ended[0].partitions, BTreeSet::from([1, 4]));
        assert_eq!(ended[0].spell.counted, 3);
        assert!(spells.succeed(4).is_empty(), "ended once");
        assert_eq!(
            spells.fail(2, 1, 1),
            Some(None),
            "a new spell is told at once"
        );
    }
}
