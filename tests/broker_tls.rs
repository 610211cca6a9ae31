//! AMQP over TLS (`amqps://`) against a private RabbitMQ node with a TLS
//! listener whose certificate a throw-away CA issued: Herald trusts the
//! broker through `amqp.tls_ca_file`, proves itself with a client
//! certificate, and refuses a broker it has no reason to trust.

use std::time::Duration;

use herald_testkit::amqp::{Amqp, EventTap};
use herald_testkit::c2s::XmppUser;
use herald_testkit::certs::TestPki;
use herald_testkit::events::next_report;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::http;
use herald_testkit::prosody::Prosody;
use herald_testkit::rabbitmq::{PrivateBroker, TlsFiles};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn wait_metric(herald: &mut Herald, series: &str, value: f64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = http::value(&herald.metrics(), series);
        if now == value {
            return;
        }
        assert!(herald.is_running(), "{}", herald.log_text());
        assert!(
            std::time::Instant::now() < deadline,
            "{series} stayed {now}, expected {value}:\n{}",
            herald.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_delivers_over_amqps_and_refuses_a_broker_it_does_not_trust() {
    let certs = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::generate(certs.path());
    // The broker asks for a client certificate: a Herald without one could
    // not connect, so the delivery below proves Herald presented it.
    let mut broker = PrivateBroker::start_with_tls(TlsFiles {
        ca_cert: pki.ca_cert.clone(),
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        require_client_cert: true,
    });
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = broker.tls_url();
    let (ca, cert, key) = (
        pki.ca_cert.display().to_string(),
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string(),
    );
    let mut herald = Herald::start_with_env(
        &server,
        &names,
        dir.path(),
        &[
            ("HERALD_AMQP__URL", url.as_str()),
            ("HERALD_AMQP__TLS_CA_FILE", ca.as_str()),
            ("HERALD_AMQP__TLS_CERT_FILE", cert.as_str()),
            ("HERALD_AMQP__TLS_KEY_FILE", key.as_str()),
        ],
    );
    wait_metric(&mut herald, "herald_amqp_connected", 1.0);

    // The test itself talks to the broker's plain listener.
    let mut reports = EventTap::bind_at(&broker.url(), &names.events, "job.report").await;
    let amqp = Amqp::connect_to(&broker.url()).await;
    let mut alice = XmppUser::login_available(&server, "alice", "desk").await;
    wait_metric(&mut herald, "herald_online_users", 1.0);
    herald.wait_readyz(200, WAIT);
    amqp.publish_json(
        &names.jobs,
        &json!({"id": "over-tls", "to": ["alice@localhost"], "body": "sealed"}),
    )
    .await;
    let report = next_report(&mut reports, "over-tls").await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(alice.next_message(WAIT).await.expect("message").1, "sealed");
    // Herald's connection is the one on the TLS port.
    let tls_port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    let pid = herald.pid().expect("herald runs");
    let log = std::fs::read_to_string(broker.log_path()).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("-> 127.0.0.1:{tls_port}"))
                && l.contains(&format!("pid {pid}"))),
        "no connection of herald (pid {pid}) on the TLS port {tls_port} in the broker's log"
    );
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());

    // Trusting only another CA, Herald must refuse this broker: it logs the
    // TLS error, keeps retrying, stays unready, and takes no job.
    let other_ca = pki.other_ca_cert.display().to_string();
    let untrusting_dir = tempfile::tempdir().expect("temp dir");
    let mut untrusting = Herald::launch_with_env(
        &server,
        &names,
        untrusting_dir.path(),
        &[
            ("HERALD_AMQP__URL", url.as_str()),
            ("HERALD_AMQP__TLS_CA_FILE", other_ca.as_str()),
            ("HERALD_AMQP__TLS_CERT_FILE", cert.as_str()),
            ("HERALD_AMQP__TLS_KEY_FILE", key.as_str()),
        ],
    );
    untrusting.wait_log_count("AMQP connection failed", 2, WAIT);
    let failures = untrusting.log_lines("AMQP connection failed");
    assert!(
        failures.iter().all(|l| l.contains("certificate")),
        "the failures must name the certificate: {failures:?}"
    );
    // Nor does it connect to the XMPP server: whether it is the active
    // Herald is the broker's to say (docs/scaling.md, "A standby Herald").
    assert!(untrusting.log_lines("XMPP component connected").is_empty());
    assert_eq!(
        http::get(&untrusting.http_addr(), "/readyz"),
        (503, "not ready: AMQP broker not connected\n".to_string())
    );
    assert!(
        http::value(
            &untrusting.metrics(),
            r#"herald_amqp_connects_total{result="error"}"#
        ) >= 2.0
    );
    amqp.publish_json(
        &names.jobs,
        &json!({"id": "untrusted", "to": ["alice@localhost"], "body": "not for you"}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        amqp.message_count(&names.jobs).await,
        Some(1),
        "still queued"
    );
    alice.expect_no_message(Duration::from_secs(1)).await;
    assert!(untrusting.is_running(), "{}", untrusting.log_text());
    assert_eq!(untrusting.stop(), Some(0), "{}", untrusting.log_text());
    broker.stop();
}
