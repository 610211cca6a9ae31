//! The component connection cut in the middle of a stanza, between Herald
//! and a real server: a proxy on loopback ([`herald_testkit::cut_proxy`]) forwards
//! half of a stanza's start tag and ends the stream there.
//!
//! What a team sending alerts through Herald relies on, and these tests
//! check: Herald reconnects by itself and does not crash; the job being
//! written reaches every available recipient, at least once and twice at
//! most as often as its report says, and is reported once with every
//! recipient counted; no user gets a partial message; presence missed or
//! gone stale in the cut is rebuilt; and the next job is delivered as usual.

use std::time::Duration;

use herald_testkit::c2s::XmppUser;
use herald_testkit::cut_proxy::{CutProxy, Direction};
use herald_testkit::delivery::{assert_everyone_got_it, own_report, reports_of};
use herald_testkit::events::await_presence;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// How long users' messages are collected once a job is reported: the
/// server has read them all by then, delivery to c2s clients follows.
const COLLECT: Duration = Duration::from_secs(3);

herald_testkit::on_both_servers!(
    a_cut_while_herald_writes_a_job_loses_no_recipient_and_corrupts_no_message,
    a_cut_while_the_server_writes_to_herald_loses_no_job_and_presence_is_rebuilt,
    a_user_whose_first_presence_was_cut_gets_the_next_job,
);

const ONLINE: usize = 200;
const OFFLINE: usize = 1000;
const CHECKPOINT_EVERY: usize = 10;
/// The message cut in half: past several checkpoints, well before the end.
const CUT_MESSAGE: usize = 95;

async fn a_cut_while_herald_writes_a_job_loses_no_recipient_and_corrupts_no_message<
    S: XmppServer,
>() {
    let names: Vec<String> = (0..ONLINE).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let every = CHECKPOINT_EVERY.to_string();
    let env = [("HERALD_BROADCAST__CHECKPOINT_EVERY", every.as_str())];
    let (mut stack, proxy) = Stack::<S>::start_behind_proxy(&refs, &env).await;
    let mut users = stack.online_all(&names).await;

    proxy.arm(Direction::HeraldToServer, "<message", CUT_MESSAGE);
    let mut to: Vec<String> = names.iter().map(|n| format!("{n}@localhost")).collect();
    to.extend((0..OFFLINE).map(|i| format!("ghost{i}@localhost")));
    stack
        .publish(json!({"id": "big", "to": to, "body": "evacuate"}))
        .await;
    proxy.wait_cuts(1, WAIT).await;

    // The job was not confirmed when the stream broke: it went back to the
    // queue and came again on the next stream, resumed after the last
    // checkpoint the server confirmed. One report, every recipient counted.
    let report = own_report(&reports_of(&mut stack.reports, "big").await);
    assert_complete(&report, ONLINE, OFFLINE);
    let possible = report["possible_duplicates"].as_u64().unwrap_or(0) as usize;
    assert!(
        possible >= 1,
        "a resumed job says what may be duplicated: {report}"
    );
    assert_everyone_got_it(&mut users, "evacuate", COLLECT, &report).await;

    assert_eq!(proxy.connections(), 2, "Herald reconnects by itself, once");
    assert!(stack.herald.is_running());
    stack.herald.wait_readyz(200, WAIT);
    assert_eq!(
        stack.metric(r#"herald_jobs_total{outcome="requeued"}"#),
        1.0
    );
    assert_eq!(
        stack.metric(r#"herald_jobs_total{outcome="delivered"}"#),
        1.0
    );

    // The next job goes out once to everyone, like any job.
    let everyone: Vec<String> = names.iter().map(|n| format!("{n}@localhost")).collect();
    stack
        .publish(json!({"id": "after", "to": everyone, "body": "all clear"}))
        .await;
    let report = own_report(&reports_of(&mut stack.reports, "after").await);
    assert_complete(&report, ONLINE, 0);
    assert_eq!(
        assert_everyone_got_it(&mut users, "all clear", COLLECT, &report).await,
        0,
        "{report}"
    );

    assert_eq!(stack.herald.stop(), Some(0));
    assert_eq!(stack.amqp.message_count(&stack.names.jobs).await, Some(0));
    assert_eq!(stack.amqp.message_count(&stack.names.dead).await, Some(0));
}

async fn a_cut_while_the_server_writes_to_herald_loses_no_job_and_presence_is_rebuilt<
    S: XmppServer,
>() {
    // No keepalive pings: the only IQ the server sends after the last
    // cut is armed is then its answer to the job's ping.
    let quiet = [
        ("HERALD_XMPP__KEEPALIVE_SECS", "600"),
        ("HERALD_XMPP__READ_TIMEOUT_SECS", "1200"),
    ];
    let (mut stack, proxy) =
        Stack::<S>::start_behind_proxy(&["alice", "bob", "dave"], &quiet).await;
    let mut alice = stack.online("alice").await;
    let bob = stack.online("bob").await;
    // Dave has been online before, so Herald knows him and probes him.
    stack.online("dave").await.disconnect().await;
    await_presence(&mut stack.presence, "dave@localhost/desk", None).await;

    // Bob leaves; the presence that tells Herald is cut in half. A presence
    // book kept across the cut would still have him.
    proxy.arm(Direction::ServerToHerald, "<presence", 1);
    bob.disconnect().await;
    wait_reconnect(&mut stack, &proxy, 1).await;
    let report = job_to_everyone(&mut stack, "bob-left").await;
    assert_complete(&report, 1, 2);
    let alone = std::slice::from_mut(&mut alice);
    assert_eq!(
        assert_everyone_got_it(alone, "bob-left", COLLECT, &report).await,
        0
    );

    // Dave comes back; the presence that tells Herald is cut in half. Only
    // probing him again on the next stream finds him.
    proxy.arm(Direction::ServerToHerald, "<presence", 1);
    let dave = XmppUser::login_available(&stack.server, "dave", "desk").await;
    wait_reconnect(&mut stack, &proxy, 2).await;
    let mut users = vec![alice, dave];
    let report = job_to_everyone(&mut stack, "dave-back").await;
    assert_complete(&report, 2, 1);
    assert_eq!(
        assert_everyone_got_it(&mut users, "dave-back", COLLECT, &report).await,
        0
    );

    // The server's answer to the ping behind a job is cut in half: the
    // server read the job's messages, Herald cannot know it. The job is
    // sent again on the next stream, and its report says so.
    proxy.arm(Direction::ServerToHerald, "<iq", 1);
    let report = job_to_everyone(&mut stack, "unconfirmed").await;
    assert_eq!(proxy.cuts(), 3, "the answer to the job's ping was cut");
    wait_reconnect(&mut stack, &proxy, 3).await;
    assert_complete(&report, 2, 1);
    assert_eq!(report["possible_duplicates"], 2, "{report}");
    assert_everyone_got_it(&mut users, "unconfirmed", COLLECT, &report).await;

    assert!(stack.herald.is_running());
    assert_eq!(
        stack.metric(r#"herald_xmpp_connects_total{result="ok"}"#),
        4.0
    );
    assert_eq!(stack.herald.stop(), Some(0));
    assert_eq!(stack.amqp.message_count(&stack.names.jobs).await, Some(0));
}

async fn a_user_whose_first_presence_was_cut_gets_the_next_job<S: XmppServer>() {
    let (mut stack, proxy) = Stack::<S>::start_behind_proxy(&["erin"], &[]).await;
    // Erin has never been seen; her first presence is cut in half, so
    // Herald, on its next stream, has no reason to probe her.
    proxy.arm(Direction::ServerToHerald, "<presence", 1);
    let erin = XmppUser::login_available(&stack.server, "erin", "desk").await;
    wait_reconnect(&mut stack, &proxy, 1).await;
    assert_eq!(stack.metric("herald_subscriptions"), 0.0);

    // A job to her makes Herald probe her first.
    stack
        .publish(json!({"id": "first-seen", "to": ["erin@localhost"], "body": "found you"}))
        .await;
    let report = own_report(&reports_of(&mut stack.reports, "first-seen").await);
    assert_complete(&report, 1, 0);
    let mut users = vec![erin];
    assert_eq!(
        assert_everyone_got_it(&mut users, "found you", COLLECT, &report).await,
        0
    );
    assert_eq!(
        stack.metric(r#"herald_probes_sent_total{reason="unknown_recipient"}"#),
        1.0
    );
    assert_eq!(stack.herald.stop(), Some(0));
}

/// Waits for cut number `cut`, then for Herald to take jobs on a new stream.
async fn wait_reconnect<S: XmppServer>(stack: &mut Stack<S>, proxy: &CutProxy, cut: usize) {
    proxy.wait_cuts(cut, WAIT).await;
    stack
        .herald
        .wait_log_count("presence rebuilt; taking jobs", cut + 1, WAIT);
    assert_eq!(proxy.connections(), cut + 1);
}

/// Publishes a job to alice, bob and dave and returns its own report.
async fn job_to_everyone<S: XmppServer>(stack: &mut Stack<S>, id: &str) -> Value {
    let to = ["alice@localhost", "bob@localhost", "dave@localhost"];
    stack.publish(json!({"id": id, "to": to, "body": id})).await;
    own_report(&reports_of(&mut stack.reports, id).await)
}

/// Every recipient counted once, each where it belongs.
fn assert_complete(report: &Value, sent: usize, offline: usize) {
    assert_eq!(report["recipients"], sent + offline, "{report}");
    assert_eq!(report["sent"], sent, "{report}");
    assert_eq!(report["skipped"]["offline"], offline, "{report}");
    assert_eq!(report["skipped"]["unavailable"], 0, "{report}");
    assert_eq!(report["skipped"]["invalid"], 0, "{report}");
}
