use super::*;
use crate::broadcast::job::{JobLimits, MessageKind};
use crate::presence::{Clock, ResourcePresence, Show};
use xmpp_parsers::jid::{BareJid, FullJid};

fn book() -> PresenceBook {
    let mut book = PresenceBook::new();
    let origin = std::time::Instant::now();
    let at = Clock::new(origin).stamp(origin);
    for (jid, show) in [
        ("avail@localhost/r", Show::Online),
        ("chatty@localhost/r", Show::Chat),
        ("away@localhost/r", Show::Away),
        ("dnd@localhost/r", Show::Dnd),
    ] {
        book.set_available(
            &FullJid::new(jid).unwrap(),
            ResourcePresence { show, priority: 0 },
            at,
        );
    }
    book
}

fn job(policy: &str) -> Job {
    let limits = JobLimits {
        component_domain: BareJid::new("broadcast.localhost").unwrap(),
        default_sender: "herald@broadcast.localhost".parse().unwrap(),
        max_body_bytes: 1024,
        max_recipients: 100,
        allowed_from: Vec::new(),
        names_part_bytes: 256 * 1024,
        max_deliver_within: std::time::Duration::from_secs(3600),
        receipts_window: std::time::Duration::from_secs(300),
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
                invalid: 1,
                ..Skipped::default()
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
    let mut job = job("available");
    let fanout = fan_out(&job, &book());
    let message = template(&mut job)
        .unwrap()
        .to_message(&fanout.deliver_to[0]);
    assert_eq!(
        message.from.as_ref().unwrap().to_string(),
        "herald@broadcast.localhost"
    );
    assert_eq!(message.type_, MessageKind::Headline.into());
    assert_eq!(message.bodies.values().next().unwrap(), "hello");
    assert_eq!(message.subjects.values().next().unwrap(), "subj");
}

#[test]
fn messages_name_their_recipient_in_the_job_not_in_a_copy() {
    let job = job("available");
    let fanout = fan_out(&job, &book());
    assert_eq!(fanout.deliver_to.len(), 2);
    assert_eq!(
        std::sync::Arc::strong_count(&job.recipients),
        1 + fanout.deliver_to.len(),
        "each message holds the job's recipients"
    );
    drop(fanout);
    assert_eq!(std::sync::Arc::strong_count(&job.recipients), 1);
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
    let unknown = |user: UserText<'_>| !user.0.starts_with("avail@");
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

#[test]
fn an_expired_job_sends_nothing_and_counts_every_user_expired() {
    let job = job("online");
    let report = stop_from(&job, Progress::default(), false, Stop::Expired);
    assert!(report.expired);
    assert_eq!(report.sent, 0);
    // Five users and one entry no time makes addressable.
    assert_eq!(report.skipped.expired, 5);
    assert_eq!(report.skipped.invalid, 1);
    assert!(report.is_complete());

    // Resumed after a checkpoint of an earlier attempt: those recipients
    // keep their counts, the rest expire.
    let first = fan_out_from(&job, &book(), Progress::default(), 2, false);
    let (_, progress) = first.checkpoints[0];
    let resumed = stop_from(&job, progress, false, Stop::Expired);
    assert_eq!(resumed.sent, progress.sent);
    assert_eq!(
        resumed.skipped.expired,
        job.recipients.len() - 1 - progress.next
    );
    assert!(resumed.is_complete());
    assert_eq!(
        resumed.possible_duplicates, 0,
        "one attempt before: no repeats"
    );

    // Two earlier attempts may both have gone past that checkpoint: each
    // recipient after it may have the message twice.
    let again = stop_from(&job, progress, true, Stop::Expired);
    assert_eq!(again.possible_duplicates, again.skipped.expired);
}

#[test]
fn a_walk_cancelled_midway_keeps_what_it_sent_and_cancels_the_rest() {
    let job = job("online");
    let mut walk = Walk::new(&job, Progress::default(), 100, false);
    for _ in 0..2 {
        walk.step(&job, &book());
    }
    let report = walk.stop(&job, Stop::Cancelled);
    assert!(report.cancelled && !report.expired);
    assert_eq!(report.sent, 2, "those already sent stay sent");
    // Four recipients left: three users and the invalid entry.
    assert_eq!(report.skipped.cancelled, 3);
    assert_eq!(report.skipped.invalid, 1);
    assert!(report.is_complete());
    assert_eq!(report.possible_duplicates, 0);

    let unwalked = stop_from(&job, Progress::default(), false, Stop::Cancelled);
    assert_eq!((unwalked.sent, unwalked.skipped.cancelled), (0, 5));
    assert_eq!(unwalked.skipped.expired, 0);
}
