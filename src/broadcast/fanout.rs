//! Applying a job's policy to the presence book: which recipients get a
//! message, and the report that accounts for every one of them. Pure code.

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::BareJid;

use super::job::{Job, Recipient};
use super::marks;
use crate::presence::{PresenceBook, Reachability};
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
}

impl Report {
    /// True when the counts add up to the number of recipients.
    pub fn is_complete(&self) -> bool {
        self.sent + self.skipped.offline + self.skipped.unavailable + self.skipped.invalid
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

/// Applies the job's policy to the recipients from `from.next` on, adding
/// to `from`'s counts, with a checkpoint every `checkpoint_every`
/// recipients. `redelivered`: an earlier attempt may have sent some of
/// these messages already (they are counted as possible duplicates, on top
/// of those `from` counts before it).
pub fn fan_out_from(
    job: &Job,
    book: &PresenceBook,
    from: Progress,
    checkpoint_every: usize,
    redelivered: bool,
) -> Fanout {
    let mut report = Report {
        id: job.id.clone(),
        recipients: job.recipients.len(),
        sent: from.sent,
        skipped: Skipped {
            offline: from.offline,
            unavailable: from.unavailable,
            invalid: from.invalid,
        },
        ..Report::default()
    };
    let mut deliver_to = Vec::new();
    let mut checkpoints = Vec::new();
    let every = checkpoint_every.max(1);
    for (index, recipient) in job.recipients.iter().enumerate().skip(from.next) {
        fan_out_one(job, book, (index, recipient), &mut report, &mut deliver_to);
        let done = index + 1;
        // No checkpoint at the end: the job's completion records that.
        if (done - from.next).is_multiple_of(every) && done < job.recipients.len() {
            let resent = if redelivered { deliver_to.len() } else { 0 };
            let progress = Progress::of(done, &report, from.possible_duplicates + resent);
            checkpoints.push((deliver_to.len(), progress));
        }
    }
    report.possible_duplicates =
        from.possible_duplicates + if redelivered { deliver_to.len() } else { 0 };
    Fanout {
        deliver_to,
        report,
        checkpoints,
    }
}

/// The users among the recipients from `from.next` on that `is_stranger`
/// says Herald knows nothing about: their presence is to be learnt before
/// the job is fanned out.
pub fn strangers(
    job: &Job,
    from: Progress,
    is_stranger: impl Fn(&BareJid) -> bool,
) -> Vec<BareJid> {
    job.recipients
        .iter()
        .skip(from.next)
        .filter_map(|recipient| match recipient {
            Recipient::User(user) if is_stranger(user) => Some(user.clone()),
            _ => None,
        })
        .collect()
}

/// `position`: the recipient's place in the job, which numbers its message.
fn fan_out_one(
    job: &Job,
    book: &PresenceBook,
    (position, recipient): (usize, &Recipient),
    report: &mut Report,
    deliver_to: &mut Vec<Addressee>,
) {
    let user = match recipient {
        Recipient::User(user) => user,
        Recipient::Invalid(_) => {
            report.skipped.invalid += 1;
            return;
        }
    };
    match book.reachability(user, job.policy) {
        Reachability::Deliver => {
            report.sent += 1;
            deliver_to.push(Addressee {
                jid: user.clone(),
                // Job validation caps recipients far below u32::MAX.
                position: position as u32,
            });
        }
        Reachability::Unavailable => report.skipped.unavailable += 1,
        Reachability::Offline => report.skipped.offline += 1,
    }
}

/// What every message of `job` shares, taking its texts; refused for a
/// text XML forbids (which job validation already refuses).
pub fn template(job: Job) -> Result<MessageTemplate, Unserializable> {
    let marks = marks::marks(&job.id);
    MessageTemplate::new(job.from, job.kind.into(), job.subject, job.body, marks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::job::{JobLimits, MessageKind};
    use crate::presence::{ResourcePresence, Show};
    use xmpp_parsers::jid::{BareJid, FullJid};

    fn book() -> PresenceBook {
        let mut book = PresenceBook::new();
        for (jid, show) in [
            ("avail@localhost/r", Show::Online),
            ("chatty@localhost/r", Show::Chat),
            ("away@localhost/r", Show::Away),
            ("dnd@localhost/r", Show::Dnd),
        ] {
            book.set_available(
                &FullJid::new(jid).unwrap(),
                ResourcePresence {
                    show,
                    priority: 0,
                    status: None,
                },
            );
        }
        book
    }

    fn job(policy: &str) -> Job {
        let limits = JobLimits {
            component_domain: BareJid::new("broadcast.localhost").unwrap(),
            default_from: "herald".into(),
            max_body_bytes: 1024,
            max_recipients: 100,
            allowed_from: Vec::new(),
        };
        let json = serde_json::json!({
            "id": "j", "body": "hello", "subject": "subj", "policy": policy, "type": "headline",
            "to": ["avail@localhost", "chatty@localhost", "away@localhost", "dnd@localhost",
                   "gone@localhost", "x@localhost/res"]
        });
        Job::parse(json.to_string().as_bytes(), &limits).unwrap()
    }

    fn recipients(fanout: &Fanout) -> Vec<String> {
        fanout.deliver_to.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn available_policy_reaches_only_available_users() {
        let fanout = fan_out(&job("available"), &book());
        assert_eq!(recipients(&fanout), ["avail@localhost", "chatty@localhost"]);
        let positions: Vec<u32> = fanout.deliver_to.iter().map(|a| a.position).collect();
        assert_eq!(positions, [0, 1], "their places among the job's recipients");
        assert_eq!(
            fanout.report,
            Report {
                id: "j".into(),
                recipients: 6,
                sent: 2,
                skipped: Skipped {
                    offline: 1,
                    unavailable: 2,
                    invalid: 1
                },
                ..Report::default()
            }
        );
        assert!(fanout.report.is_complete());
    }

    #[test]
    fn online_policy_reaches_away_and_dnd_too() {
        let fanout = fan_out(&job("online"), &book());
        assert_eq!(fanout.report.sent, 4);
        assert_eq!(fanout.report.skipped.unavailable, 0);
        assert!(fanout.report.is_complete());
    }

    #[test]
    fn messages_carry_sender_type_body_and_subject() {
        let job = job("available");
        let fanout = fan_out(&job, &book());
        let message = template(job).unwrap().to_message(&fanout.deliver_to[0]);
        assert_eq!(
            message.from.as_ref().unwrap().to_string(),
            "herald@broadcast.localhost"
        );
        assert_eq!(message.type_, MessageKind::Headline.into());
        assert_eq!(message.bodies.values().next().unwrap(), "hello");
        assert_eq!(message.subjects.values().next().unwrap(), "subj");
    }

    #[test]
    fn empty_book_counts_everyone_offline() {
        let fanout = fan_out(&job("available"), &PresenceBook::new());
        assert!(fanout.deliver_to.is_empty());
        assert_eq!(fanout.report.skipped.offline, 5);
        assert!(fanout.report.is_complete());
    }

    #[test]
    fn strangers_are_the_users_not_yet_done_that_the_test_names() {
        let job = job("available");
        let unknown = |user: &BareJid| user.node().is_some_and(|n| n.as_str() != "avail");
        let all = strangers(&job, Progress::default(), unknown);
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        // The invalid entry (with a resource) is never probed.
        assert_eq!(
            names,
            [
                "chatty@localhost",
                "away@localhost",
                "dnd@localhost",
                "gone@localhost"
            ]
        );
        let resumed = Progress {
            next: 4,
            ..Progress::default()
        };
        assert_eq!(
            strangers(&job, resumed, unknown),
            [BareJid::new("gone@localhost").unwrap()]
        );
        assert!(strangers(&job, Progress::default(), |_| false).is_empty());
    }

    #[test]
    fn resuming_skips_confirmed_recipients_and_adds_to_their_counts() {
        let job = job("available");
        let whole = fan_out_from(&job, &book(), Progress::default(), 2, false);
        assert_eq!(whole.report, fan_out(&job, &book()).report);
        // Six recipients, a checkpoint after every two, none at the end.
        assert_eq!(whole.checkpoints.len(), 2);
        let (messages_before, progress) = whole.checkpoints[1];
        assert_eq!(progress.next, 4);

        let rest = fan_out_from(&job, &book(), progress, 2, true);
        assert_eq!(
            rest.deliver_to.len(),
            whole.deliver_to.len() - messages_before
        );
        assert_eq!(
            rest.report,
            Report {
                possible_duplicates: rest.deliver_to.len(),
                ..whole.report.clone()
            }
        );
        assert!(rest.report.is_complete());
        assert!(rest.checkpoints.is_empty());
    }

    #[test]
    fn a_resumed_attempt_numbers_its_messages_as_the_first_did() {
        let job = job("online");
        let whole = fan_out_from(&job, &book(), Progress::default(), 2, false);
        let (messages_before, progress) = whole.checkpoints[0];
        let rest = fan_out_from(&job, &book(), progress, 2, true);
        assert!(!rest.deliver_to.is_empty());
        // The same positions, so the same message ids, for clients to
        // recognise the copies.
        assert_eq!(rest.deliver_to, whole.deliver_to[messages_before..]);
    }

    #[test]
    fn a_resumed_attempt_carries_the_possible_duplicates_of_the_attempts_before_it() {
        let job = job("available");
        let first = fan_out_from(&job, &book(), Progress::default(), 2, true);
        let (_, progress) = first.checkpoints[0];
        assert_eq!(progress.next, 2);
        let resent_before = progress.possible_duplicates;
        assert!(
            resent_before > 0,
            "the redelivered attempt's messages so far"
        );
        let second = fan_out_from(&job, &book(), progress, 2, true);
        assert_eq!(
            second.report.possible_duplicates,
            resent_before + second.deliver_to.len()
        );
    }
}
