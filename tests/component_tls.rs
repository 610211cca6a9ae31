//! TLS on the component link (`xmpp.tls`) against a private ejabberd whose
//! `ejabberd_service` listener speaks TLS from the first byte, with a
//! certificate a throw-away CA issued for `localhost`: Herald trusts it
//! through `xmpp.tls_ca_file` and delivers over it, a Herald without TLS
//! cannot attach, and Herald refuses a certificate it has no reason to
//! trust or that names another server.

use std::time::Duration;

use herald_testkit::amqp::{Amqp, EventTap};
use herald_testkit::c2s::XmppUser;
use herald_testkit::certs::TestPki;
use herald_testkit::ejabberd::Ejabberd;
use herald_testkit::events::next_report;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::http;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_attaches_over_tls_and_refuses_a_server_it_cannot_trust() {
    let certs = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::generate(certs.path());
    let server = Ejabberd::start_with_component_tls(&["alice"], &pki);
    let names = Names::unique();
    let ca = pki.ca_cert.display().to_string();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut herald = Herald::start_with_env(
        &server,
        &names,
        dir.path(),
        &[
            ("HERALD_XMPP__TLS", "true"),
            ("HERALD_XMPP__TLS_CA_FILE", &ca),
        ],
    );
    let mut reports = EventTap::bind(&names.events, "job.report").await;
    let amqp = Amqp::connect().await;
    let mut alice = XmppUser::login_available(&server, "alice", "desk").await;
    herald.wait_readyz(200, WAIT);
    amqp.publish_json(
        &names.jobs,
        &json!({"id": "over-tls", "to": ["alice@localhost"], "body": "sealed"}),
    )
    .await;
    let report = next_report(&mut reports, "over-tls").await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(alice.next_message(WAIT).await.expect("message").1, "sealed");
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());

    // Each of these must fail to attach, say why, and stay unready.
    let refused = [
        // Plaintext against a TLS listener: the handshake never completes.
        (vec![], "XMPP connection failed"),
        // TLS, but trusting only a CA that issued nothing here.
        (
            vec![
                ("HERALD_XMPP__TLS", "true"),
                (
                    "HERALD_XMPP__TLS_CA_FILE",
                    pki.other_ca_cert.to_str().unwrap(),
                ),
            ],
            "certificate",
        ),
        // The right CA, but the certificate is for `localhost`, not this name.
        (
            vec![
                ("HERALD_XMPP__TLS", "true"),
                ("HERALD_XMPP__TLS_CA_FILE", &ca),
                ("HERALD_XMPP__TLS_SERVER_NAME", "xmpp.example.com"),
            ],
            "certificate",
        ),
    ];
    for (env, why) in refused {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut refusing = Herald::launch_with_env(&server, &names, dir.path(), &env);
        refusing.wait_log_count("XMPP connection failed", 2, WAIT);
        let failures = refusing.log_lines("XMPP connection failed");
        assert!(
            failures.iter().all(|l| l.contains(why)),
            "{env:?}: the failures must say {why:?}: {failures:?}"
        );
        assert_eq!(
            http::get(&refusing.http_addr(), "/readyz"),
            (503, "not ready: XMPP server not connected\n".to_string()),
            "{env:?}"
        );
        assert_eq!(
            http::value(&refusing.metrics(), "herald_xmpp_connected"),
            0.0,
            "{env:?}"
        );
        refusing.stop();
    }
}
