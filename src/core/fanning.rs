//! The job being fanned out in each lane, a slice at a time: as many
//! messages as the stream's queue has room for, then the rest as it
//! drains. The urgent lane's slices go first. The jobs behind it in its
//! lane wait their turn (each user gets a lane's messages in order);
//! presence, pings and requests are handled between its slices.

use super::jobs::Stage;
use super::{Core, JobId, Lane};
use crate::handler::{Context, Effects, Handler, JobOutcome, JobSlices};

/// At most this many messages in one slice, whatever the room: one turn
/// of the loop stays short.
const MAX_SLICE: usize = 4096;

#[derive(Debug)]
pub(super) struct Fanning {
    pub id: JobId,
    pub slices: Box<dyn JobSlices>,
}

impl<H: Handler> Core<H> {
    /// Held job `id` starts going out.
    pub(super) fn start_fanning(&mut self, id: JobId, slices: Box<dyn JobSlices>) {
        let key = slices.key().map(str::to_string);
        if let Some(job) = self.jobs.get_mut(id) {
            job.stage = Stage::Fanning;
            job.key = key;
            // Parsed into its slices: the payload is the broker's to keep.
            job.delivery.payload = Vec::new();
        }
        self.fanning[id.lane.index()] = Some(Fanning { id, slices });
    }

    /// The lane's fanning job's next slice, as far as there is room; true
    /// when no job of the lane is fanning out (any more).
    pub(super) fn fan_out_slice(&mut self, lane: Lane) -> bool {
        let Some(mut fanning) = self.fanning[lane.index()].take() else {
            return true;
        };
        let room = self.slice_room();
        if room == 0 {
            self.fanning[lane.index()] = Some(fanning);
            return false;
        }
        let mut effects = Effects::default();
        let deferral_room = self.deferral_room();
        let mut ctx = handler_context!(self, &mut effects).with_deferral_room(deferral_room);
        let outcome = fanning.slices.next_slice(&mut ctx, room.min(MAX_SLICE));
        self.stream_room = self.stream_room.saturating_sub(effects.stanzas.len());
        match outcome {
            Some(outcome) => {
                self.finish(fanning.id, outcome, effects);
                true
            }
            None => {
                // Taken out of the core for the slice: borrowed, not copied.
                self.write_job(fanning.id, effects, fanning.slices.key());
                self.fanning[lane.index()] = Some(fanning);
                false
            }
        }
    }

    /// Stanzas the next slice may have: as many as the stream's queue
    /// takes and the read window allows (the stanzas queued count against
    /// it at once, the server's answers give it back).
    fn slice_room(&self) -> usize {
        let unread = self.barriers.unread(self.out.stanzas_queued());
        let unread = usize::try_from(unread).unwrap_or(usize::MAX);
        let read_room = self
            .read_window
            .size(self.now, unread == 0)
            .saturating_sub(unread);
        self.stream_room.min(read_room)
    }

    /// A job is fanning out and its next slice waits for the stream's
    /// queue: the shell wakes the loop when it drains. (Room in the read
    /// window comes with the server's answers, which are inputs anyway.)
    pub fn waits_for_room(&self) -> bool {
        self.is_fanning() && self.phase.takes_jobs() && self.stream_room == 0
    }

    /// A job is fanning out and there is room for its next slice (the last
    /// one stopped at its limit of recipients walked): it may go at once.
    pub(super) fn fans_out_now(&self) -> bool {
        self.is_fanning() && self.phase.takes_jobs() && self.slice_room() > 0
    }

    /// Some job is going out a slice at a time.
    pub fn is_fanning(&self) -> bool {
        self.fanning.iter().any(Option::is_some)
    }

    /// Whether `outcome` is for the job another lane is fanning out (the
    /// same job published to both queues).
    pub(super) fn fanning_elsewhere(&self, lane: Lane, outcome: &JobOutcome) -> bool {
        let key = match outcome {
            JobOutcome::Fanning(slices) => slices.key(),
            JobOutcome::Done { key, .. } => key.as_deref(),
            JobOutcome::Duplicate { key, .. } => Some(key.as_str()),
            JobOutcome::Probe { .. } | JobOutcome::DeadLetter { .. } | JobOutcome::Refused(_) => {
                None
            }
        };
        let Some(key) = key else { return false };
        self.fanning
            .iter()
            .flatten()
            .any(|fanning| fanning.id.lane != lane && fanning.slices.key() == Some(key))
    }

    pub(super) fn is_fanning_in(&self, lane: Lane) -> bool {
        self.fanning[lane.index()].is_some()
    }

    /// The fanning jobs go back to the queue, with whatever they wrote not
    /// proven read; a redelivery resumes from its last saved checkpoint,
    /// counting what it sends again as possible duplicates. Returns how
    /// many there were.
    pub(super) fn requeue_fanning(&mut self) -> usize {
        let mut requeued = 0;
        for fanning in std::mem::take(&mut self.fanning).into_iter().flatten() {
            if let Some(job) = self.jobs.requeue(fanning.id, &mut self.out) {
                requeued += 1;
                self.metrics.jobs.requeued.inc();
                if let Some(key) = &job.key {
                    self.ledger.abandon(key);
                }
            }
        }
        requeued
    }

    /// The broker connection `generation` is gone, with the fanning jobs
    /// that came on it.
    pub(super) fn forget_fanning_of(&mut self, generation: u64) {
        for fanning in &mut self.fanning {
            if fanning
                .as_ref()
                .is_some_and(|fanning| fanning.id.generation == generation)
            {
                *fanning = None;
            }
        }
    }
}
