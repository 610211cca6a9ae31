//! The one source of chance for seeded runs (the simulation, the soak's
//! schedule, the churn's stay times): SplitMix64, so that a seed replays
//! exactly on any machine, with no crate to pin.

use std::time::Duration;

pub struct Draw(u64);

impl Draw {
    pub fn new(seed: u64) -> Draw {
        Draw(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// Up to `max` milliseconds.
    pub fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::Draw;

    #[test]
    fn a_seed_replays_and_another_seed_differs() {
        let draws = |seed| {
            let mut draw = Draw::new(seed);
            (0..8).map(|_| draw.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn between_stays_within_its_bounds_and_reaches_both() {
        let mut draw = Draw::new(1);
        let seen: Vec<u64> = (0..1000).map(|_| draw.between(3, 5)).collect();
        assert!(seen.iter().all(|n| (3..=5).contains(n)));
        assert!(seen.contains(&3) && seen.contains(&5));
    }
}
