//! Several virtual hosts on one server: Herald serves the users of the
//! domains in `xmpp.user_domains` and ignores the others', on a real
//! Prosody and a real ejabberd that both serve `localhost` and
//! `second.localhost`, with real client logins on each.

use std::time::Duration;

use herald_testkit::amqp::{Amqp, EventTap};
use herald_testkit::c2s::XmppUser;
use herald_testkit::ejabberd::Ejabberd;
use herald_testkit::events::next_report;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::http;
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const CAROL: &str = "carol@second.localhost";

async fn serves_the_listed_domains_only(server: &impl XmppServer) {
    let names = Names::unique();
    let amqp = Amqp::connect().await;
    let mut reports = EventTap::bind(&names.events, "job.report").await;
    let mut alice = XmppUser::login_available(server, "alice", "desk").await;
    let mut carol = XmppUser::login_available(server, CAROL, "desk").await;

    // Only localhost's users (the default): carol's presence reaches Herald
    // (she has it on her roster) but does not count, and she is not probed.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut herald = Herald::start(server, &names, dir.path());
    herald.wait_readyz(200, WAIT);
    let job = |id: &str| json!({"id": id, "to": ["alice@localhost", CAROL], "body": id});
    amqp.publish_json(&names.jobs, &job("one-domain")).await;
    let report = next_report(&mut reports, "one-domain").await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(report["skipped"]["offline"], 1, "{report}");
    assert_eq!(
        alice.next_message(WAIT).await.expect("alice").1,
        "one-domain"
    );
    assert_eq!(http::value(&herald.metrics(), "herald_online_users"), 1.0);
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());

    // Both domains: carol counts, from her presence at the probe after connecting.
    let dir = tempfile::tempdir().expect("temp dir");
    let domains = "[\"localhost\", \"second.localhost\"]";
    let mut herald = Herald::start_with_env(
        server,
        &names,
        dir.path(),
        &[("HERALD_XMPP__USER_DOMAINS", domains)],
    );
    herald.wait_readyz(200, WAIT);
    amqp.publish_json(&names.jobs, &job("two-domains")).await;
    let report = next_report(&mut reports, "two-domains").await;
    assert_eq!(report["sent"], 2, "{report}");
    assert_eq!(
        alice.next_message(WAIT).await.expect("alice").1,
        "two-domains"
    );
    assert_eq!(
        carol.next_message(WAIT).await.expect("carol").1,
        "two-domains"
    );
    assert_eq!(http::value(&herald.metrics(), "herald_online_users"), 2.0);
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_virtual_hosts() {
    serves_the_listed_domains_only(&Prosody::start(&["alice", CAROL])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_virtual_hosts() {
    serves_the_listed_domains_only(&Ejabberd::start(&["alice", CAROL])).await;
}
