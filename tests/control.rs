//! The control plane end to end on Prosody and on ejabberd: real c2s users
//! with different presence, the real `herald` component, and the `herald
//! presence`, `online` and `status` commands asking it over RabbitMQ's
//! direct reply-to; bad requests answered or dead-lettered while jobs go on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_testkit::amqp::json_properties;
use herald_testkit::crowd::{MixedCrowd, EVERYONE_AND_A_FULL_JID};
use herald_testkit::events::next_report;
use herald_testkit::herald::herald_cli as herald;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(20);

herald_testkit::on_both_servers!(
    presence_online_and_status_answer_what_the_users_did,
    bad_requests_are_answered_or_dead_lettered_and_jobs_go_on,
);

async fn presence_online_and_status_answer_what_the_users_did<S: XmppServer>() {
    let began = SystemTime::now();
    let mut stack = Stack::<S>::start(&["alice", "bob", "carol", "dave", "erin"]).await;
    // carol was online and left; dave has a dnd phone and a desk ready
    // to chat; erin never logged in.
    let _crowd = MixedCrowd::log_in(&stack.server, &mut stack.presence, "carol").await;
    let config = stack.config_path();

    let users = EVERYONE_AND_A_FULL_JID;
    let mut args = vec!["presence"];
    args.extend(users);
    let reply = herald(config, &args, 0).await;
    let answered = SystemTime::now();
    assert_eq!(reply["ok"], true, "{reply}");
    let entries = reply["result"]["users"].as_array().unwrap();
    // Everyone Herald saw come online or go offline, since then; erin,
    // never seen, since no known time.
    for entry in &entries[..4] {
        let since = moment(&entry["since"]).unwrap_or_else(|| panic!("since: {entry}"));
        assert!(
            since >= to_the_millisecond(began) && since <= answered,
            "{entry}: since {since:?}, the test began at {began:?} and had its answer at {answered:?}"
        );
        if let Some(show_since) = moment(&entry["show_since"]) {
            assert!(since < show_since && show_since <= answered, "{entry}");
        }
    }
    assert!(entries[4].get("since").is_none(), "{}", entries[4]);
    assert!(
        entries[3].get("show_since").is_some(),
        "dave's desk ready to chat logged in after his dnd phone: {}",
        entries[3]
    );
    let seen: Vec<(&str, Value, Value)> = entries[..5]
        .iter()
        .map(|e| {
            (
                e["jid"].as_str().unwrap(),
                e["online"].clone(),
                e["available"].clone(),
            )
        })
        .collect();
    let (yes, no) = (json!(true), json!(false));
    assert_eq!(
        seen,
        [
            ("alice@localhost", yes.clone(), yes.clone()),
            ("bob@localhost", yes.clone(), no.clone()),
            ("carol@localhost", no.clone(), no.clone()),
            ("dave@localhost", yes.clone(), yes.clone()),
            ("erin@localhost", no.clone(), no.clone()),
        ]
    );
    let resources: Vec<(Value, Value)> = entries[..5]
        .iter()
        .map(|e| (e["resources"].clone(), e["show"].clone()))
        .collect();
    assert_eq!(
        resources,
        [
            (json!(1), json!("online")),
            (json!(1), json!("away")),
            (json!(0), Value::Null),
            (json!(2), json!("chat")),
            (json!(0), Value::Null),
        ],
        "dave's most ready resource is the one ready to chat"
    );
    assert!(entries[5]["error"].is_string(), "{}", entries[5]);

    let first = herald(config, &["online", "--limit", "2"], 0).await;
    let page = &first["result"];
    assert_eq!(
        (page["online"].clone(), page["available"].clone()),
        (json!(3), json!(2)),
        "{first}"
    );
    assert_eq!(
        page["users"],
        json!([
            {"jid": "alice@localhost", "available": true},
            {"jid": "bob@localhost", "available": false},
        ])
    );
    let after = page["next"].as_str().expect("a next page");
    let second = herald(config, &["online", "--limit", "2", "--after", after], 0).await;
    assert_eq!(
        second["result"]["users"],
        json!([{"jid": "dave@localhost", "available": true}])
    );
    assert!(second["result"].get("next").is_none(), "{second}");

    let refused = herald(config, &["online", "--limit", "0"], 1).await;
    assert_eq!(refused["error"]["code"], "invalid_request", "{refused}");

    let status = herald(config, &["status"], 0).await;
    let result = &status["result"];
    assert_eq!(result["xmpp_connected"], true, "{status}");
    assert_eq!(result["broker_connected"], true);
    assert_eq!(result["online_users"], 3);
    assert_eq!(result["online_resources"], 4);
    assert_eq!(result["version"], env!("CARGO_PKG_VERSION"));
}

async fn bad_requests_are_answered_or_dead_lettered_and_jobs_go_on<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice"]).await;
    let mut alice = stack.online("alice").await;
    let replies = stack
        .amqp
        .channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("a queue for replies")
        .name()
        .to_string();
    let ask = |payload: &'static [u8], reply_to: Option<&str>| {
        let mut properties = json_properties().with_correlation_id("corr-1".into());
        if let Some(queue) = reply_to {
            properties = properties.with_reply_to(queue.into());
        }
        stack
            .amqp
            .publish_to("", &stack.names.control, payload, properties)
    };
    ask(b"{not json", Some(&replies)).await;
    let reply = stack
        .amqp
        .get_one(&replies, WAIT)
        .await
        .expect("an error reply");
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("corr-1")
    );
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");

    ask(br#"{"op":"reboot"}"#, Some(&replies)).await;
    let reply = stack
        .amqp
        .get_one(&replies, WAIT)
        .await
        .expect("an error reply");
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "unknown_op", "{body}");

    // A direct reply-to name of no live requester, and a reply_to naming
    // no queue: the broker drops the replies, and nothing else changes.
    ask(br#"{"op":"status"}"#, Some("amq.rabbitmq.reply-to.bogus")).await;
    ask(br#"{"op":"status"}"#, Some("no-such-queue-for-replies")).await;

    ask(br#"{"op":"status"}"#, None).await;
    let dead = stack
        .amqp
        .get_one(&stack.names.dead, WAIT)
        .await
        .expect("a request without reply_to is dead-lettered");
    assert_eq!(dead.body, br#"{"op":"status"}"#);
    let reason = dead.headers["x-herald-error"].as_str().unwrap_or_default();
    assert!(reason.contains("reply_to"), "{reason}");

    stack
        .publish(json!({"id": "after-requests", "to": ["alice@localhost"], "body": "still here"}))
        .await;
    let report = next_report(&mut stack.reports, "after-requests").await;
    assert_eq!(report["sent"], 1, "{report}");
    let (_, body, _) = alice
        .next_message(WAIT)
        .await
        .expect("the job is delivered");
    assert_eq!(body, "still here");
    assert!(stack.herald.is_running());
}

/// A reply's time (RFC 3339), if it has one.
fn moment(value: &Value) -> Option<SystemTime> {
    let text = value.as_str()?;
    let at = OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"));
    Some(at.into())
}

/// `at` to the millisecond below, the precision of the replies' times.
fn to_the_millisecond(at: SystemTime) -> SystemTime {
    let millis = at.duration_since(UNIX_EPOCH).unwrap().as_millis();
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap())
}
