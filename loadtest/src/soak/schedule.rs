//! What a soak does and when, drawn from one seed: the faults (kind and
//! time) and the jobs (size and recipients). The same seed gives the same
//! schedule, so a failing run can be replayed.

use std::time::Duration;

use clap::ValueEnum;
use herald_testkit::draw::Draw;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum FaultKind {
    /// SIGKILL of Herald, started again at once on the same config and store.
    HeraldKill,
    /// The XMPP server stopped and started again (its users are logged out).
    ServerRestart,
    /// The component stream cut in the middle of a stanza.
    StreamCut,
    /// SIGKILL of the soak's private RabbitMQ node, started again at once
    /// on the same data directory.
    BrokerKill,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::HeraldKill => "herald-kill",
            FaultKind::ServerRestart => "server-restart",
            FaultKind::StreamCut => "stream-cut",
            FaultKind::BrokerKill => "broker-kill",
        }
    }
}

/// One fault: what, when (from the first job), and for a stream cut which
/// direction and which stanza of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub at: Duration,
    pub kind: FaultKind,
    /// Stream cuts: cut Herald's writing (else the server's), in the
    /// `nth` stanza from the arming on.
    pub herald_side: bool,
    pub nth: usize,
}

/// Faults at random gaps of `gap_secs` (inclusive range) over `secs`
/// seconds, each of a kind drawn from `kinds`.
pub fn faults(draw: &mut Draw, kinds: &[FaultKind], secs: u64, gap_secs: (u64, u64)) -> Vec<Fault> {
    let mut faults = Vec::new();
    if kinds.is_empty() {
        return faults;
    }
    let mut at = 0;
    loop {
        at += draw.between(gap_secs.0, gap_secs.1);
        if at >= secs {
            return faults;
        }
        let kind = pick(draw, kinds);
        let herald_side = draw.between(0, 1) == 0;
        let nth = draw.between(1, 100) as usize;
        faults.push(Fault {
            at: Duration::from_secs(at),
            kind,
            herald_side,
            nth,
        });
    }
}

/// A kind from `kinds`, server restarts half as often as the others: each
/// logs every user out for the length of a reboot, and the stretches
/// between them are what the loss check holds to.
fn pick(draw: &mut Draw, kinds: &[FaultKind]) -> FaultKind {
    let weight = |kind: &FaultKind| {
        if *kind == FaultKind::ServerRestart {
            1
        } else {
            2
        }
    };
    let mut ticket = draw.between(1, kinds.iter().map(weight).sum());
    for kind in kinds {
        if ticket <= weight(kind) {
            return *kind;
        }
        ticket -= weight(kind);
    }
    unreachable!("the tickets add up to the weights")
}

/// A job's recipients: `count` consecutive swarm users from `first`
/// (wrapping), so they are distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    pub first: usize,
    pub count: usize,
}

impl Audience {
    pub fn users(self, swarm: usize) -> impl Iterator<Item = usize> {
        (0..self.count).map(move |k| (self.first + k) % swarm)
    }
}

/// Mixed sizes: most jobs to one user, some to tens, a few to thousands
/// (all capped at the swarm's size).
pub fn audience(draw: &mut Draw, swarm: usize) -> Audience {
    let class = draw.between(0, 99);
    let count = match class {
        0..=79 => 1,
        80..=97 => draw.between(10, 60) as usize,
        _ => draw.between(1_000, 3_000) as usize,
    };
    Audience {
        first: draw.between(0, swarm as u64 - 1) as usize,
        count: count.min(swarm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let kinds = [FaultKind::HeraldKill, FaultKind::StreamCut];
        let a = faults(&mut Draw::new(7), &kinds, 300, (10, 40));
        let b = faults(&mut Draw::new(7), &kinds, 300, (10, 40));
        assert_eq!(a, b);
        assert!(!a.is_empty());
        assert_ne!(a, faults(&mut Draw::new(8), &kinds, 300, (10, 40)));
    }

    #[test]
    fn faults_fall_inside_the_run() {
        let kinds = [FaultKind::ServerRestart];
        let all = faults(&mut Draw::new(1), &kinds, 100, (5, 20));
        assert!(all.iter().all(|f| f.at < Duration::from_secs(100)));
        assert!(all.windows(2).all(|w| w[0].at < w[1].at));
    }

    #[test]
    fn every_kind_asked_for_is_drawn() {
        let kinds = [
            FaultKind::HeraldKill,
            FaultKind::ServerRestart,
            FaultKind::StreamCut,
            FaultKind::BrokerKill,
        ];
        let all = faults(&mut Draw::new(2), &kinds, 3_000, (10, 40));
        for kind in kinds {
            assert!(all.iter().any(|f| f.kind == kind), "no {}", kind.name());
        }
    }

    #[test]
    fn audiences_are_capped_at_the_swarm() {
        let mut draw = Draw::new(3);
        for _ in 0..1_000 {
            let audience = audience(&mut draw, 500);
            assert!((1..=500).contains(&audience.count) && audience.first < 500);
        }
    }
}
