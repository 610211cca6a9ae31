//! Where the XMPP side of Herald stands. A new stream knows nothing of the
//! old one's presence, so jobs wait until it is rebuilt: every subscriber
//! is probed, a barrier after the probes proves the server read them, and a
//! short settle lets late answers arrive (ejabberd answers a probe from the
//! user's session, after the barrier's pong). Users online on the last
//! stream who stay silent are probed once more (Probing and Settling again).

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No stream. `was_ready`: the last stream got as far as taking jobs
    /// (the shell reconnects at once after such a stream, and backs off
    /// after one that broke early).
    Down { was_ready: bool },
    /// Subscribers are probed; waiting for the barrier after the probes.
    Probing,
    /// The probes were read and answered; late answers may come until then.
    Settling { until: Instant },
    /// Presence is rebuilt: jobs are taken.
    Ready,
    /// Shutdown was asked: no more jobs; the server may confirm what was
    /// written until `until`, then the rest goes back to the queue.
    Draining { until: Instant },
    /// Shutdown, the stream done with: reports of jobs the server read may
    /// be committed and confirmed until `until`; the broker redelivers
    /// whatever is left (and finds it remembered).
    Closing { until: Instant },
}

impl Phase {
    pub fn takes_jobs(self) -> bool {
        self == Phase::Ready
    }

    pub fn has_stream(self) -> bool {
        !matches!(self, Phase::Down { .. } | Phase::Closing { .. })
    }
}
