//! Herald as an operator installs it delivers a job: a `herald` binary run
//! with a shipped configuration file as it is, the deployment's settings on
//! top as `HERALD_*` variables (as `docker run -e` or a systemd drop-in
//! would give them), a real Prosody and RabbitMQ, a real c2s login.
//!
//! By default the binary Cargo built and deploy/herald.toml. CI runs it
//! again on what it ships: the binary and configuration copied out of the
//! container image, then the ones the Debian package installed
//! (`HERALD_INSTALLED_BIN`, `HERALD_INSTALLED_CONFIG`; see .ci/package).

use std::path::PathBuf;
use std::time::Duration;

use herald_testkit::amqp::{amqp_url, Amqp, EventTap};
use herald_testkit::c2s::XmppUser;
use herald_testkit::events::{await_presence, next_report};
use herald_testkit::herald::{Herald, Names};
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// The binary and the configuration file under test.
fn installed() -> (PathBuf, PathBuf) {
    let from_env = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let bin = from_env("HERALD_INSTALLED_BIN").unwrap_or(env!("CARGO_BIN_EXE_herald").into());
    let config = from_env("HERALD_INSTALLED_CONFIG")
        .unwrap_or(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/herald.toml").into());
    assert!(bin.is_file(), "no binary {}", bin.display());
    assert!(config.is_file(), "no configuration {}", config.display());
    eprintln!("herald {} --config {}", bin.display(), config.display());
    (bin, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_herald_with_its_shipped_configuration_delivers_a_job() {
    let (bin, config) = installed();
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("herald.store");
    let port = server.component_port().to_string();
    let url = amqp_url();
    let env = [
        ("HERALD_XMPP__HOST", "127.0.0.1"),
        ("HERALD_XMPP__PORT", port.as_str()),
        ("HERALD_XMPP__DOMAIN", server.component_domain()),
        ("HERALD_XMPP__SERVER_DOMAIN", server.domain()),
        ("HERALD_XMPP__SECRET", server.component_secret()),
        ("HERALD_AMQP__URL", url.as_str()),
        ("HERALD_AMQP__JOBS_QUEUE", names.jobs.as_str()),
        ("HERALD_AMQP__DEAD_LETTER_QUEUE", names.dead.as_str()),
        ("HERALD_AMQP__EVENTS_EXCHANGE", names.events.as_str()),
        ("HERALD_STORE__PATH", store.to_str().unwrap()),
        ("HERALD_HTTP__LISTEN", "127.0.0.1:0"),
    ];
    let mut herald = Herald::start_installed(&bin, &config, &env);
    let mut presence = EventTap::bind(&names.events, "presence.changed").await;
    let mut reports = EventTap::bind(&names.events, "job.report").await;

    let mut alice = XmppUser::login_available(&server, "alice", "desk").await;
    await_presence(&mut presence, "alice@localhost/desk", Some("online")).await;
    let body = "installed Herald <works> & delivers";
    let job =
        json!({"id": "installed-1", "to": ["alice@localhost", "bob@localhost"], "body": body});
    let amqp = Amqp::connect().await;
    amqp.publish_json(&names.jobs, &job).await;

    let report = next_report(&mut reports, "installed-1").await;
    assert_eq!(report["recipients"], 2, "{report}");
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(report["skipped"]["offline"], 1, "{report}");
    let (from, text, _) = alice.next_message(WAIT).await.expect("alice gets it");
    assert_eq!(from, format!("herald@{}", server.component_domain()));
    assert_eq!(text, body);
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
    for queue in [&names.jobs, &names.dead] {
        amqp.delete_queue(queue).await;
    }
}
