//! Herald given several broker addresses (`amqp.urls`): it connects to one
//! node at a time and, when connecting fails or the connection is lost,
//! goes on to the next. Real Prosody, real c2s users, the real `herald`
//! binary.

use std::net::TcpListener;
use std::time::Duration;

use herald_testkit::amqp::{amqp_url, Amqp};
use herald_testkit::c2s::XmppUser;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A loopback address where nothing listens (a port just given up).
fn nothing_listens() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_refuses_the_connection_is_passed_over_for_the_next() {
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = nothing_listens();
    let urls = [format!("amqp://guest:guest@{dead}/%2f"), amqp_url()];
    let mut herald = Herald::start_on_brokers(&server, &names, dir.path(), &urls, &[]);
    let failed = herald.log_lines("AMQP connection failed");
    assert!(
        failed
            .first()
            .is_some_and(|line| line.contains(&format!("broker={dead}"))),
        "the first node was tried first: {failed:?}"
    );
    let connected = herald.log_lines("AMQP connected");
    assert_eq!(connected.len(), 1, "{connected:?}");
    assert!(!connected[0].contains(&dead), "{connected:?}");
    assert_eq!(herald.log_count("guest:guest"), 0, "no password in the log");

    let mut alice = XmppUser::login_available(&server, "alice", "r").await;
    herald.wait_metric("herald_online_users", 1.0, WAIT);
    let amqp = Amqp::connect().await;
    let job = json!({"id": "next-node", "to": [server.jid("alice")], "body": "via the next node"});
    amqp.publish_json(&names.jobs, &job).await;
    let message = alice.next_message(WAIT).await.expect("alice got the job");
    assert_eq!(message.1, "via the next node");
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
    amqp.close().await;
}
