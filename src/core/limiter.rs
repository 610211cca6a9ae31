//! Per-sender rate limit on what users make Herald do beyond its presence
//! book: `message.received` and `presence.changed` events. One user
//! flooding the component cannot flood the broker or the applications
//! listening; the presence book itself is always updated, since delivery
//! accuracy depends on it. A token bucket per user; pure bookkeeping.

use std::collections::HashMap;
use std::time::Duration;

use std::time::Instant;
use xmpp_parsers::jid::BareJid;

pub struct SenderLimiter {
    buckets: HashMap<BareJid, Bucket>,
    per_second: f64,
    burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl SenderLimiter {
    /// `per_second` events per user on average, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        SenderLimiter {
            buckets: HashMap::new(),
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
        }
    }

    /// Whether `user` may cause one more event now.
    pub fn allow(&mut self, user: &BareJid, now: Instant) -> bool {
        let (per_second, burst) = (self.per_second, self.burst);
        let bucket = self.buckets.entry(user.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets users whose bucket has refilled: they are back to a full
    /// burst anyway. Keeps memory bounded by the users active recently.
    pub fn sweep(&mut self, now: Instant) {
        let refill = Duration::from_secs_f64(self.burst / self.per_second.max(f64::MIN_POSITIVE));
        self.buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.at) < refill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    #[test]
    fn a_burst_then_the_rate_and_others_are_not_affected() {
        let mut limiter = SenderLimiter::new(10, 5);
        let start = Instant::now();
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
    fn refilled_buckets_are_swept() {
        let mut limiter = SenderLimiter::new(10, 5);
        let start = Instant::now();
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
