//! Moments on the core's monotonic clock, small enough to keep per user:
//! when a user came online, changed their `<show/>` or went offline.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// A moment on the core's clock, to the millisecond. An `Instant` takes 16
/// bytes and the presence book keeps two moments per online user; this
/// takes 8, and, never zero, 8 as an `Option` too (the subscribers keep one
/// per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(
    /// Milliseconds since the clock's origin, plus one.
    NonZeroU64,
);

/// Turns the core's `Instant`s into [`Stamp`]s and back.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// Stamps count from `origin` (the core's start).
    pub fn new(origin: Instant) -> Self {
        Clock { origin }
    }

    /// `now`, to the millisecond below (a time before the origin reads as
    /// the origin).
    pub fn stamp(&self, now: Instant) -> Stamp {
        let millis = now.saturating_duration_since(self.origin).as_millis();
        let millis = u64::try_from(millis).unwrap_or(u64::MAX);
        Stamp(NonZeroU64::MIN.saturating_add(millis))
    }

    /// The `Instant` a stamp stands for.
    pub fn instant(&self, stamp: Stamp) -> Instant {
        self.origin + Duration::from_millis(stamp.0.get() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_its_instant_to_the_millisecond_in_eight_bytes() {
        let origin = Instant::now();
        let clock = Clock::new(origin);
        let now = origin + Duration::from_micros(1_234_567);
        assert_eq!(
            clock.instant(clock.stamp(now)),
            origin + Duration::from_millis(1_234)
        );
        assert_eq!(clock.instant(clock.stamp(origin)), origin);
        assert!(clock.stamp(origin) < clock.stamp(now));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }
}
