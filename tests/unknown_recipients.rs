//! Recipients Herald has never heard of. Herald learns who shares presence
//! with it from the presence the server routes to it; a user who was
//! online before a fresh Herald connected has sent it nothing. Herald
//! probes such recipients before it fans a job out to them, and remembers
//! for a while whom it probed in vain.

use std::time::Duration;

use herald_testkit::c2s::XmppUser;
use herald_testkit::events::next_report;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const UNKNOWN_PROBES: &str = r#"herald_probes_sent_total{reason="unknown_recipient"}"#;

herald_testkit::on_both_servers!(
    a_user_online_before_a_fresh_herald_started_gets_the_first_job,
    a_recipient_who_answers_no_probe_is_offline_and_not_probed_again_soon,
);

async fn a_user_online_before_a_fresh_herald_started_gets_the_first_job<S: XmppServer>() {
    let server = S::start(&["alice"]);
    let mut alice = XmppUser::login_available(&server, "alice", "desk").await;
    // A fresh store: Herald has nobody to probe when it connects.
    let mut stack = Stack::start_on(server, &[]).await;
    assert_eq!(stack.metric("herald_subscriptions"), 0.0);
    assert_eq!(stack.metric("herald_online_users"), 0.0);

    stack
        .publish(json!({"id": "first", "to": ["alice@localhost"], "body": "are you there"}))
        .await;
    assert_counts(&next_report(&mut stack.reports, "first").await, 1, 0);
    let (_, body, _) = alice.next_message(WAIT).await.expect("alice gets it");
    assert_eq!(body, "are you there");
    assert_eq!(stack.metric(UNKNOWN_PROBES), 1.0);
    // The answer made her a known subscriber, as presence always does.
    assert_eq!(stack.metric("herald_subscriptions"), 1.0);

    // Known now: the next job goes without a probe.
    stack
        .publish(json!({"id": "second", "to": ["alice@localhost"], "body": "still there"}))
        .await;
    assert_counts(&next_report(&mut stack.reports, "second").await, 1, 0);
    assert_eq!(
        alice.next_message(WAIT).await.expect("again").1,
        "still there"
    );
    assert_eq!(stack.metric(UNKNOWN_PROBES), 1.0);
}

async fn a_recipient_who_answers_no_probe_is_offline_and_not_probed_again_soon<S: XmppServer>() {
    // bob exists (offline, subscribed); nobody has no account at all.
    let mut stack = Stack::<S>::start(&["alice", "bob"]).await;
    let mut alice = stack.online("alice").await;
    let to = ["alice@localhost", "bob@localhost", "nobody@localhost"];

    stack
        .publish(json!({"id": "one", "to": to, "body": "first"}))
        .await;
    assert_counts(&next_report(&mut stack.reports, "one").await, 1, 2);
    assert_eq!(alice.next_message(WAIT).await.expect("alice").1, "first");
    assert_eq!(stack.metric(UNKNOWN_PROBES), 2.0, "bob and nobody probed");

    // Within the TTL neither is probed again, and the job is not held.
    stack
        .publish(json!({"id": "two", "to": to, "body": "second"}))
        .await;
    assert_counts(&next_report(&mut stack.reports, "two").await, 1, 2);
    assert_eq!(alice.next_message(WAIT).await.expect("alice").1, "second");
    assert_eq!(stack.metric(UNKNOWN_PROBES), 2.0);
    assert_eq!(stack.metric("herald_subscriptions"), 1.0, "only alice");
    assert_eq!(stack.metric("herald_held_jobs"), 0.0);
}

fn assert_counts(report: &Value, sent: u64, offline: u64) {
    assert_eq!(report["recipients"], sent + offline, "{report}");
    assert_eq!(report["sent"], sent, "{report}");
    assert_eq!(report["skipped"]["offline"], offline, "{report}");
}
