//! The XMPP server refusing Herald: a wrong secret, a domain the server does
//! not know, another Herald holding the domain. Herald must say why in its
//! log, count it, back off (no crash loop that floods the server), stay
//! unready, and lose no job. And with several server addresses
//! (`xmpp.servers`), one where nothing listens is passed over for the next.

use std::time::Duration;

use herald_testkit::amqp::{Amqp, EventTap};
use herald_testkit::c2s::XmppUser;
use herald_testkit::events::next_report;
use herald_testkit::fake_server::FakeServer;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::http;
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::json;

const WATCH: Duration = Duration::from_secs(4);

/// Watches a refused Herald for `WATCH`: it retries, with backoff, says why.
fn assert_refused_with_backoff(herald: &mut Herald, reason: &str) {
    herald.wait_log_count("XMPP connection failed", 1, Duration::from_secs(20));
    std::thread::sleep(WATCH);
    assert!(
        herald.is_running(),
        "Herald must not exit:\n{}",
        herald.log_text()
    );
    let attempts = herald.log_count("XMPP connection failed");
    // Backoff starts at 250 ms and doubles (with jitter, capped at 2 s in
    // tests): a handful of attempts in WATCH, never a tight loop.
    assert!(
        (2..=12).contains(&attempts),
        "{attempts} attempts:\n{}",
        herald.log_text()
    );
    assert!(
        herald.log_text().contains(reason),
        "the log must say {reason:?}:\n{}",
        herald.log_text()
    );
    let metrics = herald.metrics();
    assert!(http::value(&metrics, r#"herald_xmpp_connects_total{result="error"}"#) >= 2.0);
    assert_eq!(
        http::value(&metrics, r#"herald_xmpp_connects_total{result="ok"}"#),
        0.0
    );
    assert_eq!(herald.readyz(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_retried_with_backoff_and_no_job_is_lost() {
    let mut stack = Stack::<Prosody>::start(&["alice"]).await;
    let mut alice = stack.online("alice").await;

    // Redeployed with a wrong secret: Herald cannot connect.
    assert_eq!(stack.herald.stop(), Some(0));
    stack
        .herald
        .relaunch_with_env(&[("HERALD_XMPP__SECRET", "not-the-secret")]);
    stack
        .publish(json!({"id": "held", "to": ["alice@localhost"], "body": "after the fix"}))
        .await;
    assert_refused_with_backoff(&mut stack.herald, "not-authorized");

    // The operator fixes the secret; the job that waited is delivered.
    assert_eq!(stack.herald.stop(), Some(0));
    stack.herald.relaunch_with_env(&[]);
    let report = next_report(&mut stack.reports, "held").await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(
        alice
            .next_message(Duration::from_secs(20))
            .await
            .expect("message")
            .1,
        "after the fix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_the_server_does_not_know_is_refused_with_backoff() {
    let prosody = Prosody::start(&["alice"]);
    let dir = tempfile::tempdir().unwrap();
    let unknown = [("HERALD_XMPP__DOMAIN", "nobroadcast.localhost")];
    let mut herald = Herald::launch_with_env(&prosody, &Names::unique(), dir.path(), &unknown);
    assert_refused_with_backoff(&mut herald, "host-unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_herald_on_the_same_domain_is_refused_and_the_first_keeps_delivering() {
    let mut stack = Stack::<Prosody>::start(&["alice"]).await;
    let mut alice = stack.online("alice").await;
    let dir = tempfile::tempdir().unwrap();
    let mut second = Herald::launch_with_env(&stack.server, &Names::unique(), dir.path(), &[]);
    assert_refused_with_backoff(&mut second, "conflict");

    stack
        .publish(json!({"id": "first", "to": ["alice@localhost"], "body": "still mine"}))
        .await;
    let report = next_report(&mut stack.reports, "first").await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(
        alice
            .next_message(Duration::from_secs(20))
            .await
            .expect("message")
            .1,
        "still mine"
    );
    assert_eq!(
        stack.metric(r#"herald_xmpp_connects_total{result="ok"}"#),
        1.0,
        "the first Herald was never disturbed"
    );
    assert!(stack.server.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_breaks_every_stream_after_the_handshake_is_not_hammered() {
    let server = FakeServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut herald = Herald::launch_at(&server.target(), &Names::unique(), dir.path(), &[]);
    // Every stream is broken as soon as it is up, before presence settles.
    let deadline = tokio::time::Instant::now() + WATCH;
    let mut broken = 0;
    while tokio::time::Instant::now() < deadline {
        if server.connections() > broken {
            broken = server.connections();
            server.send("<unknown xmlns='urn:example:unknown'/>");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(herald.is_running(), "{}", herald.log_text());
    // Backoff from 250 ms doubling to the tests' 2 s cap: a handful of
    // streams in WATCH, where an immediate reconnect would make hundreds.
    assert!(
        (2..=8).contains(&server.connections()),
        "{} streams:\n{}",
        server.connections(),
        herald.log_text()
    );
    assert!(herald
        .log_text()
        .contains("XMPP stream lost before presence was rebuilt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_address_where_nothing_listens_is_passed_over_for_the_next() {
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let servers = [dead.clone(), server.component_addr()];
    let mut herald = Herald::start_on_servers(&server, &servers, &names, dir.path(), &[]);
    let failed = herald.log_lines("XMPP connection failed");
    assert!(
        failed.len() == 1 && failed[0].contains(&format!("server={dead}")),
        "the first address was tried first, once: {failed:?}"
    );
    let connected = herald.log_lines("XMPP component connected");
    assert!(
        connected.len() == 1 && connected[0].contains(&format!("server={}", servers[1])),
        "{connected:?}"
    );

    let mut reports = EventTap::bind(&names.events, "job.report").await;
    let mut alice = XmppUser::login_available(&server, "alice", "r").await;
    herald.wait_metric("herald_online_users", 1.0, Duration::from_secs(20));
    let job =
        json!({"id": "next-server", "to": ["alice@localhost"], "body": "via the next server"});
    Amqp::connect().await.publish_json(&names.jobs, &job).await;
    assert_eq!(next_report(&mut reports, "next-server").await["sent"], 1);
    let message = alice.next_message(Duration::from_secs(20)).await;
    assert_eq!(message.expect("alice got the job").1, "via the next server");
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
}
