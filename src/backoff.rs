//! Exponential backoff with jitter, so that many Herald instances (or one
//! in a crash loop) do not hammer a server or broker that is coming back.

use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    current: Duration,
    max: Duration,
}

impl Backoff {
    const START: Duration = Duration::from_millis(250);

    pub fn new(max: Duration) -> Self {
        Backoff {
            current: Self::START.min(max),
            max,
        }
    }

    /// The pause before the next attempt; each call doubles the base.
    pub fn next(&mut self) -> Duration {
        let base = self.next_steady();
        // Jitter in [0.5, 1.0) of the base, from the clock's low bits: no RNG needed.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        base / 2 + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }

    /// The base pause before the next attempt, without jitter: for retries
    /// on one connection, where no herd forms and the core's time must
    /// stay deterministic.
    pub fn next_steady(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        base
    }

    pub fn reset(&mut self) {
        self.current = Self::START.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let max = Duration::from_secs(2);
        let mut backoff = Backoff::new(max);
        let pauses: Vec<Duration> = (0..8).map(|_| backoff.next()).collect();
        assert!(pauses[0] >= Duration::from_millis(125) && pauses[0] < Duration::from_millis(250));
        assert!(pauses.iter().all(|p| *p < max));
        assert!(pauses[7] >= max / 2, "{pauses:?}");
        backoff.reset();
        assert!(backoff.next() < Duration::from_millis(250));
    }
}
