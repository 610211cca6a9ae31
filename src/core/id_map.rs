//! Maps keyed by Herald's own numbers (a job's delivery, a publish's
//! sequence number). The standard hasher, SipHash, resists keys chosen to
//! collide, which these are not: the broker numbers them one by one. A
//! multiply per word costs a tenth of it, and a job is looked up in the
//! jobs table about a dozen times in its life.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by numbers Herald or the broker hands out in sequence.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Folds each word into the state with a rotate, a xor and a multiply by
/// an odd constant (as rustc's own hasher does): the multiply carries the
/// low bits of a sequence number into the high bits, which the table's
/// control bytes are taken from.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;
    use crate::core::{JobId, Lane};

    #[test]
    fn sequence_numbers_spread_over_the_high_bits() {
        // hashbrown takes a slot's control byte from the top 7 bits: keys
        // in sequence must not all share them.
        let build = BuildHasherDefault::<IdHasher>::default();
        let tops: std::collections::HashSet<u64> = (0..1_000u64)
            .map(|tag| {
                let id = JobId {
                    generation: 1,
                    lane: Lane::Normal,
                    tag,
                };
                build.hash_one(id) >> 57
            })
            .collect();
        assert!(tops.len() > 100, "{} distinct top bits", tops.len());
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map: IdMap<u64, u64> = IdMap::default();
        for n in 0..10_000 {
            map.insert(n, n * 2);
        }
        assert!((0..10_000).all(|n| map.get(&n) == Some(&(n * 2))));
        assert_eq!(map.get(&10_000), None);
    }
}
