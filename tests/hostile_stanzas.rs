//! Hostile stanzas from the server side (issue 5, bad input and
//! authorization): a scripted XEP-0114 server feeds Herald stanzas no sane
//! server would send. Herald must stay connected, answer IQ requests with
//! errors, write only well-formed XML from its own domain, ignore presence
//! and messages from users on other domains, and still deliver a job.

use std::time::Duration;

use herald_testkit::amqp::EventTap;
use herald_testkit::events::{await_presence, next_report};
use herald_testkit::fake_server::{domain_of, FakeServer, FakeStack};
use herald_testkit::herald::{Herald, Names};
use herald_testkit::http;
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use herald_testkit::xml::Node;
use serde_json::json;
use tokio::io::AsyncWriteExt;

const HERALD: &str = "herald@broadcast.localhost";
const COMPONENT: &str = "broadcast.localhost";
const WAIT: Duration = Duration::from_secs(20);

/// `depth` nested elements in a namespace of their own.
fn nested(depth: usize) -> String {
    format!(
        "<x xmlns='urn:example:deep'>{}{}",
        "<x>".repeat(depth - 1),
        "</x>".repeat(depth)
    )
}

fn iq_get(id: &str, payload: &str) -> String {
    format!("<iq type='get' id='{id}' from='alice@localhost/desk' to='{COMPONENT}'>{payload}</iq>")
}

/// IQ requests with garbage; each must be answered with an error.
fn garbage_iqs() -> Vec<(&'static str, String)> {
    vec![
        (
            "unknown-payload",
            iq_get(
                "unknown-payload",
                "<garbage xmlns='urn:example:garbage'>&lt;&amp;<more/></garbage>",
            ),
        ),
        (
            "no-payload",
            format!("<iq type='set' id='no-payload' from='alice@localhost/desk' to='{HERALD}'/>"),
        ),
        (
            "two-payloads",
            iq_get("two-payloads", "<a xmlns='urn:a'/><b xmlns='urn:b'/>"),
        ),
        (
            "disco-items-set",
            format!(
                "<iq type='set' id='disco-items-set' from='alice@localhost/desk' to='{HERALD}'>\
                 <query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
            ),
        ),
        ("deep-iq", iq_get("deep-iq", &nested(10_000))),
        (
            "huge-iq",
            iq_get(
                "huge-iq",
                &format!(
                    "<huge xmlns='urn:example:huge'>{}</huge>",
                    "&lt;huge&gt;".repeat(300_000)
                ),
            ),
        ),
        (
            "<&'\"",
            format!(
                "<iq type='get' id='&lt;&amp;&apos;\"' from='alice@localhost/desk' to='{COMPONENT}'>\
                 <garbage xmlns='urn:example:garbage'/></iq>"
            ),
        ),
    ]
}

/// Stanzas Herald must read past without effect, or with the effect noted.
fn hostile_stanzas() -> Vec<String> {
    let alice = "from='alice@localhost/desk'";
    vec![
        // Invalid <show> and priority: presence that does not parse.
        format!("<presence from='alice@localhost/phone' to='{HERALD}'><show>bogus</show></presence>"),
        format!("<presence from='alice@localhost/tab' to='{HERALD}'><priority>99999</priority></presence>"),
        // Unknown elements inside stanzas.
        format!("<message {alice} to='{HERALD}' type='headline'><unknown xmlns='urn:example:u'><deeper/></unknown></message>"),
        format!("<presence from='alice@localhost/desk' to='{HERALD}'><unknown xmlns='urn:example:u'/></presence>"),
        // Deeply nested payloads.
        format!("<message {alice} to='{HERALD}' type='headline'>{}</message>", nested(10_000)),
        format!("<presence from='alice@localhost/deep' to='{HERALD}' type='unavailable'>{}</presence>", nested(10_000)),
        // A huge stanza: a 6 MB body.
        format!(
            "<message {alice} to='{HERALD}' type='headline'><body>{}</body></message>",
            "huge &amp; ".repeat(600_000)
        ),
        // Unexpected IQ responses and IQs that are not requests.
        format!("<iq type='result' id='not-ours' from='localhost' to='{COMPONENT}'/>"),
        format!("<iq type='error' id='not-ours-either' from='localhost' to='{COMPONENT}'/>"),
        format!("<iq type='bogus' id='bogus-type' {alice} to='{COMPONENT}'><ping xmlns='urn:xmpp:ping'/></iq>"),
        // Addressed to another domain: whatever Herald answers must come
        // from its own domain, or the server closes its stream.
        format!("<iq type='get' id='to-elsewhere' {alice} to='evil.example'><garbage xmlns='urn:g'/></iq>"),
        format!("<iq type='get' id='ping-elsewhere' {alice} to='evil.example'><ping xmlns='urn:xmpp:ping'/></iq>"),
        format!("<presence from='alice@localhost/desk' to='alice@evil.example' type='probe'/>"),
        // No from, no to, neither.
        "<presence/>".into(),
        format!("<presence to='{HERALD}'/>"),
        format!("<presence from='alice@localhost/desk'/>"),
        "<message type='chat'><body>no addresses</body></message>".into(),
        format!("<message {alice} type='chat'><body>no to</body></message>"),
        "<iq type='get' id='no-addresses'><ping xmlns='urn:xmpp:ping'/></iq>".into(),
        format!("<iq type='get' id='no-from' to='{COMPONENT}'><ping xmlns='urn:xmpp:ping'/></iq>"),
        // Whitespace between stanzas.
        " \n\t ".into(),
    ]
}

/// Presence and messages from users on another domain (or claiming
/// Herald's own): none may reach the presence book, the subscribers or
/// the events.
fn foreign_stanzas() -> Vec<String> {
    let mut stanzas = Vec::new();
    for from in [
        "mallory@evil.example/x",
        "evil.example",
        "alice@localhost.evil.example/x",
        "spoof@broadcast.localhost/x",
    ] {
        stanzas.push(format!("<presence from='{from}' to='{HERALD}'/>"));
        stanzas.push(format!(
            "<presence from='{from}' to='{HERALD}' type='subscribe'/>"
        ));
        stanzas.push(format!(
            "<presence from='{from}' to='{HERALD}' type='subscribed'/>"
        ));
        stanzas.push(format!(
            "<presence from='{from}' to='{HERALD}' type='probe'/>"
        ));
        stanzas.push(format!(
            "<message from='{from}' to='{HERALD}' type='chat'><body>from {from}</body></message>"
        ));
    }
    stanzas
}

fn is_reply_to(node: &Node, id: &str) -> bool {
    node.name == "iq" && node.attr("id") == Some(id) && node.attr("type") != Some("get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_survives_hostile_stanzas_and_still_delivers() {
    let FakeStack {
        server,
        names,
        mut herald,
        mut presence,
        mut reports,
        amqp,
        dir: _dir,
    } = FakeStack::start().await;
    let mut messages = EventTap::bind(&names.events, "message.received").await;

    // A subscriber on the server's domain comes online.
    server.send(format!(
        "<presence from='alice@localhost/desk' to='{HERALD}'/>"
    ));
    await_presence(&mut presence, "alice@localhost/desk", Some("online")).await;

    for stanza in hostile_stanzas() {
        server.send(stanza);
    }
    for stanza in foreign_stanzas() {
        server.send(stanza);
    }
    let garbage = garbage_iqs();
    for (_, iq) in &garbage {
        server.send(iq.clone());
    }
    // Allowed control characters as references, and markup as text: the
    // message event carries them unchanged.
    server.send(format!(
        "<message from='alice@localhost/desk' to='{HERALD}' type='chat'>\
         <body>tab&#9;lf&#10;cr&#13;&#x1F6A8;&lt;b&gt;&amp;&apos;&quot;</body></message>"
    ));
    // Herald handles the stream in order: once this is answered, it has
    // read everything above.
    server.send(format!(
        "<iq type='get' id='fence' from='alice@localhost/desk' to='{COMPONENT}'>\
         <ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let fence = server
        .wait_for("the answer to the fence ping", WAIT, |n| {
            is_reply_to(n, "fence")
        })
        .await;
    assert_eq!(fence.attr("type"), Some("result"), "{fence:?}");

    for (id, _) in &garbage {
        let reply = server
            .wait_for(&format!("the answer to IQ {id:?}"), WAIT, |n| {
                is_reply_to(n, id)
            })
            .await;
        assert_eq!(reply.attr("type"), Some("error"), "IQ {id:?}: {reply:?}");
        assert_eq!(reply.attr("to"), Some("alice@localhost/desk"), "{reply:?}");
        assert!(reply.child("error").is_some(), "IQ {id:?}: {reply:?}");
    }

    // The only message event is the one from alice with the references.
    let event = messages
        .next(WAIT)
        .await
        .expect("a message.received event")
        .1;
    assert_eq!(event["from"], "alice@localhost/desk", "{event}");
    assert_eq!(event["body"], "tab\tlf\ncr\r🚨<b>&'\"", "{event}");

    // Nothing from another domain reached the presence book or the store.
    let metrics = herald.metrics();
    assert_eq!(http::value(&metrics, "herald_online_users"), 1.0);
    assert_eq!(http::value(&metrics, "herald_subscriptions"), 1.0);

    // A job still goes out, to alice only.
    let id = format!("after-hostile-{}", herald_testkit::random_hex());
    let job =
        json!({"id": id, "to": ["alice@localhost", "mallory@evil.example"], "body": "still here"});
    amqp.publish_json(&names.jobs, &job).await;
    let report = next_report(&mut reports, &id).await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(report["skipped"]["offline"], 1, "{report}");
    let delivered = server.wait_for_message("still here", WAIT).await;
    assert_eq!(delivered.attr("to"), Some("alice@localhost"));

    // No other message event, no presence event for anyone but alice.
    assert_eq!(messages.next(Duration::from_millis(500)).await, None);
    while let Some((_, event)) = presence.next(Duration::from_millis(500)).await {
        let jid = event["jid"].as_str().unwrap_or_default();
        assert_eq!(domain_of(jid), "localhost", "{event}");
        assert!(jid.starts_with("alice@"), "{event}");
    }

    // Herald stayed connected, wrote only well-formed XML, from its own
    // domain, and sent nothing to another domain.
    assert!(herald.is_running(), "{}", herald.log_text());
    assert_eq!(server.malformed(), None);
    assert_eq!(server.connections(), 1, "{}", herald.log_text());
    let metrics = herald.metrics();
    assert_eq!(
        http::value(&metrics, "herald_xmpp_connects_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(herald.log_count("reconnecting"), 0, "{}", herald.log_text());
    for stanza in server.stanzas() {
        let from = stanza.attr("from").unwrap_or_default();
        assert_eq!(domain_of(from), COMPONENT, "{stanza:?}");
        let to = stanza.attr("to").unwrap_or_default();
        assert!(
            matches!(domain_of(to), "localhost"),
            "Herald wrote to {to:?}: {stanza:?}"
        );
    }
}

/// What no server may send on a component stream: XML that is not
/// well-formed (a reference to a control character) and a top-level element
/// that is no stanza. The stream cannot be read past either; Herald drops
/// it, connects again, and goes on delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_costs_a_reconnect_not_a_crash() {
    let FakeStack {
        server,
        names,
        mut herald,
        mut presence,
        mut reports,
        amqp,
        dir: _dir,
    } = FakeStack::start().await;
    let online = format!("<presence from='alice@localhost/desk' to='{HERALD}'/>");
    server.send(online.clone());
    await_presence(&mut presence, "alice@localhost/desk", Some("online")).await;

    let breakers = [
        format!(
            "<message from='alice@localhost/desk' to='{HERALD}' type='chat'><body>bell&#7;</body></message>"
        ),
        "<unknown xmlns='urn:example:unknown'><child/></unknown>".to_string(),
    ];
    for (n, breaker) in breakers.into_iter().enumerate() {
        server.send(breaker);
        server.wait_connections(n + 2, WAIT).await;
        server.send(online.clone());
        await_presence(&mut presence, "alice@localhost/desk", Some("online")).await;
    }

    let id = format!("after-broken-{}", herald_testkit::random_hex());
    let job = json!({"id": id, "to": ["alice@localhost"], "body": "still here"});
    amqp.publish_json(&names.jobs, &job).await;
    let report = next_report(&mut reports, &id).await;
    assert_eq!(report["sent"], 1, "{report}");
    server.wait_for_message("still here", WAIT).await;

    assert!(herald.is_running(), "{}", herald.log_text());
    assert_eq!(server.malformed(), None);
    assert_eq!(server.connections(), 3);
    assert_eq!(
        herald.log_count("XMPP stream lost"),
        2,
        "{}",
        herald.log_text()
    );
    let metrics = herald.metrics();
    assert_eq!(
        http::value(&metrics, "herald_xmpp_connects_total{result=\"ok\"}"),
        3.0
    );
}

/// The deep nesting above is no theory: any user can send it through
/// Prosody, well within its stanza size limit. Herald drops what is too
/// deep, stays connected and delivers. (Not on ejabberd: the same stanza
/// from a user brings the whole ejabberd 23.01 node down before it reaches
/// Herald.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_crash_herald_with_deep_nesting() {
    let mut stack = Stack::<Prosody>::start(&["alice", "bob"]).await;
    let mut bob = stack.online("bob").await;
    // Written as bytes: the test client's own XML library would overflow
    // its stack on this element just like Herald's did.
    let (alice, _) = herald_testkit::c2s::establish(
        &stack.server.c2s_addr(),
        stack.server.domain(),
        "alice",
        stack.server.password("alice"),
        "desk",
    )
    .await
    .expect("alice logs in");
    let mut alice = alice.into_inner();
    let deep = format!(
        "<message to='{HERALD}' type='chat'><body>deep</body>{}</message>",
        nested(10_000)
    );
    alice.write_all(deep.as_bytes()).await.unwrap();
    alice.flush().await.unwrap();
    stack
        .herald
        .wait_log_count("element nested too deep dropped", 1, WAIT);

    let id = format!("after-deep-{}", herald_testkit::random_hex());
    stack
        .publish(json!({"id": id, "to": ["bob@localhost"], "body": "still here"}))
        .await;
    let report = next_report(&mut stack.reports, &id).await;
    assert_eq!(report["sent"], 1, "{report}");
    let (from, body, _) = bob.next_message(WAIT).await.expect("bob gets the job");
    assert_eq!((from.as_str(), body.as_str()), (HERALD, "still here"));
    assert_eq!(
        stack.metric("herald_xmpp_connects_total{result=\"ok\"}"),
        1.0,
        "{}",
        stack.herald.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_flooding_the_component_is_limited_and_others_still_get_through() {
    const FLOOD: usize = 2000;
    let server = FakeServer::start();
    let names = Names::unique();
    let dir = tempfile::tempdir().unwrap();
    let limits = [
        ("HERALD_XMPP__USER_EVENTS_PER_SEC", "10"),
        ("HERALD_XMPP__USER_EVENTS_BURST", "20"),
    ];
    let herald = Herald::start_at(&server.target(), &names, dir.path(), &limits);
    let mut events = EventTap::bind(&names.events, "message.received").await;
    let started = std::time::Instant::now();
    let flood: String = (0..FLOOD)
        .map(|i| {
            format!("<message from='flood@localhost/r' to='{HERALD}' type='chat'><body>spam {i}</body></message>")
        })
        .collect();
    server.send(flood);
    server.send(format!(
        "<message from='calm@localhost/r' to='{HERALD}' type='chat'><body>hello</body></message>"
    ));

    let (mut flooded, mut calm) = (0, false);
    while let Some((_, event)) = events.next(Duration::from_secs(2)).await {
        match event["from"].as_str() {
            Some("flood@localhost/r") => flooded += 1,
            Some("calm@localhost/r") => calm = true,
            other => panic!("unexpected sender {other:?}"),
        }
    }
    assert!(calm, "another user's message must get through the flood");
    // The burst, then 10 per second for as long as the flood could last.
    let allowed = 20 + 10 * (started.elapsed().as_secs() as usize + 1);
    assert!(
        (20..=allowed).contains(&flooded),
        "{flooded} events from the flooder, at most {allowed} allowed"
    );
    let limited = http::value(
        &herald.metrics(),
        r#"herald_user_stanzas_limited_total{kind="message"}"#,
    );
    assert_eq!(limited as usize, FLOOD - flooded);
}
