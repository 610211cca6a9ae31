//! Control requests through the core: each operation answered from the
//! presence book and the counts, errors answered, a request with nowhere
//! to answer dead-lettered, and jobs untouched by any of it.

use serde_json::{json, Value};
use xmpp_parsers::presence::Show as XmppShow;

use super::*;

impl Harness {
    /// `user`'s resource `resource` sends presence with `show`.
    fn presence(&mut self, full: &str, show: Option<XmppShow>) {
        let mut presence = Presence::new(PresenceType::None)
            .with_from(Jid::new(full).unwrap())
            .with_to(Jid::new("herald@broadcast.localhost").unwrap());
        presence.show = show;
        self.input(Input::Stanza(presence.into()));
        self.commit_all();
    }

    /// Asks `body` on connection 1 with a reply_to; the reply's JSON.
    fn ask(&mut self, tag: u64, body: &Value) -> Value {
        self.input(Input::Request(Request {
            id: RequestId { generation: 1, tag },
            payload: body.to_string().into_bytes(),
            reply_to: Some("amq.rabbitmq.reply-to.g1".into()),
            correlation_id: Some(format!("c{tag}")),
            user_id: None,
            received_at: wall_clock(),
        }));
        let mut replies: Vec<(Destination, Vec<u8>)> = self
            .drain()
            .into_iter()
            .filter_map(|output| match output {
                Output::Publish(publish) => Some((publish.destination, publish.payload)),
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 1, "one answer per request: {replies:?}");
        let (destination, payload) = replies.pop().unwrap();
        assert_eq!(
            destination,
            Destination::Reply {
                request: RequestId { generation: 1, tag },
                reply_to: "amq.rabbitmq.reply-to.g1".into(),
                correlation_id: Some(format!("c{tag}")),
            }
        );
        serde_json::from_slice(&payload).unwrap()
    }
}

/// alice online and available (from `ready`), bob away on one resource and
/// available on another (following two of Herald's JIDs), carol away, dave
/// gone again.
pub(super) fn with_users() -> Harness {
    let mut h = Harness::ready();
    h.presence("bob@localhost/a", Some(XmppShow::Away));
    h.presence("bob@localhost/b", None);
    // bob also follows a second JID of Herald's: still one user.
    let alerts = Presence::new(PresenceType::None)
        .with_from(Jid::new("bob@localhost/b").unwrap())
        .with_to(Jid::new("alerts@broadcast.localhost").unwrap());
    h.input(Input::Stanza(alerts.into()));
    h.commit_all();
    h.presence("carol@localhost/x", Some(XmppShow::Away));
    h.presence("dave@localhost/y", None);
    let gone = Presence::new(PresenceType::Unavailable)
        .with_from(Jid::new("dave@localhost/y").unwrap())
        .with_to(Jid::new("herald@broadcast.localhost").unwrap());
    h.input(Input::Stanza(gone.into()));
    h.commit_all();
    h
}

#[test]
fn presence_answers_each_user_and_each_invalid_jid_on_its_own() {
    let mut h = with_users();
    let users = [
        "alice@localhost",
        "carol@localhost",
        "dave@localhost",
        "nobody@localhost",
        "alice@localhost/phone",
    ];
    let reply = h.ask(1, &json!({"op": "presence", "users": users}));
    assert_eq!(reply["ok"], true);
    let entries = reply["result"]["users"].as_array().unwrap();
    let answers: Vec<(Value, Value)> = entries
        .iter()
        .map(|e| (e["online"].clone(), e["available"].clone()))
        .collect();
    assert_eq!(
        answers[..4],
        [
            (json!(true), json!(true)),
            (json!(true), json!(false)),
            (json!(false), json!(false)),
            (json!(false), json!(false)),
        ]
    );
    assert_eq!(entries[4]["jid"], "alice@localhost/phone");
    assert!(entries[4]["error"].as_str().unwrap().contains("bare JID"));
    assert!(entries[4].get("online").is_none());
}

#[test]
fn online_counts_everyone_and_pages_in_jid_order() {
    let mut h = with_users();
    let first = h.ask(1, &json!({"op": "online", "limit": 2}));
    let result = &first["result"];
    assert_eq!(
        (result["online"].clone(), result["available"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(
        result["users"],
        json!([
            {"jid": "alice@localhost", "available": true},
            {"jid": "bob@localhost", "available": true},
        ])
    );
    assert_eq!(result["next"], "bob@localhost");
    let second = h.ask(
        2,
        &json!({"op": "online", "limit": 2, "after": "bob@localhost"}),
    );
    assert_eq!(
        second["result"]["users"],
        json!([{"jid": "carol@localhost", "available": false}])
    );
    assert!(second["result"].get("next").is_none(), "the last page");
}

#[test]
fn status_counts_what_the_core_holds() {
    let mut h = with_users();
    h.deliver(1, r#"{"id":"j1","to":["alice@localhost"],"body":"hi"}"#);
    h.drain();
    let reply = h.ask(7, &json!({"op": "status"}));
    let status = &reply["result"];
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["xmpp_connected"], true);
    assert_eq!(status["broker_connected"], true);
    assert_eq!(status["online_users"], 3);
    assert_eq!(status["online_resources"], 4);
    assert_eq!(status["subscriptions"], 5);
    assert_eq!(status["jobs_in_flight"], 1);
}

#[test]
fn bad_requests_get_an_error_reply_with_a_code() {
    let mut h = with_users();
    for (tag, body, code) in [
        (1, json!("not an object"), "invalid_request"),
        (2, json!({"op": "reboot"}), "unknown_op"),
        (3, json!({"op": "online", "limit": 0}), "invalid_request"),
        (4, json!({"op": "presence"}), "invalid_request"),
        (5, json!({"op": "status", "extra": 1}), "invalid_request"),
    ] {
        let reply = h.ask(tag, &body);
        assert_eq!(reply["ok"], false, "{body}");
        assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
    }
    h.input(Input::Request(Request {
        id: RequestId {
            generation: 1,
            tag: 6,
        },
        payload: b"{not json".to_vec(),
        reply_to: Some("replies".into()),
        correlation_id: None,
        user_id: None,
        received_at: wall_clock(),
    }));
    let reply = h.drain().into_iter().find_map(|output| match output {
        Output::Publish(publish) => Some(publish.payload),
        _ => None,
    });
    let reply: Value = serde_json::from_slice(&reply.unwrap()).unwrap();
    assert_eq!(reply["error"]["code"], "invalid_json");
}

#[test]
fn a_request_without_reply_to_is_dead_lettered_and_jobs_go_on() {
    let mut h = Harness::ready();
    h.input(Input::Request(Request {
        id: RequestId {
            generation: 1,
            tag: 1,
        },
        payload: b"{\"op\":\"status\"}".to_vec(),
        reply_to: None,
        correlation_id: None,
        user_id: None,
        received_at: wall_clock(),
    }));
    let outputs = h.drain();
    let [Output::Publish(publish)] = &outputs[..] else {
        panic!("one dead letter: {outputs:?}");
    };
    let Destination::DeadRequest { request, reason } = &publish.destination else {
        panic!("a dead letter: {publish:?}");
    };
    assert_eq!(request.tag, 1);
    assert!(reason.contains("reply_to"), "{reason}");
    h.deliver(1, r#"{"id":"j1","to":["alice@localhost"],"body":"hi"}"#);
    let messages = h
        .drain()
        .into_iter()
        .filter(|output| matches!(output, Output::Message { .. }))
        .count();
    assert_eq!(messages, 1, "the job after it is delivered");
}

#[test]
fn a_request_of_a_lost_connection_is_left_to_the_broker() {
    let mut h = Harness::ready();
    h.input(Input::BrokerLost { generation: 1 });
    h.drain();
    h.input(Input::Request(Request {
        id: RequestId {
            generation: 1,
            tag: 1,
        },
        payload: b"{\"op\":\"status\"}".to_vec(),
        reply_to: Some("replies".into()),
        correlation_id: None,
        user_id: None,
        received_at: wall_clock(),
    }));
    assert!(h.drain().is_empty(), "the broker requeued it");
}

#[test]
fn presence_says_since_when_on_the_wall_clock_of_the_request() {
    // alice came online at `ready`; the request is taken 5 s later, when
    // the wall clock reads 12:00:00.000.
    let mut h = Harness::ready();
    h.tick(Duration::from_millis(1_500));
    h.presence("bob@localhost/a", None);
    h.tick(Duration::from_millis(2_000));
    h.presence("bob@localhost/a", Some(XmppShow::Away));
    h.presence("dave@localhost/y", None);
    h.tick(Duration::from_millis(500));
    let gone = Presence::new(PresenceType::Unavailable)
        .with_from(Jid::new("dave@localhost/y").unwrap())
        .with_to(Jid::new("herald@broadcast.localhost").unwrap());
    h.input(Input::Stanza(gone.into()));
    h.commit_all();
    h.tick(Duration::from_millis(1_000));
    let users = [
        "alice@localhost",
        "bob@localhost",
        "dave@localhost",
        "nobody@localhost",
    ];
    let since = |reply: &Value| -> Vec<(Value, Value)> {
        reply["result"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["since"].clone(), e["show_since"].clone()))
            .collect()
    };
    let reply = h.ask(1, &json!({"op": "presence", "users": users}));
    assert_eq!(
        since(&reply),
        [
            (json!("2026-12-06T11:59:55.000Z"), Value::Null),
            (
                json!("2026-12-06T11:59:56.500Z"),
                json!("2026-12-06T11:59:58.500Z")
            ),
            (json!("2026-12-06T11:59:59.000Z"), Value::Null),
            (Value::Null, Value::Null),
        ]
    );
    // A new stream starts from nothing: those online are no longer known
    // to be, nor since when, until their presence comes again (answering
    // the probes); nobody is taken to have gone offline.
    h.input(Input::StreamLost);
    h.input(Input::StreamUp);
    h.drain();
    let reply = h.ask(2, &json!({"op": "presence", "users": users}));
    assert_eq!(
        since(&reply)[..3],
        [
            (Value::Null, Value::Null),
            (Value::Null, Value::Null),
            (json!("2026-12-06T11:59:59.000Z"), Value::Null),
        ]
    );
}
