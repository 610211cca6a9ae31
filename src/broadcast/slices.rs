//! A broadcast job fanned out a slice at a time: the walk through its
//! recipients stops when the slice's budget of messages is spent (or after
//! a bounded number of recipients who get none), and goes on in the next.

use std::sync::Arc;
use std::time::SystemTime;

use super::fanout::{Progress, Report, Stop, Walk};
use super::{deferral, done, Job, Names};
use crate::handler::{Context, JobOutcome, JobSlices};
use crate::xmpp::wire::MessageTemplate;

/// Recipients walked per stanza of budget: a slice over users who are
/// mostly offline still ends soon, so the loop gets back to its inputs.
const WALKED_PER_MESSAGE: usize = 4;

#[derive(Debug)]
pub struct Slices {
    job: Job,
    template: Arc<MessageTemplate>,
    walk: Walk,
    /// Groups the job named that do not exist, for its report.
    missing_groups: Vec<String>,
    /// Set when the report names the recipients.
    names: Option<Names>,
    /// When its window ends, if it has one.
    until: Option<SystemTime>,
}

impl Slices {
    /// `job` from `from` on, its texts already in `template`.
    pub fn new(
        job: Job,
        template: MessageTemplate,
        walk: Walk,
        missing_groups: Vec<String>,
        (names, until): (Option<Names>, Option<SystemTime>),
    ) -> Slices {
        Slices {
            job,
            template: Arc::new(template),
            walk,
            missing_groups,
            names,
            until,
        }
    }
}

impl JobSlices for Slices {
    fn key(&self) -> Option<&str> {
        Some(&self.job.id)
    }

    fn next_slice(&mut self, ctx: &mut Context<'_>, budget: usize) -> Option<JobOutcome> {
        let book = ctx.presence();
        let (mut sent, mut walked) = (0, 0);
        let walk_limit = budget.saturating_mul(WALKED_PER_MESSAGE).max(1);
        while sent < budget && walked < walk_limit {
            let Some(step) = self.walk.step(&self.job, book) else {
                break;
            };
            walked += 1;
            if let Some(to) = step.deliver_to {
                ctx.send_broadcast(&self.template, to);
                sent += 1;
            }
            if let Some(progress) = step.checkpoint {
                ctx.checkpoint(self.walk.token(progress));
            }
        }
        let room = ctx.deferral_room();
        self.walk
            .is_over(&self.job)
            .then(|| self.close(self.walk.report(), None, room))
    }

    fn cancel(&mut self) -> JobOutcome {
        let stop = Stop::Cancelled;
        self.close(self.walk.stop(&self.job, stop), Some(stop), 0)
    }
}

impl Slices {
    /// The job is done with `report`, the recipients not walked stopped by
    /// `stop`; if it went out whole, up to `room` recipients may wait in
    /// its window.
    fn close(&self, report: Report, stop: Option<Stop>, room: usize) -> JobOutcome {
        let from = self.walk.from();
        log_fanned_out(&report, from);
        let outcomes = self.walk.outcomes();
        let names = self.names.zip(outcomes);
        let names = names.map(|(names, outcomes)| names.parts(&self.job, outcomes, stop));
        let until = self.until.filter(|_| stop.is_none());
        let walked = (outcomes, report.sent);
        let window =
            until.map(|until| deferral::window(&self.job, walked, &self.template, until, room));
        done(report, from, &self.missing_groups, names, window)
    }
}

fn log_fanned_out(report: &Report, from: Progress) {
    // Debug, not info: at thousands of jobs a second a line per job is
    // most of what the loop spends beyond delivering (the report on the
    // events exchange is each job's record).
    tracing::debug!(
        job = %report.id,
        recipients = report.recipients,
        sent = report.sent,
        offline = report.skipped.offline,
        unavailable = report.skipped.unavailable,
        invalid = report.skipped.invalid,
        cancelled = report.skipped.cancelled,
        resumed_at = from.next,
        possible_duplicates = report.possible_duplicates,
        "job fanned out"
    );
}
