//! Generated hostile stanzas from the server side, run on every CI pass
//! (issue 5, bad input): proptest builds well-formed stanzas with random
//! names, addresses, types, ids, text (any character XML allows, escaped)
//! and payloads nested past Herald's depth limit, and a scripted server
//! feeds 1,500 of them to a real Herald. Herald must read past all
//! of them on the same stream, write only well-formed XML from its own
//! domain to the server's, and still deliver a job.
//!
//! The stanzas are drawn from a fixed seed, so a failure reproduces; set
//! `HERALD_FUZZ_SEED` (a number) to draw others.

use std::time::Duration;

use herald_testkit::events::{await_presence, next_report};
use herald_testkit::fake_server::{domain_of, FakeStack};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use serde_json::json;

const HERALD: &str = "herald@broadcast.localhost";
const COMPONENT: &str = "broadcast.localhost";
const WAIT: Duration = Duration::from_secs(30);
const STANZAS: usize = 1_500;

/// Text with any character XML 1.0 allows, escaped for an attribute or
/// element content.
fn text() -> impl Strategy<Value = String> {
    let allowed = prop_oneof![
        4 => proptest::char::range(' ', '~'),
        1 => Just('\t'),
        1 => Just('\n'),
        1 => proptest::char::range('\u{a0}', '\u{d7ff}'),
        1 => proptest::char::range('\u{e000}', '\u{fffd}'),
        1 => proptest::char::range('\u{10000}', '\u{10ffff}'),
    ];
    proptest::collection::vec(allowed, 0..40).prop_map(|chars| {
        chars
            .into_iter()
            .map(|c| match c {
                '&' => "&amp;".to_string(),
                '<' => "&lt;".to_string(),
                '>' => "&gt;".to_string(),
                '\'' => "&apos;".to_string(),
                '"' => "&quot;".to_string(),
                c => c.to_string(),
            })
            .collect()
    })
}

/// An address: users of the server's domain, the server, Herald, other
/// domains, or anything at all.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..20u8).prop_map(|n| format!("u{n}@localhost/r{n}")),
        (0..20u8).prop_map(|n| format!("u{n}@localhost")),
        Just("localhost".to_string()),
        Just(HERALD.to_string()),
        Just(COMPONENT.to_string()),
        Just(format!("{HERALD}/res")),
        Just("mallory@evil.example/x".to_string()),
        text(),
    ]
}

fn attribute(
    name: &'static str,
    value: impl Strategy<Value = String> + 'static,
) -> BoxedStrategy<String> {
    proptest::option::of(value)
        .prop_map(move |v| v.map(|v| format!(" {name}='{v}'")).unwrap_or_default())
        .boxed()
}

/// An element nested `depth` deep in a namespace of its own, with text.
fn nested(depth: usize, text: String) -> String {
    format!(
        "{}{text}{}",
        "<n xmlns='urn:example:fuzz'>".repeat(depth),
        "</n>".repeat(depth)
    )
}

fn child() -> impl Strategy<Value = String> {
    prop_oneof![
        text().prop_map(|t| format!("<body>{t}</body>")),
        text().prop_map(|t| format!("<subject>{t}</subject>")),
        text().prop_map(|t| format!("<status>{t}</status>")),
        prop_oneof![
            Just("chat".to_string()),
            Just("away".to_string()),
            Just("xa".to_string()),
            Just("dnd".to_string()),
            text()
        ]
        .prop_map(|s| format!("<show>{s}</show>")),
        any::<i64>().prop_map(|p| format!("<priority>{p}</priority>")),
        Just("<ping xmlns='urn:xmpp:ping'/>".to_string()),
        Just("<query xmlns='http://jabber.org/protocol/disco#info'/>".to_string()),
        (0..100usize, text()).prop_map(|(depth, t)| nested(depth, t)),
    ]
}

fn stanza() -> impl Strategy<Value = String> {
    let kind = prop_oneof![Just("presence"), Just("message"), Just("iq")];
    let kind_type = prop_oneof![
        Just("unavailable".to_string()),
        Just("subscribe".to_string()),
        Just("subscribed".to_string()),
        Just("unsubscribe".to_string()),
        Just("unsubscribed".to_string()),
        Just("probe".to_string()),
        Just("error".to_string()),
        Just("chat".to_string()),
        Just("headline".to_string()),
        Just("get".to_string()),
        Just("set".to_string()),
        Just("result".to_string()),
        text(),
    ];
    (
        kind,
        attribute("from", address()),
        attribute("to", address()),
        attribute("type", kind_type),
        attribute("id", text()),
        proptest::collection::vec(child(), 0..4),
    )
        .prop_map(|(kind, from, to, kind_type, id, children)| {
            format!(
                "<{kind}{from}{to}{kind_type}{id}>{}</{kind}>",
                children.concat()
            )
        })
}

fn draw(count: usize) -> Vec<String> {
    let seed: u64 = std::env::var("HERALD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4e52_414c_4421);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Default::default(), rng);
    let strategy = stanza();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostile_stanzas_neither_break_the_stream_nor_stop_delivery() {
    let FakeStack {
        server,
        names,
        mut herald,
        mut presence,
        mut reports,
        amqp,
        dir: _dir,
    } = FakeStack::start().await;

    for stanza in draw(STANZAS) {
        server.send(stanza);
    }
    // Herald reads its stream in order: once this is answered, it has read
    // every generated stanza.
    server.send(format!(
        "<iq type='get' id='fence' from='alice@localhost/desk' to='{COMPONENT}'>\
         <ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let fence = server
        .wait_for("the answer to the fence ping", WAIT, |n| {
            n.name == "iq" && n.attr("id") == Some("fence") && n.attr("type") != Some("get")
        })
        .await;
    assert_eq!(fence.attr("type"), Some("result"), "{fence:?}");

    // Then a subscriber comes online and a job reaches her.
    server.send(format!(
        "<presence from='alice@localhost/desk' to='{HERALD}'/>"
    ));
    await_presence(&mut presence, "alice@localhost/desk", Some("online")).await;
    let id = format!("after-fuzz-{}", herald_testkit::random_hex());
    amqp.publish_json(
        &names.jobs,
        &json!({"id": id, "to": ["alice@localhost"], "body": "still here"}),
    )
    .await;
    let report = next_report(&mut reports, &id).await;
    assert_eq!(report["sent"], 1, "{report}");
    server.wait_for_message("still here", WAIT).await;

    // One stream all along, only well-formed XML written, only from
    // Herald's domain and never to it (answers go to whoever asked, which
    // may be another server's user).
    assert!(herald.is_running(), "{}", herald.log_text());
    assert_eq!(server.malformed(), None);
    assert_eq!(server.connections(), 1, "{}", herald.log_text());
    for stanza in server.stanzas() {
        let from = stanza.attr("from").unwrap_or_default();
        assert_eq!(domain_of(from), COMPONENT, "{stanza:?}");
        let to = stanza.attr("to").unwrap_or_default();
        assert!(!to.is_empty(), "{stanza:?}");
        assert_ne!(
            domain_of(to),
            COMPONENT,
            "Herald wrote to itself: {stanza:?}"
        );
    }
}
