//! Applying a job's policy to the presence book: which recipients get a
//! message, and the report that accounts for every one of them. Pure code.

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::BareJid;

use super::job::{Job, Recipient};
use super::marks;
use super::names::{Checkpoint, Outcome, Outcomes};
use crate::presence::{PresenceBook, Reachability};
use crate::user_text::UserText;
use crate::xmpp::wire::{Addressee, MessageTemplate, Unserializable};

/// The `job.report` event: every recipient is in exactly one count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub recipients: usize,
    pub sent: usize,
    pub skipped: Skipped,
    /// This job repeated an earlier one with the same id: nothing was sent
    /// again and the counts are the earlier job's. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Messages of this attempt that an earlier, interrupted attempt at the
    /// same job may also have delivered. Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub possible_duplicates: usize,
    /// The job was taken after its `expires_at`: nothing was sent (by this
    /// attempt). Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// The job was cancelled (the control operation `cancel`) before it
    /// came up or while it went out: the recipients not walked yet were
    /// sent nothing. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How far a job got: recipients before `next` are done, with these counts.
/// Saved at checkpoints once the server confirmed the messages before them,
/// so that a redelivered job resumes instead of starting over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub next: usize,
    pub sent: usize,
    pub offline: usize,
    pub unavailable: usize,
    pub invalid: usize,
    /// Messages before `next` that more than one attempt may have sent.
    #[serde(default)]
    pub possible_duplicates: usize,
}

impl Progress {
    fn of(next: usize, report: &Report, possible_duplicates: usize) -> Progress {
        Progress {
            next,
            sent: report.sent,
            offline: report.skipped.offline,
            unavailable: report.skipped.unavailable,
            invalid: report.skipped.invalid,
            possible_duplicates,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub offline: usize,
    pub unavailable: usize,
    pub invalid: usize,
    /// Users sent nothing because the job was taken after its deadline.
    /// Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expired: usize,
    /// Users sent nothing because the job was cancelled. Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cancelled: usize,
}

impl Report {
    /// True when the counts add up to the number of recipients.
    pub fn is_complete(&self) -> bool {
        let skipped = &self.skipped;
        self.sent
            + skipped.offline
            + skipped.unavailable
            + skipped.invalid
            + skipped.expired
            + skipped.cancelled
            == self.recipients
    }
}

/// The users to send a job's message to, and its report.
pub struct Fanout {
    pub deliver_to: Vec<Addressee>,
    pub report: Report,
    /// `(m, progress)`: once the first `m` messages are read by the server,
    /// the job has reached `progress`.
    pub checkpoints: Vec<(usize, Progress)>,
}

/// Applies the job's policy to every recipient.
pub fn fan_out(job: &Job, book: &PresenceBook) -> Fanout {
    fan_out_from(job, book, Progress::default(), usize::MAX, false)
}

/// Applies the job's policy to the recipients from `from.next` on at once
/// (see [`Walk`]).
pub fn fan_out_from(
    job: &Job,
    book: &PresenceBook,
    from: Progress,
    checkpoint_every: usize,
    redelivered: bool,
) -> Fanout {
    let mut walk = Walk::new(job, from, checkpoint_every, redelivered);
    let mut deliver_to = Vec::new();
    let mut checkpoints = Vec::new();
    while let Some(step) = walk.step(job, book) {
        deliver_to.extend(step.deliver_to);
        if let Some(progress) = step.checkpoint {
            checkpoints.push((deliver_to.len(), progress));
        }
    }
    Fanout {
        deliver_to,
        report: walk.report(),
        checkpoints,
    }
}

/// A walk through a job's recipients from `from.next` on, one at a time,
/// against the presence of the moment each is reached: a big job goes out
/// in slices, each as the stream takes it, and a recipient late in it is
/// judged by presence then, not when the job began.
#[derive(Debug)]
pub struct Walk {
    from: Progress,
    next: usize,
    /// Recipients between checkpoints.
    every: usize,
    /// An earlier attempt may have sent some of these messages already:
    /// they count as possible duplicates, on top of those `from` counts.
    redelivered: bool,
    /// Messages of this attempt.
    messages: usize,
    report: Report,
    /// Each recipient's outcome, for a job whose report names them.
    outcomes: Option<Outcomes>,
}

/// One recipient walked past.
pub struct Step {
    /// The message to send them, if they get one.
    pub deliver_to: Option<Addressee>,
    /// The progress reached once the messages so far are read, when a
    /// checkpoint falls after this recipient.
    pub checkpoint: Option<Progress>,
}

impl Walk {
    /// A walk adding to `from`'s counts, with a checkpoint every
    /// `checkpoint_every` recipients.
    pub fn new(job: &Job, from: Progress, checkpoint_every: usize, redelivered: bool) -> Walk {
        Walk {
            from,
            next: from.next,
            every: checkpoint_every.max(1),
            redelivered,
            messages: 0,
            report: report_from(job, from),
            outcomes: job
                .keeps_outcomes()
                .then(|| Outcomes::starting_at(from.next)),
        }
    }

    /// A walk resuming from a saved checkpoint: its outcomes too.
    pub fn resume(
        job: &Job,
        from: &Checkpoint,
        checkpoint_every: usize,
        redelivered: bool,
    ) -> Walk {
        Walk {
            outcomes: job.keeps_outcomes().then(|| from.outcomes()),
            ..Walk::new(job, from.progress, checkpoint_every, redelivered)
        }
    }

    /// The next recipient's outcome; None once every one is counted.
    pub fn step(&mut self, job: &Job, book: &PresenceBook) -> Option<Step> {
        let recipient = job.recipients.get(self.next)?;
        let (outcome, deliver_to) =
            fan_out_one(job, book, (self.next, recipient), &mut self.report);
        if let Some(outcomes) = &mut self.outcomes {
            outcomes.push(outcome);
        }
        self.messages += usize::from(deliver_to.is_some());
        self.next += 1;
        let done = self.next;
        // No checkpoint at the end, where the job's completion records it,
        // unless the job's names are yet to be published after that: its
        // redelivery then names them from the checkpoint instead of
        // walking (and messaging) the rest again.
        let at_end = done == job.recipients.len();
        let checkpoint = ((done - self.from.next).is_multiple_of(self.every) && !at_end
            || at_end && self.outcomes.is_some())
        .then(|| Progress::of(done, &self.report, self.possible_duplicates()));
        Some(Step {
            deliver_to,
            checkpoint,
        })
    }

    /// Whether every recipient is counted.
    pub fn is_over(&self, job: &Job) -> bool {
        self.next >= job.recipients.len()
    }

    /// The job's report, once the walk is over.
    pub fn report(&self) -> Report {
        Report {
            possible_duplicates: self.possible_duplicates(),
            ..self.report.clone()
        }
    }

    /// Where the walk started.
    pub fn from(&self) -> Progress {
        self.from
    }

    /// The token of a checkpoint at `progress`, with the outcomes so far.
    pub fn token(&self, progress: Progress) -> Vec<u8> {
        Checkpoint::token(progress, self.outcomes.as_ref())
    }

    /// The outcomes so far, if the job's report names its recipients.
    pub fn outcomes(&self) -> Option<&Outcomes> {
        self.outcomes.as_ref()
    }

    /// The walk ends here for `stop`: the job's report, with the
    /// recipients not walked yet counted in `stop`'s bucket.
    pub fn stop(&self, job: &Job, stop: Stop) -> Report {
        let mut report = self.report();
        let mut users = 0;
        for recipient in job.recipients.iter_from(self.next) {
            match recipient {
                Recipient::User(_) => users += 1,
                // As they would count at any time.
                Recipient::Invalid(_) => report.skipped.invalid += 1,
            }
        }
        match stop {
            Stop::Expired => (report.skipped.expired, report.expired) = (users, true),
            Stop::Cancelled => (report.skipped.cancelled, report.cancelled) = (users, true),
        }
        // This attempt sends them nothing, but two earlier ones may each
        // have gone past the checkpoint it resumed from (the second's
        // checkpoint never committed): their messages to these recipients
        // may have repeated, and no later attempt of this job will count them.
        if self.redelivered {
            report.possible_duplicates += users;
        }
        report
    }

    fn possible_duplicates(&self) -> usize {
        let resent = if self.redelivered { self.messages } else { 0 };
        self.from.possible_duplicates + resent
    }
}

/// Why the rest of a job sends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Taken after its `expires_at`.
    Expired,
    /// Cancelled by the control operation `cancel`.
    Cancelled,
}

/// The report of a job taken after its deadline, or cancelled before it
/// came up: from `from.next` on, nobody is sent anything.
pub fn stop_from(job: &Job, from: Progress, resent: bool, stop: Stop) -> Report {
    Walk::new(job, from, 1, resent).stop(job, stop)
}

/// A job's report with the counts of the recipients before `from.next`.
fn report_from(job: &Job, from: Progress) -> Report {
    Report {
        id: job.id.clone(),
        recipients: job.recipients.len(),
        sent: from.sent,
        skipped: Skipped {
            offline: from.offline,
            unavailable: from.unavailable,
            invalid: from.invalid,
            ..Skipped::default()
        },
        ..Report::default()
    }
}

/// The users among the recipients from `from.next` on that `is_stranger`
/// says Herald knows nothing about: their presence is to be learnt before
/// the job is fanned out. (Only they are parsed into JIDs.)
pub fn strangers(
    job: &Job,
    from: Progress,
    is_stranger: impl Fn(UserText<'_>) -> bool,
) -> Vec<BareJid> {
    job.recipients
        .iter_from(from.next)
        .filter_map(|recipient| match recipient {
            Recipient::User(user) if is_stranger(UserText(user)) => BareJid::new(user).ok(),
            _ => None,
        })
        .collect()
}

/// `position`: the recipient's place in the job, which numbers its message.
fn fan_out_one(
    job: &Job,
    book: &PresenceBook,
    (position, recipient): (usize, Recipient<'_>),
    report: &mut Report,
) -> (Outcome, Option<Addressee>) {
    let user = match recipient {
        Recipient::User(user) => UserText(user),
        Recipient::Invalid(_) => {
            report.skipped.invalid += 1;
            return (Outcome::Invalid, None);
        }
    };
    match book.deliverable(user, job.policy) {
        Ok(_) => {
            report.sent += 1;
            // Job validation caps recipients far below u32::MAX.
            let to = Addressee::in_job(&job.recipients, position as u32);
            (Outcome::Sent, Some(to))
        }
        Err(Reachability::Unavailable) => {
            report.skipped.unavailable += 1;
            (Outcome::Unavailable, None)
        }
        // Offline (one who may get a message comes as Ok).
        Err(_) => {
            report.skipped.offline += 1;
            (Outcome::Offline, None)
        }
    }
}

/// What every message of `job` shares, taking its texts (the job keeps
/// its recipients); refused for a text XML forbids (which job validation
/// already refuses).
pub fn template(job: &mut Job) -> Result<MessageTemplate, Unserializable> {
    let marks = marks::marks(&job.id, job.storage, job.receipts);
    let (subject, body) = (job.subject.take(), std::mem::take(&mut job.body));
    MessageTemplate::new(job.from.clone(), job.kind.into(), subject, body, marks)
}

#[cfg(test)]
mod tests;
