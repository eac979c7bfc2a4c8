//! Sharding: `--shard INDEX/COUNT` makes an instance monitor only its share of the
//! `[cluster:…]` sections, so that COUNT replicas of one configuration split the clusters
//! between them without talking to each other.
//!
//! Each cluster goes to the shard with the highest score (rendezvous hashing): for every
//! index `i` in `0..COUNT`, `score(i) = splitmix64(fnv1a64("<i>/<name>"))`, FNV-1a over the
//! UTF-8 bytes of the decimal index, a `/` and the cluster's name, then SplitMix64's 64-bit
//! finalizer; ties go to the lower index. It depends on nothing but the name and COUNT, so
//! every replica computes the same split, and going from COUNT to COUNT + 1 moves only the
//! clusters the new shard takes (about one in COUNT + 1), not most of them as a modulo would.

use std::fmt;
use std::str::FromStr;

/// The most shards: far more instances than clusters anyone runs, and few enough that hashing
/// a name against every shard stays instant.
pub const MAX_SHARDS: u32 = 1024;

/// One instance's share: `index` of `count` (`0 ≤ index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Why a `--shard` value is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error("{0:?} is not INDEX/COUNT (such as 0/3)")]
    Form(String),
    #[error("{value:?}: COUNT must be 1 to {MAX_SHARDS} and INDEX below it (0 to {last})", last = (*.count).clamp(1, MAX_SHARDS) - 1)]
    Range { value: String, count: u32 },
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let form = || ShardError::Form(value.to_string());
        let (index, count) = value.trim().split_once('/').ok_or_else(form)?;
        let index: u32 = index.trim().parse().map_err(|_| form())?;
        let count: u32 = count.trim().parse().map_err(|_| form())?;
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(ShardError::Range {
                value: value.to_string(),
                count,
            });
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The whole: one shard of one, every cluster.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether this shard monitors the cluster named `name`.
    pub fn owns(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

/// The shard (of `count`) that monitors the cluster named `name`.
pub fn shard_of(name: &str, count: u32) -> u32 {
    let mut best = (0, 0u64);
    for index in 0..count {
        let score = splitmix64(fnv1a64(format!("{index}/{name}").as_bytes()));
        if index == 0 || score > best.1 {
            best = (index, score);
        }
    }
    best.0
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finalizer: FNV-1a's high bits barely depend on the first bytes (the index),
/// and this spreads every input bit over the whole word.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_of_count_and_refuses_the_rest() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(" 0 / 1 ".parse(), Ok(Shard::ALL));
        for bad in ["", "3", "a/3", "1/b", "-1/3", "1/3/4"] {
            assert!(
                matches!(bad.parse::<Shard>(), Err(ShardError::Form(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "3/3".parse::<Shard>().unwrap_err().to_string(),
            "\"3/3\": COUNT must be 1 to 1024 and INDEX below it (0 to 2)"
        );
        for bad in ["0/0", "0/1025"] {
            assert!(
                matches!(bad.parse::<Shard>(), Err(ShardError::Range { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_hash_is_the_documented_one() {
        // FNV-1a's published test vectors, then pinned assignments: a change here moves
        // clusters between running replicas, so it must be deliberate (and in docs/kubernetes.md, "Scaling out").
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let names = [
            "prod_eu",
            "prod_us",
            "staging",
            "analytics",
            "payments",
            "logs",
            "dr",
        ];
        let shards: Vec<u32> = names.iter().map(|name| shard_of(name, 3)).collect();
        assert_eq!(shards, PINNED);
    }

    const PINNED: [u32; 7] = [2, 1, 1, 1, 1, 1, 0];

    #[test]
    fn every_cluster_goes_to_exactly_one_shard_and_growing_moves_few() {
        let names: Vec<String> = (0..1000).map(|n| format!("cluster-{n}")).collect();
        for count in 1..=8u32 {
            let mut sizes = vec![0usize; count as usize];
            for name in &names {
                let owners: Vec<u32> = (0..count)
                    .filter(|&index| Shard { index, count }.owns(name))
                    .collect();
                assert_eq!(owners.len(), 1, "{name} of {count}");
                sizes[owners[0] as usize] += 1;
            }
            // Even enough: no shard more than 30 % off its fair share.
            let fair = names.len() / count as usize;
            for size in &sizes {
                assert!(size.abs_diff(fair) * 10 <= fair * 3, "{count}: {sizes:?}");
            }
            // One more shard: a cluster either stays or moves to the new shard.
            for name in &names {
                let (before, after) = (shard_of(name, count), shard_of(name, count + 1));
                assert!(
                    after == before || after == count,
                    "{name}: {before} → {after}"
                );
            }
        }
    }
}
