//! Broadcasting: the [`Handler`] that turns jobs into messages for the
//! recipients who can read them now, and publishes presence and chat events.

pub mod audience;
pub mod deferral;
pub mod fanout;
pub mod job;
pub mod marks;
pub mod names;
mod slices;

use std::time::SystemTime;

use serde::Serialize;
use xmpp_parsers::message::{Message, MessageType};

use crate::handler::{Context, Deferral, Event, Handler, JobOutcome, Tally};
use crate::presence::PresenceChange;
use crate::producers::Refusal;
use deferral::WindowRef;
pub use fanout::{fan_out, fan_out_from, Progress, Report};
use fanout::{Stop, Walk};
pub use job::{Job, JobError, JobLimits};
use names::{Checkpoint, NamesRef, Outcomes};
use slices::Slices;

pub const REPORT_KEY: &str = "job.report";
pub const PRESENCE_KEY: &str = "presence.changed";
pub const MESSAGE_KEY: &str = "message.received";
pub const RECEIPT_KEY: &str = "message.receipt";

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

#[derive(Serialize)]
struct MessageReceipt<'a> {
    job: &'a str,
    user: &'a str,
    id: &'a str,
    at: String,
}

/// The `message.receipt` event of a delivery receipt counted for the job
/// `job`: from `user` (a bare JID), for the message `id`, taken at `at`.
pub fn receipt_event(job: &str, user: &str, id: &str, at: SystemTime) -> Event {
    let event = MessageReceipt {
        job,
        user,
        id,
        at: crate::control::timestamp(at),
    };
    Event::json(RECEIPT_KEY, &event)
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
        // A job an earlier attempt got partway through resumes after the
        // last checkpoint the server confirmed.
        let checkpoint = ctx.progress(&job.id).and_then(Checkpoint::read);
        // Its producer's permissions first, before anything else is looked
        // up for it (an earlier job of the same id included).
        let resumed = ctx.redelivered() && checkpoint.is_some();
        let missing = match permitted(&mut job, ctx, resumed) {
            Ok(missing) => missing,
            Err(unpermitted) => return unpermitted.into(),
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
        if !missing.is_empty() {
            tracing::info!(job = %job.id, ?missing, "job names groups that do not exist");
        }
        let from = checkpoint.as_ref().map(|c| c.progress).unwrap_or_default();
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
            let names = job.names.then(|| {
                let outcomes = checkpoint
                    .as_ref()
                    .map(Checkpoint::outcomes)
                    .unwrap_or_default();
                Names::of(ctx, &self.limits).parts(&job, &outcomes, Some(stop))
            });
            return done(report, from, &missing, names, None);
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
        let walk = match &checkpoint {
            Some(checkpoint) => Walk::resume(&job, checkpoint, self.checkpoint_every(&job), resent),
            None => Walk::new(&job, from, self.checkpoint_every(&job), resent),
        };
        let names = job.names.then(|| Names::of(ctx, &self.limits));
        let until = deferral::until(&job, ctx.wall_clock(), self.limits.receipts_window);
        let slices = Slices::new(job, template, walk, missing, (names, until));
        JobOutcome::Fanning(Box::new(slices))
    }
}

/// Adds the members of the job's groups to its recipients (returning the
/// groups that do not exist) if its producer may publish it: its sender,
/// its groups, all subscribers, and the count of its recipients with its
/// groups' members and the subscribers, as its report would count them.
/// Refused, or its groups unusable: why.
///
/// A redelivery of a job that saved a checkpoint (`resumed`) is not judged again: it
/// was judged when first taken and has gone out in part; judged under a
/// configuration changed since, it would be dead-lettered with messages
/// out and no report. (A job refused saved none, so a crash between its
/// refusal and its dead letter does not let it through; and only the
/// broker marks a delivery redelivered, so another producer cannot take
/// over a job by its id this way.)
fn permitted(job: &mut Job, ctx: &Context<'_>, resumed: bool) -> Result<Vec<String>, Unpermitted> {
    let producer = ctx.producer().filter(|_| !resumed);
    if let Some(producer) = producer {
        let from = job.from.node().map_or("", |node| node.as_str());
        producer
            .check_job(from, &job.groups, job.all_subscribers)
            .map_err(Unpermitted::Refused)?;
    }
    let missing =
        audience::add_groups(job, ctx.groups()).map_err(|e| Unpermitted::Invalid(e.to_string()))?;
    if let Some(producer) = producer.filter(|p| p.limits_recipients()) {
        producer
            .check_recipients(audience::size(job, ctx.subscribers()))
            .map_err(Unpermitted::Refused)?;
    }
    Ok(missing)
}

/// Why a job may not go: its producer may not publish it, or its groups
/// could not be added to its recipients.
enum Unpermitted {
    Refused(Refusal),
    Invalid(String),
}

impl From<Unpermitted> for JobOutcome {
    fn from(unpermitted: Unpermitted) -> JobOutcome {
        match unpermitted {
            Unpermitted::Refused(refusal) => JobOutcome::Refused(refusal),
            Unpermitted::Invalid(reason) => dead_letter(reason),
        }
    }
}

impl Broadcast {
    /// A job whose report names its recipients carries the outcomes of all
    /// of them in each checkpoint: at most 16 checkpoints keep the writes
    /// linear in its size.
    fn checkpoint_every(&self, job: &Job) -> usize {
        if job.keeps_outcomes() {
            self.checkpoint_every.max(job.recipients.len() / 16)
        } else {
            self.checkpoint_every
        }
    }
}

/// How a job's names are published.
#[derive(Debug, Clone, Copy)]
struct Names {
    /// The wall-clock millisecond the attempt began: tells its parts from
    /// an interrupted attempt's.
    set: u64,
    part_bytes: usize,
}

impl Names {
    fn of(ctx: &Context<'_>, limits: &JobLimits) -> Names {
        let since_epoch = ctx
            .wall_clock()
            .and_then(|now| now.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        Names {
            set: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            part_bytes: limits.names_part_bytes,
        }
    }

    fn parts(&self, job: &Job, outcomes: &Outcomes, stop: Option<Stop>) -> (Vec<Event>, NamesRef) {
        names::parts(job, outcomes, stop, self.set, self.part_bytes)
    }
}

fn dead_letter(reason: impl std::fmt::Display) -> JobOutcome {
    JobOutcome::DeadLetter {
        reason: reason.to_string(),
    }
}

/// The `job.report` event: the fan-out's counts, the groups the job named
/// that do not exist (absent when none), and where its names went (absent
/// unless asked for).
#[derive(Serialize)]
struct JobReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    missing_groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<NamesRef>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    window: Option<WindowRef>,
}

/// A job done with `report`, resumed at `from`: remembered under its id.
/// `names`: the parts naming its recipients, published before the report;
/// `window`: the recipients waiting for it, and what its report says of them.
fn done(
    report: Report,
    from: Progress,
    missing_groups: &[String],
    names: Option<(Vec<Event>, NamesRef)>,
    window: Option<(Option<Deferral>, WindowRef)>,
) -> JobOutcome {
    let (parts, names) = names.unzip();
    let (deferral, window) = window.unzip();
    let event = JobReport {
        report: &report,
        missing_groups,
        names,
        window,
    };
    JobOutcome::Done {
        report: Some(Event::json(REPORT_KEY, &event)),
        names: parts.unwrap_or_default(),
        deferral: deferral.flatten(),
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
