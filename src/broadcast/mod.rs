//! Broadcasting: the [`Handler`] that turns jobs into messages for the
//! recipients who can read them now, and publishes presence and chat events.

pub mod fanout;
pub mod job;

use serde::Serialize;
use xmpp_parsers::message::{Message, MessageType};

use crate::handler::{Context, Event, Handler, JobOutcome, Tally};
use crate::presence::PresenceChange;
pub use fanout::{fan_out, Report};
pub use job::{Job, JobError, JobLimits};

pub const REPORT_KEY: &str = "job.report";
pub const PRESENCE_KEY: &str = "presence.changed";
pub const MESSAGE_KEY: &str = "message.received";

pub struct Broadcast {
    limits: JobLimits,
    presence_events: bool,
}

impl Broadcast {
    pub fn new(limits: JobLimits, presence_events: bool) -> Self {
        Broadcast {
            limits,
            presence_events,
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
        };
        ctx.publish(Event::json(MESSAGE_KEY, &event));
    }

    fn on_job(&mut self, ctx: &mut Context<'_>, payload: &[u8]) -> JobOutcome {
        let job = match Job::parse(payload, &self.limits) {
            Ok(job) => job,
            Err(e) => {
                return JobOutcome::DeadLetter {
                    reason: e.to_string(),
                }
            }
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
        let fanout = fan_out(&job, ctx.presence());
        for message in fanout.messages {
            ctx.send(message);
        }
        let report = &fanout.report;
        tracing::info!(
            job = %report.id,
            recipients = report.recipients,
            sent = report.sent,
            offline = report.skipped.offline,
            unavailable = report.skipped.unavailable,
            invalid = report.skipped.invalid,
            "job fanned out"
        );
        JobOutcome::Done {
            report: Some(Event::json(REPORT_KEY, report)),
            tally: Tally {
                sent: report.sent as u64,
                offline: report.skipped.offline as u64,
                unavailable: report.skipped.unavailable as u64,
                invalid: report.skipped.invalid as u64,
            },
            key: Some(report.id.clone()),
        }
    }
}

/// The earlier job's report, marked as the report of a duplicate.
fn duplicate_report(id: &str, earlier: &Event) -> Event {
    let mut report: Report = serde_json::from_slice(&earlier.payload).unwrap_or_else(|_| Report {
        id: id.to_string(),
        ..Report::default()
    });
    report.duplicate = true;
    Event::json(REPORT_KEY, &report)
}
