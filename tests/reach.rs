//! What an alerting application learns from a broadcast beyond the count
//! of messages sent, end to end on both servers with real c2s users: each
//! message's id (the same when the job is sent again, for clients to drop
//! the copy) and its thread, which ties a reply to its job; a job's
//! deadline, after which it sends nothing and its report says why; its
//! request that servers not keep its messages; and who, by name, it
//! reached and missed.

use std::time::Duration;

use herald_testkit::amqp::EventTap;
use herald_testkit::c2s::{ReceivedMessage, XmppUser};
use herald_testkit::cut_proxy::Direction;
use herald_testkit::delivery::{own_report, reports_of};
use herald_testkit::events::{await_presence, next_report};
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
/// How long users' messages are collected once a job is reported.
const COLLECT: Duration = Duration::from_secs(3);
/// How long to watch for a message that must not arrive.
const QUIET: Duration = Duration::from_millis(1500);
const SID_NS: &str = "urn:xmpp:sid:0";

herald_testkit::on_both_servers!(
    a_job_sent_again_gives_each_recipient_the_same_message_id,
    a_reply_in_a_broadcasts_thread_names_its_job,
    a_job_taken_after_its_deadline_sends_nothing_and_its_report_counts_everyone,
    messages_of_a_job_asking_not_to_be_stored_carry_the_hints,
    a_job_asking_for_names_gets_who_was_reached_and_missed_in_parts,
);

/// Recipients of the named job: enough that its names fill many parts.
const NAMED_RECIPIENTS: usize = 10_000;
/// Users of a domain Herald does not serve among the named job's
/// recipients (offline to it, and not probed, so they cost no stanza and
/// need no account): all but alice, bob, carol and dave.
const ELSEWHERE: usize = NAMED_RECIPIENTS - 4;

/// The message's id, which its origin-id must repeat.
fn message_id(message: &ReceivedMessage) -> String {
    let id = message.id.clone().expect("the message has an id");
    let origin_id = message
        .stanza
        .get_child("origin-id", SID_NS)
        .and_then(|origin| origin.attr("id"));
    assert_eq!(origin_id, Some(id.as_str()), "{:?}", message.stanza);
    id
}

async fn a_job_sent_again_gives_each_recipient_the_same_message_id<S: XmppServer>() {
    // No keepalive pings: the only IQ the server sends once the cut is
    // armed is its answer to the job's ping.
    let quiet = [
        ("HERALD_XMPP__KEEPALIVE_SECS", "600"),
        ("HERALD_XMPP__READ_TIMEOUT_SECS", "1200"),
    ];
    let (mut stack, proxy) = Stack::<S>::start_behind_proxy(&["alice", "bob"], &quiet).await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let mut bob = XmppUser::login_available(&stack.server, "bob", "desk").await;
    await_presence(&mut stack.presence, "bob@localhost/desk", Some("online")).await;

    // Whatever Herald wrote since the logins answered first (pings follow
    // any stanza it writes): a job's report comes after the answer to the
    // ping behind it, and the server answers in order.
    let to = ["alice@localhost", "bob@localhost"];
    stack
        .publish(json!({"id": "first", "to": to, "body": "ready"}))
        .await;
    own_report(&reports_of(&mut stack.reports, "first").await);
    for user in [&mut alice, &mut bob] {
        user.next_received(WAIT).await.expect("the first job");
    }

    // The server reads the job's messages, but its answer to the ping
    // behind them is cut: Herald cannot know, and sends the job again on
    // its next stream.
    proxy.arm(Direction::ServerToHerald, "<iq", 1);
    stack
        .publish(json!({"id": "twice", "to": to, "body": "evacuate"}))
        .await;
    proxy.wait_cuts(1, WAIT).await;
    let report = own_report(&reports_of(&mut stack.reports, "twice").await);
    assert_eq!(report["sent"], 2, "{report}");
    assert_eq!(report["possible_duplicates"], 2, "{report}");

    let mut first_ids = Vec::new();
    for (user, position) in [(&mut alice, 0), (&mut bob, 1)] {
        let copies = user.collect_messages(COLLECT).await;
        assert_eq!(copies.len(), 2, "{}: {copies:?}", user.jid());
        let ids: Vec<String> = copies.iter().map(message_id).collect();
        assert_eq!(ids[0], ids[1], "{}: a copy is recognisable", user.jid());
        assert!(ids[0].ends_with(&format!(".{position}")), "{ids:?}");
        first_ids.push(ids[0].clone());
    }
    assert_ne!(
        first_ids[0], first_ids[1],
        "each recipient's message has its own id"
    );

    // Another job, other ids.
    stack
        .publish(json!({"id": "next", "to": ["alice@localhost"], "body": "all clear"}))
        .await;
    let next = alice.next_received(WAIT).await.expect("the next job");
    assert_ne!(message_id(&next), first_ids[0]);
    assert_eq!(stack.herald.stop(), Some(0));
}

async fn a_reply_in_a_broadcasts_thread_names_its_job<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice"]).await;
    let mut replies = EventTap::bind(&stack.names.events, "message.received").await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    stack
        .publish(json!({"id": "roll-call 7", "to": ["alice@localhost"], "body": "are you safe?", "from": "alerts"}))
        .await;
    let message = alice.next_received(WAIT).await.expect("the broadcast");
    message_id(&message);
    let thread = message
        .stanza
        .get_child("thread", "jabber:client")
        .map(|thread| thread.text())
        .expect("the message has a thread");

    // She answers in the thread, as clients do; then outside it.
    for (thread, job) in [(Some(thread.as_str()), Some("roll-call 7")), (None, None)] {
        let thread = thread
            .map(|t| format!("<thread>{t}</thread>"))
            .unwrap_or_default();
        alice
            .send_xml(&format!(
                "<message xmlns='jabber:client' type='chat' to='alerts@broadcast.localhost'>\
                 <body>safe</body>{thread}</message>"
            ))
            .await;
        let event = replies
            .next_with_key("message.received", WAIT)
            .await
            .expect("message.received event");
        assert_eq!(event["from"], "alice@localhost/desk", "{event}");
        assert_eq!(event["body"], "safe", "{event}");
        assert_eq!(event["job"].as_str(), job, "{event}");
    }
    assert_eq!(stack.herald.stop(), Some(0));
}

async fn a_job_taken_after_its_deadline_sends_nothing_and_its_report_counts_everyone<
    S: XmppServer,
>() {
    let mut stack = Stack::<S>::start(&["alice", "bob"]).await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let to = ["alice@localhost", "bob@localhost", "carol@localhost/desk"];

    // An offer that waited out its deadline (in a queue during an outage, say).
    stack
        .publish(json!({"id": "stale", "to": to, "body": "20% off until noon", "expires_at": "2020-01-01T12:00:00Z"}))
        .await;
    let report = next_report(&mut stack.reports, "stale").await;
    assert_eq!(report["expired"], true, "{report}");
    assert_eq!(report["recipients"], 3, "{report}");
    assert_eq!(report["sent"], 0, "{report}");
    let skipped = &report["skipped"];
    assert_eq!(skipped["expired"], 2, "{report}");
    assert_eq!(skipped["invalid"], 1, "{report}");
    let counted: u64 = ["offline", "unavailable", "invalid", "expired"]
        .iter()
        .map(|outcome| skipped[outcome].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 3, "every recipient in one count: {report}");
    alice.expect_no_message(QUIET).await;
    assert_eq!(
        stack.metric(r#"herald_recipients_total{outcome="expired"}"#),
        2.0
    );

    // Before its deadline, a job goes out as any other.
    stack
        .publish(json!({"id": "fresh", "to": to, "body": "20% off until noon", "expires_at": "2999-01-01T12:00:00+01:00"}))
        .await;
    let report = next_report(&mut stack.reports, "fresh").await;
    assert!(report.get("expired").is_none(), "{report}");
    assert_eq!(report["sent"], 1, "{report}");
    let message = alice.next_received(WAIT).await.expect("the fresh offer");
    assert_eq!(message.body, "20% off until noon");
    assert_eq!(stack.herald.stop(), Some(0));
}

async fn messages_of_a_job_asking_not_to_be_stored_carry_the_hints<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice"]).await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    for (storage, expected) in [
        ("no-store", vec!["no-store", "no-permanent-store"]),
        ("no-permanent-store", vec!["no-permanent-store"]),
        ("default", vec![]),
    ] {
        stack
            .publish(json!({"id": storage, "to": ["alice@localhost"], "body": storage, "storage": storage}))
            .await;
        let message = alice.next_received(WAIT).await.expect("the offer");
        assert_eq!(message.body, storage);
        let hints: Vec<&str> = message
            .stanza
            .children()
            .filter(|child| child.ns() == "urn:xmpp:hints")
            .map(|child| child.name())
            .collect();
        assert_eq!(hints, expected, "{:?}", message.stanza);
    }
    assert_eq!(stack.herald.stop(), Some(0));
}

async fn a_job_asking_for_names_gets_who_was_reached_and_missed_in_parts<S: XmppServer>() {
    let env = [("HERALD_BROADCAST__NAMES_PART_BYTES", "16384")];
    let mut stack = Stack::<S>::start_with_env(&["alice", "bob", "carol"], &env).await;
    let mut names = EventTap::bind(&stack.names.events, "job.report.names").await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let mut carol = XmppUser::login_available(&stack.server, "carol", "desk").await;
    carol.send_presence(Some("away"), 0).await;
    await_presence(&mut stack.presence, "carol@localhost/desk", Some("away")).await;

    let mut to = vec!["alice@localhost", "bob@localhost", "carol@localhost"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    to.extend((0..ELSEWHERE).map(|i| format!("user{i}@elsewhere.test")));
    to.push("Alice@localhost".into());
    to.push("dave@localhost/phone".into());
    stack
        .publish(json!({"id": "named", "to": to, "body": "evacuate", "report_names": true}))
        .await;
    let report = next_report(&mut stack.reports, "named").await;
    let message = alice.next_received(WAIT).await.expect("alice's message");
    assert_eq!(message.body, "evacuate");

    let set = report["names"]["set"].clone();
    let count = report["names"]["parts"]
        .as_u64()
        .expect("the report counts parts");
    assert!(
        count >= 2,
        "{NAMED_RECIPIENTS} names in parts of 16 KiB: {report}"
    );
    let mut parts = Vec::new();
    while parts.len() < count as usize {
        let part = names
            .next_matching("job.report.names", WAIT, |p| {
                p["id"] == "named" && p["set"] == set
            })
            .await
            .unwrap_or_else(|| panic!("{} of {count} parts came", parts.len()));
        assert!(
            part.to_string().len() <= 16_384,
            "part {} is too big",
            part["part"]
        );
        parts.push(part);
    }
    let numbers: Vec<u64> = parts.iter().map(|p| p["part"].as_u64().unwrap()).collect();
    assert_eq!(
        numbers,
        (1..=count).collect::<Vec<_>>(),
        "in order, before the report"
    );
    let list = |outcome: &str| -> Vec<String> {
        parts
            .iter()
            .flat_map(|p| p[outcome].as_array().cloned().unwrap_or_default())
            .map(|name| name.as_str().unwrap().to_string())
            .collect()
    };
    for (outcome, counted) in [
        ("sent", &report["sent"]),
        ("offline", &report["skipped"]["offline"]),
        ("unavailable", &report["skipped"]["unavailable"]),
        ("invalid", &report["skipped"]["invalid"]),
    ] {
        assert_eq!(
            list(outcome).len() as u64,
            counted.as_u64().unwrap(),
            "{outcome}: {report}"
        );
    }
    // Every recipient, the job's duplicate left out, named exactly once
    // (compared, not printed: there are too many to read).
    let mut named: Vec<String> = ["sent", "offline", "unavailable", "invalid"]
        .into_iter()
        .flat_map(list)
        .collect();
    named.sort();
    let mut recipients: Vec<String> = to.into_iter().filter(|r| r != "Alice@localhost").collect();
    recipients.sort();
    assert_eq!(named.len(), NAMED_RECIPIENTS);
    assert!(named == recipients, "the parts name each recipient once");
    assert_eq!(list("sent"), ["alice@localhost"], "alice once");
    assert_eq!(list("unavailable"), ["carol@localhost"]);
    assert_eq!(list("invalid"), ["dave@localhost/phone"]);
    let offline = list("offline");
    assert_eq!(offline[0], "bob@localhost");
    assert_eq!(
        offline[ELSEWHERE],
        format!("user{}@elsewhere.test", ELSEWHERE - 1)
    );
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(report["skipped"]["offline"], ELSEWHERE + 1, "{report}");
    assert_eq!(report["recipients"], NAMED_RECIPIENTS, "{report}");
    assert_eq!(stack.herald.stop(), Some(0));
}
