//! Broadcasting: the [`Handler`] that turns jobs into messages for the
//! recipients who can read them now, and publishes presence and chat events.

pub mod audience;
pub mod fanout;
pub mod job;
pub mod marks;
mod slices;

use serde::Serialize;
use xmpp_parsers::message::{Message, MessageType};

use crate::handler::{Context, Event, Handler, JobOutcome, Tally};
use crate::presence::PresenceChange;
pub use fanout::{fan_out, fan_out_from, Progress, Report};
use fanout::{Stop, Walk};
pub use job::{Job, JobError, JobLimits};
use slices::Slices;

pub const REPORT_KEY: &str = "job.report";
pub const PRESENCE_KEY: &str = "presence.changed";
pub const MESSAGE_KEY: &str = "message.received";

pub struct Broadcast {
    limits: JobLimits,
    presence_events: bool,
    checkpoint_every: usize,
}

impl Broadcast {
    /// `checkpoint_every`: recipients between saved checkpoints of a job.
    pub fn new(limits: JobLimits, presence_events: bool, checkpoint_every: usize) -> Self {
        Broadcast {
            limits,
            presence_events,
            checkpoint_every,
        }
    }
}

#[derive(Serialize)]
struct PresenceChanged<'a> {
    jid: String,
    available: bool,
    show: Option<&'a str>,
}

#[derive(Serialize)]
struct MessageReceived<'a> {
    from: String,
    to: String,
    body: &'a str,
    /// The id of the job whose message this answers, when it carries the
    /// thread Herald gave that job's messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<String>,
}

impl Handler for Broadcast {
    fn on_presence(&mut self, ctx: &mut Context<'_>, change: &PresenceChange) {
        if self.presence_events && change.changed {
            let event = PresenceChanged {
                jid: change.jid.to_string(),
                available: change.now.is_some(),
                show: change.now.map(|show| show.as_str()),
            };
            ctx.publish(Event::json(PRESENCE_KEY, &event));
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, message: &Message) {
        if !matches!(message.type_, MessageType::Chat | MessageType::Normal) {
            return;
        }
        let (Some(from), Some(to), Some(body)) =
            (&message.from, &message.to, message.bodies.values().next())
        else {
            return;
        };
        let event = MessageReceived {
            from: from.to_string(),
            to: to.to_string(),
            body,
            job: message
                .thread
                .as_ref()
                .and_then(|thread| marks::job_of_thread(&thread.id)),
        };
        ctx.publish(Event::json(MESSAGE_KEY, &event));
    }

    fn on_job(&mut self, ctx: &mut Context<'_>, payload: &[u8]) -> JobOutcome {
        let mut job = match Job::parse(payload, &self.limits) {
            Ok(job) => job,
            Err(e) => return dead_letter(e),
        };
        if let Some(earlier) = ctx.earlier_job(&job.id) {
            tracing::info!(job = %job.id, owed = earlier.report_owed, "repeated job id: nothing sent");
            let report = if earlier.report_owed {
                earlier.report.clone()
            } else {
                duplicate_report(&job.id, earlier.report)
            };
            return JobOutcome::Duplicate {
                report: Some(report),
                key: job.id,
            };
        }
        let missing = match audience::add_groups(&mut job, ctx.groups()) {
            Ok(missing) => missing,
            Err(e) => return dead_letter(e),
        };
        if !missing.is_empty() {
            tracing::info!(job = %job.id, ?missing, "job names groups that do not exist");
        }
        // A job an earlier attempt got partway through resumes after the
        // last checkpoint the server confirmed.
        let from: Progress = ctx
            .progress(&job.id)
            .and_then(|token| serde_json::from_slice(token).ok())
            .unwrap_or_default();
        let resent = ctx.redelivered() || ctx.attempted_before(&job.id);
        // Cancelled, or taken after its deadline: whatever is left of it
        // sends nothing, and no stranger is probed for it.
        let expired = matches!((job.expires_at, ctx.wall_clock()), (Some(deadline), Some(now)) if now >= deadline);
        let stop = if ctx.is_cancelled(&job.id) {
            Some(Stop::Cancelled)
        } else {
            expired.then_some(Stop::Expired)
        };
        if let Some(stop) = stop {
            tracing::info!(job = %job.id, ?stop, "cancelled or expired before it came up: nothing sent");
            if let Err(e) = audience::add_subscribers(&mut job, ctx.subscribers()) {
                return dead_letter(e);
            }
            let report = fanout::stop_from(&job, from, resent, stop);
            return done(report, from, &missing);
        }
        let strangers = fanout::strangers(&job, from, |user| ctx.is_stranger(user));
        if !strangers.is_empty() {
            tracing::debug!(job = %job.id, strangers = strangers.len(), "recipients to probe first");
            return JobOutcome::Probe { users: strangers };
        }
        if let Err(e) = audience::add_subscribers(&mut job, ctx.subscribers()) {
            return dead_letter(e);
        }
        let template = match fanout::template(&mut job) {
            Ok(template) => template,
            Err(e) => return dead_letter(e),
        };
        let walk = Walk::new(&job, from, self.checkpoint_every, resent);
        JobOutcome::Fanning(Box::new(Slices::new(job, template, walk, missing)))
    }
}

fn dead_letter(reason: impl std::fmt::Display) -> JobOutcome {
    JobOutcome::DeadLetter {
        reason: reason.to_string(),
    }
}

/// The `job.report` event: the fan-out's counts, and the groups the job
/// named that do not exist (absent when none).
#[derive(Serialize)]
struct JobReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    missing_groups: &'a [String],
}

/// A job done with `report`, resumed at `from`: remembered under its id.
fn done(report: Report, from: Progress, missing_groups: &[String]) -> JobOutcome {
    let event = JobReport {
        report: &report,
        missing_groups,
    };
    JobOutcome::Done {
        report: Some(Event::json(REPORT_KEY, &event)),
        // This attempt's share: earlier attempts counted the rest (and
        // none of them expired or was cancelled, or this one would not be).
        tally: Tally {
            sent: (report.sent - from.sent) as u64,
            offline: (report.skipped.offline - from.offline) as u64,
            unavailable: (report.skipped.unavailable - from.unavailable) as u64,
            invalid: (report.skipped.invalid - from.invalid) as u64,
            expired: report.skipped.expired as u64,
            cancelled: report.skipped.cancelled as u64,
            job_cancelled: report.cancelled,
        },
        key: Some(report.id),
    }
}

/// The earlier job's report, marked as the report of a duplicate.
/// (As JSON, so that what the report adds to the counts, such as
/// `missing_groups`, is kept.)
fn duplicate_report(id: &str, earlier: &Event) -> Event {
    let earlier = serde_json::from_slice::<serde_json::Value>(&earlier.payload).ok();
    let mut report = match earlier {
        Some(report @ serde_json::Value::Object(_)) => report,
        _ => serde_json::to_value(Report {
            id: id.to_string(),
            ..Report::default()
        })
        .unwrap_or_default(),
    };
    report["duplicate"] = true.into();
    Event::json(REPORT_KEY, &report)
}
