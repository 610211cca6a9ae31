//! Jobs held until the presence of their unknown recipients is learnt.
//! A job that names users Herald has never heard of waits while they are
//! probed; jobs taken after it wait behind it, so jobs still go out in the
//! order they were taken. Jobs behind the first are examined as they come,
//! so that their probes travel while the first waits. Pure bookkeeping: the
//! event loop examines jobs, sends probes and fans jobs out.

use std::collections::VecDeque;

use tokio::time::Instant;

/// Where a held job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not examined (on this stream) for unknown recipients.
    New,
    /// Examined; it had no unknown recipient.
    Examined,
    /// Its probes are out; the barrier `ticket` tells when they are answered.
    Probing(u64),
    /// Its probes were answered; late answers may come until then.
    Settling(Instant),
}

/// What the event loop is to do with the first held job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Look for unknown recipients, and fan it out if there are none.
    Examine,
    /// Fan it out: its recipients are known or were probed.
    Run,
    /// Nothing yet: its probes are unanswered or settling.
    Wait,
}

#[derive(Debug)]
pub struct HeldJobs<T> {
    queue: VecDeque<(T, Stage)>,
    next_ticket: u64,
}

impl<T> Default for HeldJobs<T> {
    fn default() -> Self {
        HeldJobs {
            queue: VecDeque::new(),
            next_ticket: 0,
        }
    }
}

impl<T> HeldJobs<T> {
    pub fn push(&mut self, job: T) {
        self.queue.push_back((job, Stage::New));
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// The first job and what to do with it at `now`.
    pub fn first(&self, now: Instant) -> Option<(&T, Turn)> {
        let (job, stage) = self.queue.front()?;
        let turn = match stage {
            Stage::New => Turn::Examine,
            Stage::Examined => Turn::Run,
            Stage::Settling(at) if *at <= now => Turn::Run,
            Stage::Probing(_) | Stage::Settling(_) => Turn::Wait,
        };
        Some((job, turn))
    }

    pub fn pop_first(&mut self) -> Option<T> {
        self.queue.pop_front().map(|(job, _)| job)
    }

    /// The jobs behind the first that are not examined yet, by position.
    pub fn unexamined_behind(&self) -> Vec<usize> {
        (1..self.queue.len())
            .filter(|&i| self.queue[i].1 == Stage::New)
            .collect()
    }

    pub fn get(&self, position: usize) -> Option<&T> {
        self.queue.get(position).map(|(job, _)| job)
    }

    /// The job at `position` had no unknown recipient.
    pub fn examined(&mut self, position: usize) {
        if let Some(entry) = self.queue.get_mut(position) {
            entry.1 = Stage::Examined;
        }
    }

    /// Probes went out for the job at `position`; returns the ticket to
    /// pass to [`HeldJobs::answered`] once a barrier after them is answered.
    pub fn probing(&mut self, position: usize) -> u64 {
        self.next_ticket += 1;
        if let Some(entry) = self.queue.get_mut(position) {
            entry.1 = Stage::Probing(self.next_ticket);
        }
        self.next_ticket
    }

    /// The probes of `ticket` (and earlier ones: barriers are answered in
    /// order) are answered; their jobs may run from `settled_at`.
    pub fn answered(&mut self, ticket: u64, settled_at: Instant) {
        for (_, stage) in &mut self.queue {
            if matches!(stage, Stage::Probing(t) if *t <= ticket) {
                *stage = Stage::Settling(settled_at);
            }
        }
    }

    /// When the first job stops waiting for late answers, if it is settling.
    pub fn settles_at(&self) -> Option<Instant> {
        match self.queue.front() {
            Some((_, Stage::Settling(at))) => Some(*at),
            _ => None,
        }
    }

    /// The stream was lost, and with it probes and their answers: every
    /// held job is examined again on the next stream.
    pub fn restart(&mut self) {
        for (_, stage) in &mut self.queue {
            *stage = Stage::New;
        }
    }

    /// Removes the jobs `keep` refuses, in order.
    pub fn drain(&mut self) -> Vec<T> {
        self.queue.drain(..).map(|(job, _)| job).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_new_job_is_examined_first_and_an_examined_one_runs() {
        let mut held = HeldJobs::default();
        let now = Instant::now();
        held.push("a");
        assert_eq!(held.first(now), Some((&"a", Turn::Examine)));
        held.examined(0);
        assert_eq!(held.first(now), Some((&"a", Turn::Run)));
        assert_eq!(held.pop_first(), Some("a"));
        assert!(held.is_empty());
    }

    #[test]
    fn a_probing_job_holds_the_ones_behind_it_until_its_probes_settle() {
        let mut held = HeldJobs::default();
        let now = Instant::now();
        let settle = Duration::from_millis(300);
        held.push("probing");
        held.push("known");
        let ticket = held.probing(0);
        assert_eq!(held.unexamined_behind(), vec![1]);
        held.examined(1);
        assert!(held.unexamined_behind().is_empty());
        assert_eq!(held.first(now), Some((&"probing", Turn::Wait)));

        held.answered(ticket, now + settle);
        assert_eq!(held.settles_at(), Some(now + settle));
        assert_eq!(held.first(now), Some((&"probing", Turn::Wait)));
        assert_eq!(held.first(now + settle), Some((&"probing", Turn::Run)));
        assert_eq!(held.pop_first(), Some("probing"));
        assert_eq!(held.first(now), Some((&"known", Turn::Run)));
    }

    #[test]
    fn an_answer_settles_its_ticket_and_earlier_ones_only() {
        let mut held = HeldJobs::default();
        let now = Instant::now();
        for job in ["a", "b", "c"] {
            held.push(job);
        }
        let first = held.probing(0);
        let second = held.probing(1);
        let third = held.probing(2);
        assert!(first < second && second < third);
        held.answered(second, now);
        assert_eq!(held.first(now), Some((&"a", Turn::Run)));
        held.pop_first();
        assert_eq!(held.first(now), Some((&"b", Turn::Run)));
        held.pop_first();
        assert_eq!(held.first(now), Some((&"c", Turn::Wait)));
    }

    #[test]
    fn a_lost_stream_makes_every_held_job_new_again_in_order() {
        let mut held = HeldJobs::default();
        let now = Instant::now();
        held.push("a");
        held.push("b");
        let ticket = held.probing(0);
        held.examined(1);
        held.restart();
        held.answered(ticket, now);
        assert_eq!(held.first(now), Some((&"a", Turn::Examine)));
        assert_eq!(held.unexamined_behind(), vec![1]);
    }
}
