//! What an operator relies on, end to end with a real Prosody, RabbitMQ and
//! the `herald` binary: metrics that move by exactly what a job causes,
//! readiness that follows the server and the broker, reconnects, and a
//! SIGTERM in the middle of a large job that loses nobody.

use std::time::Duration;

use herald_testkit::amqp::{broker_connections_of, close_broker_connection};
use herald_testkit::c2s::XmppUser;
use herald_testkit::delivery::{assert_everyone_got_it, own_report, reports_of};
use herald_testkit::events::{await_presence, next_report, report_within};
use herald_testkit::http;
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Every counter a job moves, read before and after it.
const JOB_SERIES: [&str; 9] = [
    r#"herald_jobs_total{outcome="delivered"}"#,
    r#"herald_jobs_total{outcome="dead_lettered"}"#,
    r#"herald_recipients_total{outcome="sent"}"#,
    r#"herald_recipients_total{outcome="offline"}"#,
    r#"herald_recipients_total{outcome="unavailable"}"#,
    r#"herald_recipients_total{outcome="invalid"}"#,
    r#"herald_stanzas_sent_total{kind="message"}"#,
    "herald_job_duration_seconds_count",
    r#"herald_stanzas_received_total{kind="message"}"#,
];

fn snapshot(metrics: &str) -> Vec<f64> {
    JOB_SERIES.iter().map(|s| http::value(metrics, s)).collect()
}

fn deltas(before: &[f64], after: &[f64]) -> Vec<f64> {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}

herald_testkit::on_both_servers!(
    metrics_move_by_exactly_what_a_job_causes,
    readyz_follows_the_server_and_a_job_sent_while_it_was_down_arrives_after,
);

async fn metrics_move_by_exactly_what_a_job_causes<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob", "carol"]).await;
    let address = stack.herald.http_addr();
    assert_eq!(http::get(&address, "/healthz"), (200, "ok\n".to_string()));

    let _alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let mut bob = XmppUser::login(&stack.server, "bob", "phone").await;
    bob.send_presence(Some("away"), 0).await;
    await_presence(&mut stack.presence, "bob@localhost/phone", Some("away")).await;
    stack.herald.wait_readyz(200, WAIT);

    let text = stack.herald.metrics();
    assert_eq!(http::value(&text, "herald_online_users"), 2.0, "{text}");
    assert_eq!(http::value(&text, "herald_online_resources"), 2.0);
    assert_eq!(http::value(&text, "herald_subscriptions"), 2.0);
    assert_eq!(http::value(&text, "herald_ready"), 1.0);
    assert_eq!(http::value(&text, "herald_xmpp_connected"), 1.0);
    assert_eq!(http::value(&text, "herald_amqp_connected"), 1.0);
    assert!(http::value(&text, "herald_presence_updates_total") >= 2.0);
    let before = snapshot(&text);

    stack
        .publish(json!({
            "id": "metrics-1",
            "to": ["alice@localhost", "bob@localhost", "carol@localhost", "x@broadcast.localhost"],
            "body": "counted",
        }))
        .await;
    let report = next_report(&mut stack.reports, "metrics-1").await;
    assert_eq!(report["sent"], 1, "{report}");
    let after_job = snapshot(&stack.herald.metrics());
    assert_eq!(
        deltas(&before, &after_job),
        vec![1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        "deltas of {JOB_SERIES:?}"
    );

    stack
        .amqp
        .publish_to(
            "",
            &stack.names.jobs,
            b"not json",
            herald_testkit::amqp::json_properties(),
        )
        .await;
    let dead = stack
        .amqp
        .get_one(&stack.names.dead, WAIT)
        .await
        .expect("dead letter");
    assert!(
        dead.headers["x-herald-error"].is_string(),
        "{:?}",
        dead.headers
    );
    let after_dead = snapshot(&stack.herald.metrics());
    assert_eq!(
        deltas(&after_job, &after_dead),
        vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        "deltas of {JOB_SERIES:?}"
    );

    let text = stack.herald.metrics();
    assert!(http::value(&text, "herald_server_roundtrip_seconds_count") >= 1.0);
    assert!(http::value(&text, "herald_event_loop_busy_seconds_total") > 0.0);
    assert!(
        http::value(
            &text,
            r#"herald_events_published_total{result="confirmed"}"#
        ) >= 1.0
    );
}

async fn readyz_follows_the_server_and_a_job_sent_while_it_was_down_arrives_after<S: XmppServer>() {
    // A long settle gives alice time to log in again before Herald takes jobs.
    let env = [("HERALD_XMPP__PROBE_SETTLE_MS", "3000")];
    let mut stack = Stack::<S>::start_with_env(&["alice"], &env).await;
    let alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    stack.herald.wait_readyz(200, WAIT);

    // Alice goes first: a server shutting down may cut the component's
    // stream before it routes her unavailable presence (ejabberd did once,
    // mid-stanza, under load).
    drop(alice);
    await_presence(&mut stack.presence, "alice@localhost/desk", None).await;
    stack.server.stop();
    stack.herald.wait_readyz(503, WAIT);
    let (_, reason) = http::get(&stack.herald.http_addr(), "/readyz");
    assert!(reason.contains("XMPP"), "{reason}");

    stack
        .publish(json!({"id": "while-down", "to": ["alice@localhost"], "body": "held"}))
        .await;
    assert_eq!(
        report_within(&mut stack.reports, "while-down", Duration::from_secs(2)).await,
        None,
        "Herald must not take jobs while the server is down"
    );

    stack.server.start_again();
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    let report = next_report(&mut stack.reports, "while-down").await;
    assert_eq!(report["sent"], 1, "{report}");
    let message = alice
        .next_message(WAIT)
        .await
        .expect("the held job arrives");
    assert_eq!(message.1, "held");
    stack.herald.wait_readyz(200, WAIT);
    assert!(stack.metric(r#"herald_xmpp_connects_total{result="ok"}"#) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_reconnects_to_the_broker_and_keeps_delivering() {
    let mut stack = Stack::<Prosody>::start(&["alice"]).await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let pid = stack.herald.pid().expect("herald runs");
    let connections = broker_connections_of(pid);
    assert_eq!(connections.len(), 1, "{connections:?}");

    close_broker_connection(&connections[0]);
    stack.herald.wait_log_count("AMQP connection lost", 1, WAIT);
    stack
        .wait_metric(r#"herald_amqp_connects_total{result="ok"}"#, 2.0)
        .await;
    stack.herald.wait_readyz(200, WAIT);

    stack
        .publish(json!({"id": "after-reconnect", "to": ["alice@localhost"], "body": "still here"}))
        .await;
    let report = next_report(&mut stack.reports, "after-reconnect").await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(
        alice.next_message(WAIT).await.expect("message").1,
        "still here"
    );
}

const ONLINE: usize = 300;
const OFFLINE: usize = 9_700;

/// A stack with `ONLINE` users logged in and a job for them and `OFFLINE`
/// others published; returns once Herald has fanned it out.
async fn large_job_in_flight(
    env: &[(&str, &str)],
    before_publish: impl FnOnce(&Stack<Prosody>),
) -> (Stack<Prosody>, Vec<XmppUser>) {
    let names: Vec<String> = (0..ONLINE).map(|i| format!("u{i}")).collect();
    let user_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut stack = Stack::<Prosody>::start_with_env(&user_refs, env).await;
    let users = stack.online_all(&names).await;
    before_publish(&stack);
    let mut to: Vec<String> = names.iter().map(|n| format!("{n}@localhost")).collect();
    to.extend((0..OFFLINE).map(|i| format!("ghost{i}@localhost")));
    stack
        .publish(json!({"id": "big", "to": to, "body": "evacuate"}))
        .await;
    stack.herald.wait_log_count("job fanned out", 1, WAIT);
    (stack, users)
}

/// Every online user got the job's message, it was reported once with
/// every recipient counted, and it left the queue.
async fn assert_nobody_lost(stack: &mut Stack<Prosody>, users: &mut [XmppUser], report: &Value) {
    assert_eq!(report["recipients"], ONLINE + OFFLINE, "{report}");
    assert_eq!(report["sent"], ONLINE, "{report}");
    assert_eq!(report["skipped"]["offline"], OFFLINE, "{report}");
    for user in users.iter_mut() {
        let message = user
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("{} got nothing", user.jid()));
        assert_eq!(message.1, "evacuate");
    }
    assert_eq!(
        report_within(&mut stack.reports, "big", Duration::from_secs(1)).await,
        None,
        "a second report"
    );
    assert_eq!(
        stack.amqp.message_count(&stack.names.jobs).await,
        Some(0),
        "the job must be acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_large_job_exits_zero_and_loses_no_recipient() {
    let (mut stack, mut users) = large_job_in_flight(&[], |_| {}).await;
    assert_eq!(stack.herald.stop(), Some(0), "{}", stack.herald.log_text());

    // Herald finishes the job within its drain time (the server reads
    // fast here) or requeues it; either way exactly one report follows.
    let first = report_within(&mut stack.reports, "big", Duration::from_secs(2)).await;
    stack.herald.restart();
    let report = match first {
        Some(report) => report,
        None => next_report(&mut stack.reports, "big").await,
    };
    assert_nobody_lost(&mut stack, &mut users, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_server_reads_nothing_requeues_the_job() {
    // A frozen server never confirms what Herald wrote: at SIGTERM the job
    // must go back to the queue, not be reported or acknowledged. Probing
    // of unknown recipients is off, or the job would wait for the frozen
    // server to answer the probes of its offline recipients before being
    // written at all.
    let no_probes = [("HERALD_XMPP__UNKNOWN_PROBE_TTL_SECS", "0")];
    let (mut stack, mut users) = large_job_in_flight(&no_probes, |stack| {
        herald_testkit::server::signal(stack.server.pid().expect("prosody runs"), "STOP");
    })
    .await;
    let stopped = stack.herald.stop();
    let prosody_pid = stack.server.pid().expect("prosody runs");
    herald_testkit::server::signal(prosody_pid, "CONT");
    assert_eq!(stopped, Some(0), "{}", stack.herald.log_text());
    assert!(
        stack
            .herald
            .log_text()
            .contains("requeueing jobs not confirmed"),
        "{}",
        stack.herald.log_text()
    );
    assert_eq!(
        report_within(&mut stack.reports, "big", Duration::from_secs(1)).await,
        None,
        "an unconfirmed job must not be reported"
    );

    stack.herald.restart();
    let report = next_report(&mut stack.reports, "big").await;
    assert_nobody_lost(&mut stack, &mut users, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_report_is_retried_without_sending_the_job_again() {
    let mut stack = Stack::<Prosody>::start(&["alice"]).await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let refusing = stack
        .amqp
        .bind_refusing_queue(&stack.names.events, "job.report")
        .await;

    stack
        .publish(json!({"id": "refused", "to": ["alice@localhost"], "body": "once"}))
        .await;
    assert_eq!(alice.next_message(WAIT).await.expect("message").1, "once");
    stack
        .herald
        .wait_log_count("publish refused; retrying", 1, WAIT);

    // RabbitMQ nacks a message that any bound queue refuses, yet still
    // routes it to the others: the tap may see a report per attempt.
    stack.amqp.delete_queue(&refusing).await;
    let report = next_report(&mut stack.reports, "refused").await;
    assert_eq!(report["sent"], 1, "{report}");
    alice.expect_no_message(Duration::from_secs(2)).await;
    assert!(stack.metric(r#"herald_events_published_total{result="failed"}"#) >= 1.0);
    assert_eq!(
        stack.metric(r#"herald_jobs_total{outcome="delivered"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_mid_job_everyone_gets_the_message_and_one_report_counts_them() {
    // Checkpoints every 10 recipients: the restart resumes after the last
    // one the server confirmed, and reports what may have arrived twice.
    let env = [("HERALD_BROADCAST__CHECKPOINT_EVERY", "10")];
    let (mut stack, mut users) = large_job_in_flight(&env, |_| {}).await;
    stack.herald.kill();
    stack.herald.restart();

    // The job comes back from the queue. Whatever the crash interrupted,
    // exactly one report is the job's own; any other is marked duplicate.
    let report = own_report(&reports_of(&mut stack.reports, "big").await);
    assert_eq!(report["recipients"], ONLINE + OFFLINE, "{report}");
    assert_eq!(report["sent"], ONLINE, "{report}");
    let window = Duration::from_secs(3);
    assert_everyone_got_it(&mut users, "evacuate", window, &report).await;
    assert_eq!(stack.herald.stop(), Some(0));
    assert_eq!(stack.amqp.message_count(&stack.names.jobs).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_events_exchange_is_declared_again_and_the_job_is_not_redone() {
    let mut stack = Stack::<Prosody>::start(&["alice"]).await;
    let mut alice = stack.online("alice").await;
    stack.amqp.delete_exchange(&stack.names.events).await;
    assert!(!stack.amqp.exchange_exists(&stack.names.events).await);

    // The report's publish fails (the broker closes the publish channel);
    // Herald reopens it, declares its topology again and republishes.
    stack
        .publish(json!({"id": "no-exchange", "to": ["alice@localhost"], "body": "once"}))
        .await;
    assert_eq!(alice.next_message(WAIT).await.expect("message").1, "once");
    stack
        .herald
        .wait_log_count("publish channel reopened", 1, WAIT);
    assert!(stack.amqp.exchange_exists(&stack.names.events).await);
    alice.expect_no_message(Duration::from_secs(2)).await;
    assert_eq!(
        stack.metric(r#"herald_jobs_total{outcome="delivered"}"#),
        1.0
    );
    // Acknowledged once the republished report was confirmed.
    assert_eq!(stack.herald.stop(), Some(0));
    assert_eq!(stack.amqp.message_count(&stack.names.jobs).await, Some(0));
    assert!(
        !stack.herald.log_text().contains("AMQP connection lost"),
        "only the channel is reopened:\n{}",
        stack.herald.log_text()
    );
}
