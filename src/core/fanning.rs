//! The one job being fanned out, a slice at a time: as many messages as
//! the stream's queue has room for, then the rest as it drains. The jobs
//! behind it wait their turn (each user gets a producer's messages in
//! order); presence, pings and requests are handled between its slices.

use super::jobs::Stage;
use super::{Core, JobId};
use crate::handler::{Context, Effects, Handler, JobSlices};

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
        self.fanning = Some(Fanning { id, slices });
    }

    /// The fanning job's next slice, as far as there is room; true when
    /// no job is fanning out (any more).
    pub(super) fn fan_out_slice(&mut self) -> bool {
        let Some(mut fanning) = self.fanning.take() else {
            return true;
        };
        if self.room == 0 {
            self.fanning = Some(fanning);
            return false;
        }
        let mut effects = Effects::default();
        let mut ctx = Context::new(
            &self.settings.domain,
            &self.presence,
            &self.ledger,
            &mut effects,
        );
        let outcome = fanning
            .slices
            .next_slice(&mut ctx, self.room.min(MAX_SLICE));
        self.room = self.room.saturating_sub(effects.stanzas.len());
        match outcome {
            Some(outcome) => {
                self.finish(fanning.id, outcome, effects);
                true
            }
            None => {
                let key = fanning.slices.key().map(str::to_string);
                self.write_job(fanning.id, effects, key.as_deref());
                self.fanning = Some(fanning);
                false
            }
        }
    }

    /// A job is fanning out and its next slice waits for room: the shell
    /// wakes the loop when its queue drains.
    pub fn waits_for_room(&self) -> bool {
        self.fanning.is_some() && self.phase.takes_jobs() && self.room == 0
    }

    /// A job is fanning out and there is room for its next slice (the last
    /// one stopped at its limit of recipients walked): it may go at once.
    pub(super) fn fans_out_now(&self) -> bool {
        self.fanning.is_some() && self.phase.takes_jobs() && self.room > 0
    }

    /// The fanning job goes back to the queue, with whatever it wrote not
    /// proven read; its redelivery resumes from its last saved checkpoint,
    /// counting what it sends again as possible duplicates.
    pub(super) fn requeue_fanning(&mut self) {
        let Some(fanning) = self.fanning.take() else {
            return;
        };
        if let Some(job) = self.jobs.requeue(fanning.id, &mut self.out) {
            self.metrics.jobs.requeued.inc();
            if let Some(key) = &job.key {
                self.ledger.abandon(key);
            }
        }
    }

    /// The broker connection `generation` is gone, with the fanning job if
    /// it came on it.
    pub(super) fn forget_fanning_of(&mut self, generation: u64) {
        if self
            .fanning
            .as_ref()
            .is_some_and(|fanning| fanning.id.generation == generation)
        {
            self.fanning = None;
        }
    }
}
