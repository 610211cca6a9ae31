//! Per-sender rate limit on what users make Herald do beyond its presence
//! book: `message.received` and `presence.changed` events. One user
//! flooding the component cannot flood the broker or the applications
//! listening; the presence book itself is always updated, since delivery
//! accuracy depends on it. A token bucket per user; pure bookkeeping.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use std::time::Instant;
use xmpp_parsers::jid::BareJid;

use super::id_map::IdMap;
use crate::presence::{Clock, Stamp};

/// Token buckets by user. A login storm gives every user who logs in a
/// bucket until it refills (seconds): a million of them, keyed by a copy
/// of each JID, held 150 bytes per user. Keyed by a keyed hash of the JID
/// instead (64 bits: two users sharing a bucket by chance is as likely as
/// guessing the hasher's random key), with the time in a [`Stamp`], an
/// entry takes 24 bytes and no allocation of its own.
pub struct SenderLimiter {
    buckets: IdMap<u64, Bucket>,
    users: RandomState,
    clock: Clock,
    per_second: f64,
    burst: f64,
}

struct Bucket {
    tokens: f32,
    at: Stamp,
}

impl SenderLimiter {
    /// `per_second` events per user on average, `burst` at once; times on
    /// the core's `clock`.
    pub fn new(per_second: u32, burst: u32, clock: Clock) -> Self {
        SenderLimiter {
            buckets: IdMap::default(),
            users: RandomState::new(),
            clock,
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
        }
    }

    /// Whether `user` may cause one more event now.
    pub fn allow(&mut self, user: &BareJid, now: Instant) -> bool {
        let (per_second, burst) = (self.per_second, self.burst);
        let at = self.clock.stamp(now);
        let bucket = self
            .buckets
            .entry(self.users.hash_one(user.as_str()))
            .or_insert(Bucket {
                tokens: burst as f32,
                at,
            });
        // Both ends to the millisecond: measured from `now`, the part of a
        // millisecond `at` drops would be refilled again at every call.
        let elapsed = self
            .clock
            .instant(at)
            .saturating_duration_since(self.clock.instant(bucket.at))
            .as_secs_f64();
        let tokens = (f64::from(bucket.tokens) + elapsed * per_second).min(burst);
        bucket.at = at;
        let allowed = tokens >= 1.0;
        bucket.tokens = if allowed { tokens - 1.0 } else { tokens } as f32;
        allowed
    }

    /// Forgets users whose bucket has refilled: they are back to a full
    /// burst anyway. Keeps memory bounded by the users active recently:
    /// the table gives its room back once it is mostly empty (a table
    /// keeps its size when entries leave, and a login storm grows it to
    /// every user).
    pub fn sweep(&mut self, now: Instant) {
        let refill = Duration::from_secs_f64(self.burst / self.per_second.max(f64::MIN_POSITIVE));
        let clock = self.clock;
        self.buckets
            .retain(|_, bucket| now.saturating_duration_since(clock.instant(bucket.at)) < refill);
        if self.buckets.len() * 4 < self.buckets.capacity() {
            self.buckets.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    fn limiter(per_second: u32, burst: u32, origin: Instant) -> SenderLimiter {
        SenderLimiter::new(per_second, burst, Clock::new(origin))
    }

    #[test]
    fn a_burst_then_the_rate_and_others_are_not_affected() {
        let start = Instant::now();
        let mut limiter = limiter(10, 5, start);
        let flooder = jid("flood@localhost");
        let allowed = (0..100).filter(|_| limiter.allow(&flooder, start)).count();
        assert_eq!(allowed, 5, "the burst");
        assert!(
            limiter.allow(&jid("calm@localhost"), start),
            "others keep theirs"
        );
        let later = start + Duration::from_millis(500);
        let allowed = (0..100).filter(|_| limiter.allow(&flooder, later)).count();
        assert_eq!(allowed, 5, "10 per second for half a second");
    }

    #[test]
    fn a_storm_of_users_leaves_a_small_table_once_their_buckets_refill() {
        let start = Instant::now();
        let mut limiter = limiter(10, 5, start);
        for i in 0..10_000 {
            assert!(limiter.allow(&jid(&format!("u{i}@localhost")), start));
        }
        let storm = limiter.buckets.capacity();
        assert!(storm >= 10_000);
        limiter.allow(&jid("late@localhost"), start + Duration::from_millis(400));
        limiter.sweep(start + Duration::from_millis(600));
        assert_eq!(limiter.buckets.len(), 1);
        assert!(limiter.buckets.capacity() < storm / 100, "the table shrank");
        assert_eq!(std::mem::size_of::<Bucket>(), 16);
    }

    #[test]
    fn refilled_buckets_are_swept() {
        let start = Instant::now();
        let mut limiter = limiter(10, 5, start);
        limiter.allow(&jid("a@localhost"), start);
        limiter.allow(&jid("b@localhost"), start + Duration::from_millis(400));
        limiter.sweep(start + Duration::from_millis(600));
        assert_eq!(
            limiter.buckets.len(),
            1,
            "a refilled after 500 ms; b not yet"
        );
    }
}
