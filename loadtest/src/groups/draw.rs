//! Who is in which group: each group's members drawn from the swarm's
//! users without repeats, from a seed, so that the same seed makes the
//! same groups on any machine.

/// splitmix64: a few lines, seeded, the same numbers everywhere; the load
/// test needs no statistical quality beyond an even spread.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (the modulo's bias is below 2^-40 for the
    /// bounds used here).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// `groups` groups of `members` distinct users each (at most all of
/// them) out of users `0..users`, each group's in ascending order.
pub fn draw(seed: u64, users: usize, groups: usize, members: usize) -> Vec<Vec<usize>> {
    let members = members.min(users);
    let mut rng = SplitMix64(seed);
    let mut deck: Vec<usize> = (0..users).collect();
    (0..groups)
        .map(|_| {
            // A partial Fisher-Yates shuffle: whatever order the deck is in,
            // its first `members` cards are then a uniform draw.
            for i in 0..members {
                let j = i + rng.below(users - i);
                deck.swap(i, j);
            }
            let mut group = deck[..members].to_vec();
            group.sort_unstable();
            group
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_groups_of_distinct_users() {
        let groups = draw(7, 100, 20, 30);
        assert_eq!(groups, draw(7, 100, 20, 30));
        assert_ne!(groups, draw(8, 100, 20, 30));
        for group in &groups {
            assert_eq!(group.len(), 30);
            assert!(group.windows(2).all(|pair| pair[0] < pair[1]), "{group:?}");
            assert!(group.iter().all(|&user| user < 100));
        }
        assert_ne!(groups[0], groups[1], "each group drawn anew");
    }

    #[test]
    fn a_group_holds_at_most_every_user() {
        assert_eq!(draw(1, 5, 2, 9), vec![vec![0, 1, 2, 3, 4]; 2]);
    }
}
