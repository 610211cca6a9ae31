//! Applying a job's policy to the presence book: which recipients get a
//! message, and the report that accounts for every one of them. Pure code.

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Lang, Message};

use super::job::{Job, Recipient};
use crate::presence::{PresenceBook, Reachability};

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

/// The messages to send for a job, and its report.
pub struct Fanout {
    pub messages: Vec<Message>,
    pub report: Report,
}

pub fn fan_out(job: &Job, book: &PresenceBook) -> Fanout {
    let mut report = Report {
        id: job.id.clone(),
        recipients: job.recipients.len(),
        ..Report::default()
    };
    let mut messages = Vec::new();
    for recipient in &job.recipients {
        let user = match recipient {
            Recipient::User(user) => user,
            Recipient::Invalid(_) => {
                report.skipped.invalid += 1;
                continue;
            }
        };
        match book.reachability(user, job.policy) {
            Reachability::Deliver => {
                report.sent += 1;
                messages.push(message_to(job, Jid::from(user.clone())));
            }
            Reachability::Unavailable => report.skipped.unavailable += 1,
            Reachability::Offline => report.skipped.offline += 1,
        }
    }
    Fanout { messages, report }
}

fn message_to(job: &Job, to: Jid) -> Message {
    let mut message = Message::new(Some(to));
    message.from = Some(Jid::from(job.from.clone()));
    message.type_ = job.kind.into();
    message.bodies.insert(Lang::default(), job.body.clone());
    if let Some(subject) = &job.subject {
        message.subjects.insert(Lang::default(), subject.clone());
    }
    message
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
        };
        let json = serde_json::json!({
            "id": "j", "body": "hello", "subject": "subj", "policy": policy, "type": "headline",
            "to": ["avail@localhost", "chatty@localhost", "away@localhost", "dnd@localhost",
                   "gone@localhost", "x@localhost/res"]
        });
        Job::parse(json.to_string().as_bytes(), &limits).unwrap()
    }

    fn recipients(fanout: &Fanout) -> Vec<String> {
        fanout
            .messages
            .iter()
            .map(|m| m.to.as_ref().unwrap().to_string())
            .collect()
    }

    #[test]
    fn available_policy_reaches_only_available_users() {
        let fanout = fan_out(&job("available"), &book());
        assert_eq!(recipients(&fanout), ["avail@localhost", "chatty@localhost"]);
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
                duplicate: false,
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
        let fanout = fan_out(&job("available"), &book());
        let message = &fanout.messages[0];
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
        assert!(fanout.messages.is_empty());
        assert_eq!(fanout.report.skipped.offline, 5);
        assert!(fanout.report.is_complete());
    }
}
