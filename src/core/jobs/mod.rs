//! Every job Herald has taken and not yet settled with the broker, and the
//! one place where a job's stage is kept. A job goes
//!
//! ```text
//! Held(New) ─▶ Held(Probing) ─▶ Held(Settling) ─┐
//!     │                                          ▼
//!     └──────▶ Held(Examined) ──────▶ examined ─▶ Fanning ─▶ Written ─▶ [Naming] ─▶ Storing ─▶ Reporting ─▶ acknowledged
//!                                            │                                                  (report confirmed)
//!                                            └─▶ Reporting (duplicate, dead letter) ─▶ acknowledged
//! ```
//!
//! and leaves the table when it is acknowledged or requeued. Held jobs go
//! out in the order they were taken: a job fanning out (one at a time, as
//! the stream takes its slices) or waiting for its probes holds the ones
//! behind it, which are examined early so that their own probes travel
//! meanwhile. Acknowledgements go in delivery order ([`AckWindow`]).

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use super::ack_window::{Ack, AckWindow};
use super::id_map::IdMap;
use super::io::{Delivery, JobId, Lane, Output, Outputs};
use crate::handler::{Deferral, Event};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Taken, not fanned out yet.
    Held(Hold),
    /// Its stanzas go out a slice at a time; those written so far are
    /// covered by its checkpoints' barriers only.
    Fanning,
    /// Its stanzas are queued; it waits for a barrier after them.
    Written,
    /// The server read its stanzas; the parts naming its recipients are
    /// published, and it waits for `unconfirmed` confirms of them.
    Naming { unconfirmed: usize },
    /// The server read its stanzas; it waits for the store to commit its
    /// completion.
    Storing,
    /// Its report or dead letter is published; it waits for the confirm.
    Reporting,
}

/// Where a held job stands (on the current stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not examined for unknown recipients yet.
    New,
    /// Examined; it had no unknown recipient.
    Examined,
    /// Its probes are out; the barrier `ticket` tells when they are read.
    Probing(u64),
    /// Its probes were answered; late answers may come until then.
    Settling(Instant),
}

/// What to do with the first held job.
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
pub struct Job {
    pub delivery: Delivery,
    /// When it was published (or else taken): for the job duration metric.
    pub since: Instant,
    /// When it was taken: with its delivery's `received_at`, the wall-clock
    /// time at any later moment.
    pub taken: Instant,
    pub stage: Stage,
    /// The handler's key (a broadcast job's `id`), once fanned out.
    pub key: Option<String>,
    /// The report to publish once the server read the job's stanzas.
    pub report: Option<Event>,
    /// The parts naming its recipients, published before the report.
    pub names: Vec<Event>,
    /// Its window, opened once it completes.
    pub deferral: Option<Deferral>,
}

impl Job {
    /// The wall-clock time at `now`: its delivery's, plus the time since
    /// it was taken.
    pub fn wall_clock(&self, now: Instant) -> SystemTime {
        self.delivery.received_at + now.saturating_duration_since(self.taken)
    }
}

#[derive(Debug, Default)]
pub struct Jobs {
    table: IdMap<JobId, Job>,
    /// Each lane's held jobs, in the order they were taken.
    held: [VecDeque<JobId>; 2],
    /// Each lane's deliveries of the current broker connection not yet
    /// settled (a lane's channel numbers its deliveries on its own).
    windows: [AckWindow<u64>; 2],
    next_ticket: u64,
    /// Recipients in the deferrals jobs of the table carry: counted as
    /// they come and go, since every job's examination asks.
    deferred_pending: usize,
}

impl Jobs {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Recipients of completed jobs whose windows are yet to open.
    pub fn deferred_waiting(&self) -> usize {
        self.deferred_pending
    }

    /// The job's window, to open once it completes.
    pub fn set_deferral(&mut self, id: JobId, deferral: Option<Deferral>) {
        let Some(job) = self.table.get_mut(&id) else {
            return;
        };
        let count = |d: &Option<Deferral>| d.as_ref().map_or(0, |d| d.waiting.len());
        self.deferred_pending -= count(&job.deferral);
        self.deferred_pending += count(&deferral);
        job.deferral = deferral;
    }

    /// The job's window, taken to be opened.
    pub fn take_deferral(&mut self, id: JobId) -> Option<Deferral> {
        let deferral = self.table.get_mut(&id)?.deferral.take()?;
        self.deferred_pending -= deferral.waiting.len();
        Some(deferral)
    }

    /// `job` left the table.
    fn removed(&mut self, job: Job) -> Job {
        self.deferred_pending -= job.deferral.as_ref().map_or(0, |d| d.waiting.len());
        job
    }

    pub fn held_len(&self) -> usize {
        self.held.iter().map(VecDeque::len).sum()
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.table.get(&id)
    }

    pub fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.table.get_mut(&id)
    }

    /// The jobs `keep` accepts, oldest delivery first.
    pub fn ids_where(&self, keep: impl Fn(&Job) -> bool) -> Vec<JobId> {
        let mut ids: Vec<JobId> = self
            .table
            .iter()
            .filter(|(_, job)| keep(job))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// A job arrived at `now`; it waits behind those already held.
    pub fn take(&mut self, delivery: Delivery, since: Instant, now: Instant) {
        let id = delivery.id;
        self.windows[id.lane.index()].taken(id.tag);
        self.held[id.lane.index()].push_back(id);
        self.table.insert(
            id,
            Job {
                delivery,
                since,
                taken: now,
                stage: Stage::Held(Hold::New),
                key: None,
                report: None,
                names: Vec::new(),
                deferral: None,
            },
        );
    }

    /// The lane's first held job and what to do with it at `now`.
    pub fn first_held(&self, lane: Lane, now: Instant) -> Option<(JobId, Turn)> {
        let id = *self.held[lane.index()].front()?;
        let turn = match self.table.get(&id)?.stage {
            Stage::Held(Hold::New) => Turn::Examine,
            Stage::Held(Hold::Settling(at)) if at <= now => Turn::Run,
            Stage::Held(Hold::Probing(_) | Hold::Settling(_)) => Turn::Wait,
            _ => Turn::Run,
        };
        Some((id, turn))
    }

    /// The lane's first held job leaves the queue (its stage is set next).
    pub fn pop_held(&mut self, lane: Lane) -> Option<JobId> {
        self.held[lane.index()].pop_front()
    }

    /// A job just taken leaves its lane's queue without being examined
    /// (refused before anything of it is looked at).
    pub fn unhold(&mut self, id: JobId) {
        self.held[id.lane.index()].retain(|held| *held != id);
    }

    /// The lane's held jobs not examined yet, past the first `skip`.
    pub fn unexamined_behind(&self, lane: Lane, skip: usize) -> Vec<JobId> {
        self.held[lane.index()]
            .iter()
            .skip(skip)
            .filter(|id| self.stage(**id) == Some(Stage::Held(Hold::New)))
            .copied()
            .collect()
    }

    pub fn stage(&self, id: JobId) -> Option<Stage> {
        self.table.get(&id).map(|job| job.stage)
    }

    pub fn set_stage(&mut self, id: JobId, stage: Stage) {
        if let Some(job) = self.table.get_mut(&id) {
            job.stage = stage;
        }
    }

    /// Probes went out for held job `id`; returns the ticket that
    /// [`Jobs::probes_answered`] takes once a barrier after them is answered.
    pub fn probing(&mut self, id: JobId) -> u64 {
        self.next_ticket += 1;
        self.set_stage(id, Stage::Held(Hold::Probing(self.next_ticket)));
        self.next_ticket
    }

    /// The probes of `ticket` (and earlier ones: barriers are answered in
    /// order) are answered; their jobs may run from `settled_at`.
    pub fn probes_answered(&mut self, ticket: u64, settled_at: Instant) {
        for id in self.held.iter().flatten() {
            if let Some(job) = self.table.get_mut(id) {
                if matches!(job.stage, Stage::Held(Hold::Probing(t)) if t <= ticket) {
                    job.stage = Stage::Held(Hold::Settling(settled_at));
                }
            }
        }
    }

    /// When the first held job of a lane stops waiting for late answers.
    pub fn held_settles_at(&self) -> Option<Instant> {
        let settles_at = |held: &VecDeque<JobId>| match self.stage(*held.front()?)? {
            Stage::Held(Hold::Settling(at)) => Some(at),
            _ => None,
        };
        self.held.iter().filter_map(settles_at).min()
    }

    /// The stream was lost, and with it probes and their answers: every
    /// held job is examined again on the next stream.
    pub fn restart_held(&mut self) {
        for id in self.held.iter().flatten() {
            if let Some(job) = self.table.get_mut(id) {
                job.stage = Stage::Held(Hold::New);
            }
        }
    }

    /// Every held job, lane by lane in order, leaving the queue.
    pub fn drain_held(&mut self) -> Vec<JobId> {
        self.held
            .iter_mut()
            .flat_map(|held| held.drain(..))
            .collect()
    }

    /// The job is done with: acknowledged, in delivery order.
    pub fn ack(&mut self, id: JobId, out: &mut Outputs) -> Option<Job> {
        let job = self.table.remove(&id)?;
        let job = self.removed(job);
        let window = &mut self.windows[id.lane.index()];
        if let Some(Ack::UpTo(tag)) = window.done(id.tag, id.tag) {
            out.push_back(Output::Ack {
                job: JobId { tag, ..id },
                multiple: true,
            });
        }
        Some(job)
    }

    /// The job goes back to the queue; later done jobs may be acknowledged
    /// past it.
    pub fn requeue(&mut self, id: JobId, out: &mut Outputs) -> Option<Job> {
        let job = self.table.remove(&id)?;
        let job = self.removed(job);
        if matches!(job.stage, Stage::Held(_)) {
            self.held[id.lane.index()].retain(|held| *held != id);
        }
        out.push_back(Output::Requeue { job: id });
        if let Some(Ack::UpTo(tag)) = self.windows[id.lane.index()].requeued(id.tag) {
            out.push_back(Output::Ack {
                job: JobId { tag, ..id },
                multiple: true,
            });
        }
        Some(job)
    }

    /// The broker connection `generation` is gone, and the broker requeued
    /// its jobs: they leave the table without a word to the broker.
    pub fn forget_generation(&mut self, generation: u64) -> Vec<Job> {
        let ids = self.ids_where(|job| job.delivery.id.generation == generation);
        for held in &mut self.held {
            held.retain(|id| id.generation != generation);
        }
        self.windows = Default::default();
        let gone: Vec<Job> = (ids.into_iter())
            .filter_map(|id| self.table.remove(&id))
            .collect();
        gone.into_iter().map(|job| self.removed(job)).collect()
    }
}

#[cfg(test)]
mod tests;
