//! Cancelling jobs end to end (each test on Prosody and on ejabberd), with
//! `herald cancel` over the control queue: a job cancelled before it is
//! published sends nothing and is reported cancelled, a crash of Herald in
//! between notwithstanding; one cancelled while
//! a 10,000-recipient job goes out stops, or had completed (the reply says
//! which), and either way its report adds up and nobody gets it twice.
//! That the stop falls between slices is proven in the core's tests
//! (`src/core/tests/cancel.rs`); here the timing decides which case runs.

use std::time::Duration;

use herald_testkit::events::next_report;
use herald_testkit::herald::herald_cli as herald;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
/// Recipients of the big job besides alice and bob: users of a domain
/// Herald does not serve, offline to it (and not probed).
const ELSEWHERE: usize = 9_998;

herald_testkit::on_both_servers!(
    a_job_cancelled_before_it_is_published_sends_nothing,
    a_job_cancelled_while_it_goes_out_stops_or_had_completed,
);

async fn a_job_cancelled_before_it_is_published_sends_nothing<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob"]).await;
    let config = stack.config_path().to_path_buf();

    let reply = herald(&config, &["cancel", "regretted"], 0).await;
    assert_eq!(
        reply,
        json!({"ok": true, "result": {"id": "regretted", "state": "pending"}})
    );
    // Answered once stored: a crash right after it loses nothing.
    stack.herald.kill();
    stack.herald.restart();
    let mut alice = stack.online("alice").await;
    let to = ["alice@localhost", "bob@localhost", "alice@localhost/phone"];
    stack
        .publish(json!({"id": "regretted", "to": to, "body": "regretted"}))
        .await;
    let report = next_report(&mut stack.reports, "regretted").await;
    assert_eq!(report["cancelled"], true, "{report}");
    assert_eq!(report["sent"], 0, "{report}");
    assert_eq!(report["skipped"]["cancelled"], 2, "{report}");
    assert_eq!(report["skipped"]["invalid"], 1, "{report}");

    // A job after it reaches alice, and it is the first she gets.
    stack
        .publish(json!({"id": "after", "to": ["alice@localhost"], "body": "after"}))
        .await;
    let (_, body, _) = alice.next_message(WAIT).await.expect("the next job");
    assert_eq!(body, "after");

    // Completed now: nothing to cancel, and no error.
    let again = herald(&config, &["cancel", "after"], 0).await;
    assert_eq!(again["result"]["state"], "completed", "{again}");
    assert_eq!(
        stack.metric("herald_jobs_total{outcome=\"cancelled\"}"),
        1.0
    );
}

async fn a_job_cancelled_while_it_goes_out_stops_or_had_completed<S: XmppServer>() {
    // A queue of two stanzas: the big job goes out in slices of at most
    // two messages (and eight recipients walked).
    let env = [("HERALD_XMPP__OUTBOUND_HIGH_WATER", "2")];
    let mut stack = Stack::<S>::start_with_env(&["alice", "bob"], &env).await;
    let mut alice = stack.online("alice").await;
    let mut bob = stack.online("bob").await;
    let config = stack.config_path().to_path_buf();

    let mut to = vec!["alice@localhost".to_string()];
    to.extend((0..ELSEWHERE).map(|i| format!("user{i}@elsewhere.test")));
    to.push("bob@localhost".into());
    stack
        .publish(json!({"id": "big", "to": to, "body": "big"}))
        .await;
    let reply = herald(&config, &["cancel", "big"], 0).await;
    let report = next_report(&mut stack.reports, "big").await;
    let state = reply["result"]["state"].as_str().unwrap_or_default();
    println!("cancel found the job {state}: {report}");

    let count = |field: &str| report["skipped"][field].as_u64().unwrap_or(0);
    let sent = report["sent"].as_u64().unwrap_or(0);
    let total = sent + count("offline") + count("unavailable") + count("invalid");
    assert_eq!(report["recipients"], ELSEWHERE + 2, "{report}");
    assert_eq!(
        total + count("expired") + count("cancelled"),
        ELSEWHERE as u64 + 2,
        "every recipient counted once: {report}"
    );
    match state {
        "in_progress" => {
            assert_eq!(report["cancelled"], true, "{report}");
            assert_eq!(reply["result"]["report"], report, "the reply told it");
        }
        "pending" => {
            assert_eq!((report["cancelled"].clone(), sent), (json!(true), 0));
        }
        "completed" => {
            assert!(report.get("cancelled").is_none(), "{report}");
            assert_eq!(sent, 2, "{report}");
        }
        other => panic!("state {other:?}: {reply}"),
    }
    // What was sent arrived, once.
    let mut received = 0;
    for user in [&mut alice, &mut bob] {
        let messages: Vec<Value> = user
            .collect_messages(Duration::from_secs(2))
            .await
            .into_iter()
            .map(|m| json!(m.body))
            .collect();
        assert!(messages.len() <= 1, "{}: {messages:?}", user.bare_jid());
        received += messages.len() as u64;
    }
    assert_eq!(received, sent, "{report}");
    assert_eq!(stack.herald.stop(), Some(0));
    assert_eq!(stack.amqp.message_count(&stack.names.jobs).await, Some(0));
}
