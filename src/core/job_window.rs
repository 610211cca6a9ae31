//! How many jobs may be in flight (taken and not yet settled): enough to
//! keep the server and the broker busy, and no more, like TCP's
//! bandwidth-delay product. The rate is the most jobs settled per second in
//! any sample of the last two seconds; the delay is the shortest time from
//! taken to settled in the last ten; the window is twice their product,
//! between a floor and `amqp.prefetch`. When the server answers slowly (a
//! presence flood on ejabberd delays the pings behind each burst) the delay
//! grows and the window with it, where a fixed window would leave Herald
//! idle; when it answers fast the window stays small, so the server's
//! queue, and the wait of whatever comes next, stays short.
//!
//! A full window makes its own queue at the server, and a delay measured
//! behind that queue would grow the window without end. So, as BBR does,
//! every ten seconds the window drops to its floor for twice the shortest
//! delay (at least 100 ms, at most a second): the queue drains and the
//! jobs taken then measure the server's own delay. Pure arithmetic on the
//! times the core is given.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A rate sample covers at least this long.
const SAMPLE: Duration = Duration::from_millis(100);
const RATE_HORIZON: Duration = Duration::from_secs(2);
/// As long as between probes: each horizon holds a probe's delays.
const DELAY_HORIZON: Duration = PROBE_EVERY;
/// The window never shrinks below this (or `max`, if smaller).
const FLOOR: usize = 64;
/// Where it starts (or `max`, if smaller), before anything is measured:
/// growing from the floor would cost a short burst most of its time.
const INITIAL: usize = 256;
const PROBE_EVERY: Duration = Duration::from_secs(10);
const PROBE_SHORTEST: Duration = Duration::from_millis(100);
const PROBE_LONGEST: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct JobWindow {
    floor: usize,
    max: usize,
    current: usize,
    sample_start: Option<Instant>,
    settled_in_sample: u32,
    /// (when, jobs per second), decreasing rates: the front is the most.
    rates: VecDeque<(Instant, f64)>,
    /// (when, delay), increasing delays: the front is the least.
    delays: VecDeque<(Instant, Duration)>,
    next_probe: Option<Instant>,
    probe_until: Option<Instant>,
}

impl JobWindow {
    pub fn new(max: usize) -> Self {
        JobWindow {
            floor: FLOOR.min(max),
            max,
            current: INITIAL.min(max),
            sample_start: None,
            settled_in_sample: 0,
            rates: VecDeque::new(),
            delays: VecDeque::new(),
            next_probe: None,
            probe_until: None,
        }
    }

    /// Jobs that may be in flight at `now`.
    pub fn size(&self, now: Instant) -> usize {
        match self.probe_until {
            Some(until) if now < until => self.floor,
            _ => self.current,
        }
    }

    /// When a probe ends and the window grows back, for a timer.
    pub fn changes_at(&self, now: Instant) -> Option<Instant> {
        self.probe_until.filter(|&until| now < until)
    }

    /// A job taken at `taken` was settled at `now`.
    pub fn settled(&mut self, taken: Instant, now: Instant) {
        let delay = now.saturating_duration_since(taken);
        let next_probe = *self.next_probe.get_or_insert(now + PROBE_EVERY);
        if now >= next_probe {
            let shortest = self.delays.front().map_or(delay, |&(_, d)| d.min(delay));
            let probe = (2 * shortest).clamp(PROBE_SHORTEST, PROBE_LONGEST);
            self.probe_until = Some(now + probe);
            self.next_probe = Some(now + PROBE_EVERY);
        }
        while self.delays.back().is_some_and(|&(_, d)| d >= delay) {
            self.delays.pop_back();
        }
        self.delays.push_back((now, delay));
        let start = *self.sample_start.get_or_insert(taken.min(now));
        self.settled_in_sample += 1;
        let elapsed = now.saturating_duration_since(start);
        if elapsed < SAMPLE {
            return;
        }
        let rate = f64::from(self.settled_in_sample) / elapsed.as_secs_f64();
        self.sample_start = Some(now);
        self.settled_in_sample = 0;
        while self.rates.back().is_some_and(|&(_, r)| r <= rate) {
            self.rates.pop_back();
        }
        self.rates.push_back((now, rate));
        while self
            .rates
            .front()
            .is_some_and(|&(at, _)| at + RATE_HORIZON < now)
        {
            self.rates.pop_front();
        }
        while self
            .delays
            .front()
            .is_some_and(|&(at, _)| at + DELAY_HORIZON + PROBE_LONGEST < now)
        {
            self.delays.pop_front();
        }
        let (Some(&(_, rate)), Some(&(_, delay))) = (self.rates.front(), self.delays.front())
        else {
            return;
        };
        let product = (2.0 * rate * delay.as_secs_f64()).ceil() as usize;
        self.current = product.clamp(self.floor, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settles jobs one at a time, each `delay` after it was taken, `per_sec`
    /// of them a second, for `secs`; returns the window at the end.
    fn run(
        window: &mut JobWindow,
        start: Instant,
        per_sec: u32,
        delay_ms: u64,
        secs: u32,
    ) -> Instant {
        let step = Duration::from_secs(1) / per_sec;
        let mut now = start;
        for _ in 0..per_sec * secs {
            now += step;
            window.settled(now - Duration::from_millis(delay_ms), now);
        }
        now
    }

    #[test]
    fn the_window_is_twice_the_rate_times_the_shortest_delay_within_its_bounds() {
        let mut window = JobWindow::new(4096);
        assert_eq!(window.current, 256, "starts where nothing is measured yet");
        let now = run(&mut window, Instant::now(), 5_000, 100, 3);
        // 5,000 jobs/s × 0.1 s × 2
        assert!((990..=1010).contains(&window.current), "{}", window.current);
        // The server answers slower under a flood: the window follows.
        run(&mut window, now, 5_000, 400, 12);
        assert!(
            (3_990..=4_010).contains(&window.current),
            "{}",
            window.current
        );
    }

    #[test]
    fn a_fast_server_keeps_the_window_at_its_floor_and_max_caps_it() {
        let mut window = JobWindow::new(4096);
        run(&mut window, Instant::now(), 1_000, 5, 3);
        assert_eq!(window.current, 64);
        let mut capped = JobWindow::new(256);
        run(&mut capped, Instant::now(), 5_000, 400, 3);
        assert_eq!(capped.current, 256);
        assert_eq!(JobWindow::new(10).current, 10, "a prefetch under the floor");
    }

    #[test]
    fn old_slow_samples_age_out() {
        let mut window = JobWindow::new(4096);
        let now = run(&mut window, Instant::now(), 5_000, 400, 3);
        assert!(window.current > 3_000);
        // The flood is over: the shortest delay of the last ten seconds
        // is the short one at once, and the window shrinks.
        run(&mut window, now, 5_000, 20, 3);
        assert!((190..=210).contains(&window.current), "{}", window.current);
    }

    #[test]
    fn every_ten_seconds_the_window_drops_to_its_floor_for_twice_the_shortest_delay() {
        let mut window = JobWindow::new(4096);
        let start = Instant::now();
        let now = run(&mut window, start, 5_000, 100, 10);
        assert!(window.size(now) > 900);
        assert_eq!(window.changes_at(now), None, "not yet");
        // The settle that comes ten seconds after the first starts a probe.
        let probe = start + PROBE_EVERY + Duration::from_millis(1);
        window.settled(probe - Duration::from_millis(100), probe);
        assert_eq!(window.size(probe), 64, "the server's queue drains");
        let end = probe + Duration::from_millis(200);
        assert_eq!(window.changes_at(probe), Some(end));
        assert_eq!(window.size(end - Duration::from_millis(1)), 64);
        assert!(window.size(end) > 900);
        assert_eq!(window.changes_at(end), None);
    }
}
