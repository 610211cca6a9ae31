//! Who may do what, end to end on Prosody and on ejabberd: a second broker
//! user, made for the test, publishes with its AMQP `user_id` (which
//! RabbitMQ checks against its connection); Herald, told by `[producers]`
//! what that user may do and to refuse everyone else, dead-letters its
//! jobs beyond that with the reason and sends nothing of them, delivers
//! the one within it (published with `herald send`, which sets the
//! `user_id` of its connection) to real c2s users, and answers a control
//! request beyond it `forbidden`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_testkit::amqp::{json_properties, Amqp};
use herald_testkit::events::next_report;
use herald_testkit::herald::herald_cli as herald;
use herald_testkit::rabbitmq::BrokerUser;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
/// How long a user is watched for a message that must not come.
const QUIET: Duration = Duration::from_secs(2);

herald_testkit::on_both_servers!(a_producer_is_refused_beyond_its_grant_and_served_within_it);

async fn a_producer_is_refused_beyond_its_grant_and_served_within_it<S: XmppServer>() {
    let producer = BrokerUser::add();
    let key = |name: &str| format!("HERALD_PRODUCERS__USERS__{}__{name}", producer.name);
    let env = [
        ("HERALD_PRODUCERS__UNLISTED".to_string(), "refuse"),
        (key("FROM"), r#"["billing"]"#),
        (key("CONTROL"), r#"["status"]"#),
        (key("MAX_RECIPIENTS"), "1"),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut stack = Stack::<S>::start_with_env(&["alice", "bob"], &env).await;
    let mut alice = stack.online("alice").await;
    let mut bob = stack.online("bob").await;
    let dir = tempfile::tempdir().unwrap();
    let config = producer_config(stack.config_path(), &producer.url(), dir.path());

    // Refused: another sender, two recipients, and no user_id at all.
    let as_producer = Amqp::connect_to(&producer.url()).await;
    let signed = json_properties().with_user_id(producer.name.as_str().into());
    let refused = [
        (
            json!({"id": "ceo", "to": ["alice@localhost"], "from": "ceo", "body": "not from ceo"}),
            Some(&signed),
            "may not send as \"ceo\"",
        ),
        (
            json!({"id": "two", "to": ["alice@localhost", "bob@localhost"], "from": "billing", "body": "not to two"}),
            Some(&signed),
            "2 recipients",
        ),
        (
            json!({"id": "anonymous", "to": ["bob@localhost"], "from": "billing", "body": "not anonymous"}),
            None,
            "no AMQP user_id",
        ),
    ];
    for (job, properties, _) in &refused {
        let properties = properties.cloned().unwrap_or_else(json_properties);
        let payload = job.to_string().into_bytes();
        as_producer
            .publish_to("", &stack.names.jobs, &payload, properties)
            .await;
    }
    for (job, properties, said) in &refused {
        let dead = stack
            .amqp
            .get_one(&stack.names.dead, WAIT)
            .await
            .unwrap_or_else(|| panic!("{job} dead-lettered"));
        assert_eq!(dead.json(), *job);
        let reason = dead.headers["x-herald-error"].as_str().unwrap_or_default();
        assert!(reason.contains(said), "{said}: {reason}");
        // Herald's publish cannot carry the producer's user_id (RabbitMQ
        // would refuse it): the producer is named in a header instead.
        assert_eq!(dead.properties.user_id(), &None);
        let named = properties.map(|_| json!(producer.name));
        assert_eq!(
            dead.headers.get("x-herald-user-id").cloned(),
            named,
            "{job}"
        );
    }

    // Within the grant: `herald send` as the producer.
    let sent = herald(
        &config,
        &[
            "send",
            "--id",
            "allowed",
            "--from",
            "billing",
            "--to",
            "alice@localhost",
            "--body",
            "from billing",
            "--json",
        ],
        0,
    )
    .await;
    assert_eq!(sent["sent"], 1, "{sent}");
    let (from, body, _) = alice.next_message(WAIT).await.expect("the allowed job");
    assert_eq!(
        (from.as_str(), body.as_str()),
        ("billing@broadcast.localhost", "from billing"),
        "the first message alice gets: nothing of the refused jobs came before"
    );
    // Herald's own broker user passes whatever is refused.
    let own = json_properties().with_user_id("guest".into());
    let job =
        json!({"id": "own", "to": ["bob@localhost"], "from": "ops", "body": "from Herald's user"});
    stack
        .amqp
        .publish_to("", &stack.names.jobs, job.to_string().as_bytes(), own)
        .await;
    let report = next_report(&mut stack.reports, "own").await;
    assert_eq!(report["sent"], 1, "{report}");
    let (_, body, _) = bob.next_message(WAIT).await.expect("Herald's own job");
    assert_eq!(body, "from Herald's user");
    for user in [&mut alice, &mut bob] {
        let more = user.collect_messages(QUIET).await;
        assert!(more.is_empty(), "{}: {more:?}", user.bare_jid());
    }

    // The control plane: status is granted, cancel is not.
    let status = herald(&config, &["status"], 0).await;
    assert_eq!(status["result"]["xmpp_connected"], true, "{status}");
    let cancel = herald(&config, &["cancel", "allowed"], 1).await;
    assert_eq!(cancel["error"]["code"], "forbidden", "{cancel}");
    let message = cancel["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("may not ask for \"cancel\""), "{message}");
    as_producer.close().await;
    assert_eq!(stack.herald.stop(), Some(0));
}

/// Herald's configuration with the broker URL of `url` (another user's):
/// what a producer's `herald send` and control commands read.
fn producer_config(herald_config: &Path, url: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(herald_config).unwrap();
    let mut config: toml::Table = toml::from_str(&text).unwrap();
    let amqp = config["amqp"].as_table_mut().unwrap();
    amqp.insert("url".into(), toml::Value::String(url.to_string()));
    let path = dir.join("producer.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}
