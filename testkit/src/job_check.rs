//! The properties every job payload must have, whatever its bytes: parsing
//! never panics; a refused job says why; an accepted job's report accounts
//! for every recipient and its messages, written by Herald's stream encoder,
//! are well-formed XML that carries the body, subject, sender and recipient
//! unchanged, each with an id of its own, repeated in its origin-id, and a
//! thread that reads back as the job's id. Shared by the property tests, the corpus test and the fuzz
//! target; a violated property panics.

use std::sync::Arc;

use herald::broadcast::fanout::template;
use herald::broadcast::job::{MessageKind, Recipient, Storage};
use herald::broadcast::marks::job_of_thread;
use herald::broadcast::{fan_out, Job, JobError, JobLimits};
use herald::presence::{Clock, PresenceBook, ResourcePresence, Show};
use herald::xmpp::wire::Outgoing;
use xmpp_parsers::jid::BareJid;

use crate::xml;

/// The deployment the checks assume: Herald on `broadcast.localhost`, the
/// default body limit, a recipient limit low enough to be crossed cheaply.
pub fn limits() -> JobLimits {
    JobLimits {
        component_domain: BareJid::new("broadcast.localhost").unwrap(),
        default_sender: "herald@broadcast.localhost".parse().unwrap(),
        max_body_bytes: 64 * 1024,
        max_recipients: 10_000,
        allowed_from: Vec::new(),
        names_part_bytes: 256 * 1024,
        max_deliver_within: std::time::Duration::from_secs(7 * 24 * 3600),
        receipts_window: std::time::Duration::from_secs(300),
    }
}

/// At most this many recipients of an accepted job are made available, so
/// a job with thousands of users costs no more to check than one with a few.
const DELIVERED: usize = 8;

/// What became of a payload.
#[derive(Debug)]
pub enum Verdict {
    Accepted(Job),
    Rejected(JobError),
}

/// Parses `payload` and checks every property; panics on a violation.
pub fn check_payload(payload: &[u8]) -> Verdict {
    match Job::parse(payload, &limits()) {
        Ok(job) => {
            check_accepted(&job);
            Verdict::Accepted(job)
        }
        Err(error) => {
            let reason = match &error {
                JobError::Json(reason) => reason,
                JobError::Field { reason, .. } | JobError::Recipient { reason, .. } => reason,
            };
            assert!(
                !reason.trim().is_empty(),
                "refusal without a reason: {error:?}"
            );
            Verdict::Rejected(error)
        }
    }
}

fn check_accepted(job: &Job) {
    let users: Vec<BareJid> = job
        .recipients
        .iter_from(0)
        .filter_map(|recipient| match recipient {
            Recipient::User(user) => BareJid::new(user).ok(),
            Recipient::Invalid(_) => None,
        })
        .take(DELIVERED)
        .collect();
    let mut book = PresenceBook::new();
    let origin = std::time::Instant::now();
    let at = Clock::new(origin).stamp(origin);
    for user in &users {
        let resource = user.with_resource_str("fuzz").unwrap();
        book.set_available(
            &resource,
            ResourcePresence {
                show: Show::Online,
                priority: 0,
            },
            at,
        );
    }
    let fanout = fan_out(job, &book);
    assert!(fanout.report.is_complete(), "{:?}", fanout.report);
    assert_eq!(fanout.report.recipients, job.recipients.len());
    assert_eq!(fanout.deliver_to.len(), users.len());

    let template = Arc::new(
        template(&mut job.clone()).unwrap_or_else(|e| panic!("job {:?} accepted but {e}", job.id)),
    );
    let stanzas: Vec<Outgoing> = fanout
        .deliver_to
        .into_iter()
        .map(|to| Outgoing::Message {
            template: template.clone(),
            to,
        })
        .collect();
    let written = xml::serialize(&stanzas).unwrap_or_else(|e| panic!("job {:?}: {e}", job.id));
    let parsed = xml::parse_stream(&written).unwrap_or_else(|e| {
        panic!(
            "job {:?} written as malformed XML: {e}\n{}",
            job.id,
            String::from_utf8_lossy(&written)
        )
    });
    assert_eq!(parsed.len(), users.len());
    let from = job.from.to_string();
    let mut ids = std::collections::HashSet::new();
    for (message, user) in parsed.iter().zip(&users) {
        let id = message.attr("id").expect("every message has an id");
        assert!(ids.insert(id.to_string()), "id {id:?} given twice");
        let origin_id = message
            .child("origin-id")
            .filter(|o| o.is("origin-id", "urn:xmpp:sid:0"));
        assert_eq!(
            origin_id.and_then(|o| o.attr("id")),
            Some(id),
            "{message:?}"
        );
        assert!(
            message.is("message", xmpp_parsers::ns::COMPONENT),
            "{message:?}"
        );
        assert_eq!(message.attr("to"), Some(user.to_string().as_str()));
        assert_eq!(message.attr("from"), Some(from.as_str()));
        let thread = message.child("thread").map(|t| t.text.as_str());
        assert_eq!(
            thread.and_then(job_of_thread).as_deref(),
            Some(job.id.as_str()),
            "thread of job {:?}",
            job.id
        );
        let hints: Vec<&str> = message
            .children
            .iter()
            .filter(|child| child.ns == "urn:xmpp:hints")
            .map(|child| child.name.as_str())
            .collect();
        let asked: &[&str] = match job.storage {
            Storage::Default => &[],
            Storage::NoPermanentStore => &["no-permanent-store"],
            Storage::NoStore => &["no-store", "no-permanent-store"],
        };
        assert_eq!(hints, asked, "hints of job {:?}", job.id);
        let type_ = message.attr("type");
        match job.kind {
            MessageKind::Chat => assert_eq!(type_, Some("chat")),
            MessageKind::Headline => assert_eq!(type_, Some("headline")),
            MessageKind::Normal => assert!(matches!(type_, None | Some("normal")), "{type_:?}"),
        }
        let body = message.child("body").map(|b| b.text.as_str());
        assert_eq!(body, Some(job.body.as_str()), "body of job {:?}", job.id);
        let subject = message.child("subject").map(|s| s.text.as_str());
        assert_eq!(
            subject,
            job.subject.as_deref(),
            "subject of job {:?}",
            job.id
        );
    }
}
