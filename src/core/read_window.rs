//! How many stanzas may be written and not yet proven read by the server:
//! enough to keep it reading, and no more than it reads in the target time
//! (`xmpp.server_queue_ms`) beyond that, so that whatever is queued next,
//! an urgent job's message behind a big job's slices, waits about that long.
//!
//! Barriers measure two things. The server's read rate: a ping queued with
//! `ahead` stanzas unread before it, answered after `roundtrip`, shows the
//! server read `ahead / roundtrip` stanzas a second (the most of those in
//! the last two seconds counts). And the base roundtrip, what a ping takes
//! with almost nothing of ours ahead of it: the server's other work (a
//! presence flood) and the way back. Stanzas the server has read but whose
//! proof is still on its way back cost nothing to what comes next, so the
//! window is the rate times the base plus the target: the target is what
//! the server's own queue holds. A window larger than that lengthens the
//! roundtrip, not the rate, so the estimate does not feed on itself.
//!
//! A base older than ten seconds (or none yet), or older than a second
//! when nothing is unread, is measured again, as BBR measures its shortest
//! roundtrip: the window drops below what a rate is measured by until a
//! ping with little ahead of it has been answered (one base roundtrip).
//! Pure arithmetic on the times the core is given.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const RATE_HORIZON: Duration = Duration::from_secs(2);
const BASE_HORIZON: Duration = Duration::from_secs(10);
/// With nothing unread, a base older than this is measured again first:
/// one taken while the server was busy with something else (users
/// logging in by the thousand) would size the window for a queue that is
/// gone, and a probe then costs nothing but a roundtrip.
const FRESH: Duration = Duration::from_secs(1);
/// A ping with this many stanzas ahead of it or more measures the server's
/// read rate; one with fewer, its base roundtrip.
const MIN_AHEAD: u64 = 256;
/// While the base is measured again: fewer stanzas ahead than a rate needs.
const PROBE: usize = MIN_AHEAD as usize / 2;
/// The window never shrinks below this (or the cap, if smaller): twice the
/// least a rate is measured by, so that a full window keeps measuring.
const FLOOR: usize = 2 * MIN_AHEAD as usize;
/// Where it starts (or the cap, if smaller), before any rate is measured.
const INITIAL: usize = 4096;

#[derive(Debug)]
pub struct ReadWindow {
    target: Duration,
    floor: usize,
    cap: usize,
    current: usize,
    /// (when, stanzas per second), decreasing rates: the front is the most.
    rates: VecDeque<(Instant, f64)>,
    /// (when, roundtrip), increasing: the front is the least.
    bases: VecDeque<(Instant, Duration)>,
    /// When the base was last measured; `None` before the first time,
    /// when it is measured first.
    based_at: Option<Instant>,
}

impl ReadWindow {
    /// `target`: how long the server may take to read what waits for it;
    /// `cap`: the most stanzas unread whatever its rate.
    pub fn new(target: Duration, cap: usize) -> Self {
        ReadWindow {
            target,
            floor: FLOOR.min(cap),
            cap,
            current: INITIAL.min(cap),
            rates: VecDeque::new(),
            bases: VecDeque::new(),
            based_at: None,
        }
    }

    /// Stanzas that may be unread at `now`; `drained`: none are.
    pub fn size(&self, now: Instant, drained: bool) -> usize {
        let horizon = if drained { FRESH } else { BASE_HORIZON };
        match self.based_at {
            Some(at) if now < at + horizon => self.current,
            _ => PROBE.min(self.cap),
        }
    }

    /// A ping with `ahead` stanzas unread before it was answered after
    /// `roundtrip`, at `now`.
    pub fn answered(&mut self, ahead: u64, roundtrip: Duration, now: Instant) {
        if ahead < MIN_AHEAD {
            while self.bases.back().is_some_and(|&(_, b)| b >= roundtrip) {
                self.bases.pop_back();
            }
            self.bases.push_back((now, roundtrip));
            self.based_at = Some(now);
        } else if !roundtrip.is_zero() {
            let rate = ahead as f64 / roundtrip.as_secs_f64();
            while self.rates.back().is_some_and(|&(_, r)| r <= rate) {
                self.rates.pop_back();
            }
            self.rates.push_back((now, rate));
        }
        expire(&mut self.rates, now, RATE_HORIZON);
        expire(&mut self.bases, now, BASE_HORIZON);
        let Some(&(_, rate)) = self.rates.front() else {
            return;
        };
        let base = self.bases.front().map_or(Duration::ZERO, |&(_, b)| b);
        let size = rate * (base + self.target).as_secs_f64();
        self.current = (size as usize).clamp(self.floor, self.cap);
    }
}

/// Drops the samples `horizon` old, keeping the newest: a sample stands
/// until a newer one replaces it.
fn expire<T>(samples: &mut VecDeque<(Instant, T)>, now: Instant, horizon: Duration) {
    while samples.len() > 1 && samples.front().is_some_and(|&(at, _)| at + horizon <= now) {
        samples.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(50);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A window whose base was just measured as `base`.
    fn based(base: Duration, now: Instant) -> ReadWindow {
        let mut window = ReadWindow::new(TARGET, 20_000);
        window.answered(0, base, now);
        window
    }

    #[test]
    fn measures_the_base_first_then_starts_at_its_initial_size() {
        let now = Instant::now();
        let mut window = ReadWindow::new(TARGET, 20_000);
        assert_eq!(window.size(now, false), PROBE);
        assert_eq!(ReadWindow::new(TARGET, 100).size(now, false), 100);
        window.answered(PROBE as u64, ms(1), now);
        assert_eq!(window.size(now, false), INITIAL);
    }

    #[test]
    fn follows_the_read_rate_times_the_target() {
        let start = Instant::now();
        let mut window = based(Duration::ZERO, start);
        // 2,000 stanzas read in 100 ms: 20,000 a second, 1,000 in 50 ms.
        window.answered(2000, ms(100), start);
        assert_eq!(window.size(start, false), 1000);
        // A longer roundtrip behind as many stanzas: a slower server.
        let later = start + RATE_HORIZON;
        window.answered(2000, ms(125), later);
        assert_eq!(window.size(later, false), 800);
    }

    #[test]
    fn adds_the_base_roundtrip_at_the_read_rate() {
        let start = Instant::now();
        // A ping with little ahead: the server takes 150 ms anyway.
        let mut window = based(ms(150), start);
        window.answered(2000, ms(100), start);
        assert_eq!(window.size(start, false), 4000, "20,000/s × (150 + 50) ms");
        // A shorter base replaces it.
        window.answered(0, ms(50), start + ms(1));
        assert_eq!(window.size(start, false), 2000);
    }

    #[test]
    fn keeps_the_most_rate_of_the_horizon_and_the_newest_after_it() {
        let start = Instant::now();
        let mut window = based(Duration::ZERO, start);
        window.answered(4000, ms(100), start);
        window.answered(1000, ms(100), start + ms(500));
        assert_eq!(
            window.size(start, false),
            2000,
            "the better rate of the two"
        );
        let later = start + RATE_HORIZON + ms(500);
        window.answered(300, ms(20), later);
        assert_eq!(window.size(later, false), 750, "the better one expired");
    }

    #[test]
    fn a_stale_base_is_measured_again_below_a_rate_s_worth() {
        let start = Instant::now();
        let mut window = based(ms(10), start);
        window.answered(4000, ms(100), start);
        let stale = start + BASE_HORIZON;
        assert_eq!(window.size(stale, false), PROBE);
        window.answered(PROBE as u64, ms(30), stale);
        assert_eq!(window.size(stale, false), 3200, "40,000/s × (30 + 50) ms");
    }

    #[test]
    fn instant_answers_measure_no_rate() {
        let start = Instant::now();
        let mut window = based(ms(1), start);
        window.answered(10_000, Duration::ZERO, start);
        assert_eq!(window.size(start, false), INITIAL);
    }

    #[test]
    fn stays_between_floor_and_cap() {
        let start = Instant::now();
        let mut window = based(Duration::ZERO, start);
        window.answered(10_000_000, ms(1), start);
        assert_eq!(window.size(start, false), 20_000);
        let mut window = based(Duration::ZERO, start);
        window.answered(300, ms(10_000), start);
        assert_eq!(window.size(start, false), FLOOR);
    }

    #[test]
    fn with_nothing_unread_a_base_older_than_a_second_is_measured_again() {
        let start = Instant::now();
        // Measured while the server was busy: 800 ms.
        let mut window = based(ms(800), start);
        window.answered(4000, ms(100), start);
        let later = start + FRESH;
        assert_eq!(window.size(later, false), 20_000, "34,000, capped");
        assert_eq!(window.size(later, true), PROBE);
        window.answered(10, ms(2), later);
        assert_eq!(window.size(later, true), 2080, "40,000/s × (2 + 50) ms");
    }
}
