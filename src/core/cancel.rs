//! The control operation `cancel`: a job, by its key (a broadcast job's
//! `id`), sends nothing more. The key is remembered (a window, as for
//! completed jobs) and stored; the reply waits for the store's commit.
//! A job that comes up with a cancelled key is reported cancelled by its
//! handler ([`crate::handler::Context::is_cancelled`]); one fanning out
//! when the request comes stops then.

use super::control::Answer;
use super::io::Lane;
use super::Core;
use crate::control::{CancelResult, CancelState, Reply};
use crate::handler::{Effects, Handler, JobOutcome};
use crate::store::Change;

impl<H: Handler> Core<H> {
    pub(super) fn cancel_job(&mut self, id: String) -> Answer {
        // In progress in the ledger: every stanza of it is written already.
        if self.ledger.earlier(&id).is_some() {
            let completed = CancelResult {
                id: id.clone(),
                state: CancelState::Completed,
                report: None,
            };
            if !self.deferred.is_open(&id) {
                return Answer::Now(Reply::result(completed));
            }
            // Its window ends now: nobody more is sent it, after a
            // restart too (the window is reopened ended).
            self.ledger.cancel(id.clone());
            self.store.write(Change::JobCancelled(id.clone()), self.now);
            self.end_window(&id);
            return Answer::AfterCommit(Reply::result(completed));
        }
        self.ledger.cancel(id.clone());
        self.store.write(Change::JobCancelled(id.clone()), self.now);
        let report = self.stop_fanning(&id);
        let state = match report {
            Some(_) => CancelState::InProgress,
            None => CancelState::Pending,
        };
        tracing::info!(job = %id, ?state, "job cancelled");
        Answer::AfterCommit(Reply::result(CancelResult { id, state, report }))
    }

    /// The job with `key`, if a lane is fanning it out, stops now: what it
    /// wrote stays written, the rest is counted cancelled, and it completes
    /// as a job does after its last slice (its report once the server read
    /// what was written). Stopped here, when the cancellation comes, rather
    /// than by a check of every job's key before every slice: the reply
    /// can say how far the job got, and the slices' hot path stays as it
    /// was. Returns the job's report.
    fn stop_fanning(&mut self, key: &str) -> Option<serde_json::Value> {
        let mut report = None;
        for lane in Lane::ALL {
            let slot = &mut self.fanning[lane.index()];
            let Some(mut fanning) = slot.take_if(|f| f.slices.key() == Some(key)) else {
                continue;
            };
            let outcome = fanning.slices.cancel();
            if let JobOutcome::Done {
                report: Some(event),
                ..
            } = &outcome
            {
                report = serde_json::from_slice(&event.payload).ok();
            }
            self.finish(fanning.id, outcome, Effects::default());
        }
        report
    }
}
