//! Herald end to end: a real XMPP server (each test runs on Prosody and on
//! ejabberd), a real RabbitMQ, real c2s logins, and the `herald` binary in
//! between.

use std::time::Duration;

use herald_testkit::amqp::EventTap;
use herald_testkit::c2s::XmppUser;
use herald_testkit::crowd::{MixedCrowd, EVERYONE_AND_A_FULL_JID};
use herald_testkit::events::{await_presence, next_report};
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// How long to watch for a message that must not arrive.
const QUIET: Duration = Duration::from_millis(1500);

fn counts(sent: u64, offline: u64, unavailable: u64, invalid: u64) -> Value {
    json!({"sent": sent, "skipped": {"offline": offline, "unavailable": unavailable, "invalid": invalid}})
}

fn assert_counts(report: &Value, recipients: u64, expected: Value) {
    assert_eq!(report["recipients"], recipients, "{report}");
    assert_eq!(report["sent"], expected["sent"], "{report}");
    assert_eq!(report["skipped"], expected["skipped"], "{report}");
}

herald_testkit::on_both_servers!(
    job_reaches_available_users_only_and_report_counts_every_recipient,
    chat_to_the_component_becomes_a_message_received_event,
    bad_jobs_are_dead_lettered_with_a_reason_and_herald_keeps_delivering,
    after_a_restart_probes_rebuild_presence_without_users_doing_anything,
);

async fn job_reaches_available_users_only_and_report_counts_every_recipient<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob", "carol", "dave", "erin"]).await;
    // dave has two resources: one does not want messages, one does; erin
    // was online and left.
    let MixedCrowd {
        mut alice,
        mut bob,
        mut dave_dnd,
        mut dave_chat,
    } = MixedCrowd::log_in(&stack.server, &mut stack.presence, "erin").await;

    let to = EVERYONE_AND_A_FULL_JID;
    stack
        .publish(json!({"id": "job-1", "to": to, "body": "fire drill at 3 <pm> & \"on time\"", "subject": "drill"}))
        .await;
    let report = next_report(&mut stack.reports, "job-1").await;
    assert_counts(&report, 6, counts(2, 2, 1, 1));

    let (from, body, kind) = alice
        .next_message(WAIT)
        .await
        .expect("alice gets the message");
    assert_eq!(from, "herald@broadcast.localhost");
    assert_eq!(body, "fire drill at 3 <pm> & \"on time\"");
    assert_eq!(kind, "chat");
    let (_, body, _) = dave_chat
        .next_message(WAIT)
        .await
        .expect("dave gets it at his desk");
    assert_eq!(body, "fire drill at 3 <pm> & \"on time\"");
    bob.expect_no_message(QUIET).await;
    alice.expect_no_message(QUIET).await;

    // dave's available resource leaves: only the dnd one is left.
    dave_chat.disconnect().await;
    await_presence(&mut stack.presence, "dave@localhost/desk", None).await;
    stack
        .publish(json!({"id": "job-2", "to": ["dave@localhost", "bob@localhost"], "body": "second", "policy": "online", "type": "headline", "from": "alerts"}))
        .await;
    let report = next_report(&mut stack.reports, "job-2").await;
    assert_counts(&report, 2, counts(2, 0, 0, 0));
    let message = bob
        .next_received(WAIT)
        .await
        .expect("online policy reaches away bob");
    assert_eq!(message.from, "alerts@broadcast.localhost");
    assert_eq!(message.kind, "headline");
    assert!(
        dave_dnd.next_message(WAIT).await.is_some(),
        "online policy reaches dnd dave"
    );
}

async fn chat_to_the_component_becomes_a_message_received_event<S: XmppServer>() {
    let stack = Stack::<S>::start(&["alice"]).await;
    let mut messages = EventTap::bind(&stack.names.events, "message.received").await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    alice
        .send_chat("herald@broadcast.localhost", "reply: I am safe")
        .await;
    let event = messages
        .next_with_key("message.received", WAIT)
        .await
        .expect("message.received event");
    assert_eq!(event["from"], "alice@localhost/desk");
    assert_eq!(event["to"], "herald@broadcast.localhost");
    assert_eq!(event["body"], "reply: I am safe");
}

async fn bad_jobs_are_dead_lettered_with_a_reason_and_herald_keeps_delivering<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice"]).await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;

    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not a valid job"),
        (
            json!({"to": ["alice@localhost"], "body": "no id"})
                .to_string()
                .into_bytes(),
            "missing field `id`",
        ),
        (
            json!({"id": "b3", "to": ["alice@localhost"], "body": "bell \u{7} rings"})
                .to_string()
                .into_bytes(),
            "U+0007",
        ),
        (
            json!({"id": "b4", "to": ["alice@localhost", "a@b@c"], "body": "x"})
                .to_string()
                .into_bytes(),
            "recipient #1",
        ),
        (
            json!({"id": "b5", "to": ["alice@localhost"], "body": "x", "from": "a@b"})
                .to_string()
                .into_bytes(),
            "field `from`",
        ),
    ];
    for (payload, _) in &bad {
        stack
            .amqp
            .publish_to(
                "",
                &stack.names.jobs,
                payload,
                herald_testkit::amqp::json_properties(),
            )
            .await;
    }
    for (payload, reason) in &bad {
        let dead = stack
            .amqp
            .get_one(&stack.names.dead, WAIT)
            .await
            .unwrap_or_else(|| panic!("dead letter for {reason}"));
        assert_eq!(&dead.body, payload);
        let error = dead.headers["x-herald-error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains(reason),
            "reason {error:?} should mention {reason:?}"
        );
    }
    alice.expect_no_message(QUIET).await;

    stack
        .publish(json!({"id": "good", "to": ["alice@localhost"], "body": "still here"}))
        .await;
    assert_counts(
        &next_report(&mut stack.reports, "good").await,
        1,
        counts(1, 0, 0, 0),
    );
    let (_, body, _) = alice.next_message(WAIT).await.expect("good job delivered");
    assert_eq!(body, "still here");
    assert!(stack.herald.is_running());
}

async fn after_a_restart_probes_rebuild_presence_without_users_doing_anything<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob", "carol"]).await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let mut bob = XmppUser::login_available(&stack.server, "bob", "desk").await;
    await_presence(&mut stack.presence, "bob@localhost/desk", Some("online")).await;
    let carol = XmppUser::login_available(&stack.server, "carol", "desk").await;
    await_presence(&mut stack.presence, "carol@localhost/desk", Some("online")).await;

    assert_eq!(stack.herald.stop(), Some(0), "clean exit on SIGTERM");
    // While Herald is away: bob steps away, carol leaves.
    bob.send_presence(Some("away"), 0).await;
    carol.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    stack.herald.restart();
    stack
        .publish(json!({"id": "after-restart", "to": ["alice@localhost", "bob@localhost", "carol@localhost"], "body": "welcome back"}))
        .await;
    assert_counts(
        &next_report(&mut stack.reports, "after-restart").await,
        3,
        counts(1, 1, 1, 0),
    );
    let (_, body, _) = alice.next_message(WAIT).await.expect("alice gets it");
    assert_eq!(body, "welcome back");
    bob.expect_no_message(QUIET).await;
}
