use proptest::prelude::*;
use std::sync::Arc;
use xmpp_parsers::iq::Iq;

use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;

use super::*;

/// Parses what was written, as the server would, back into a stanza.
fn read<T: TryFrom<Element, Error: std::fmt::Debug>>(bytes: &[u8]) -> T {
    let document = format!(
        "<stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams'>{}</stream:stream>",
        std::str::from_utf8(bytes).expect("UTF-8")
    );
    let stream: Element = document.parse().expect("well-formed");
    let child = stream.children().next().expect("one stanza").clone();
    T::try_from(child).expect("the stanza written")
}

fn parse(bytes: &[u8]) -> Message {
    read(bytes)
}

fn message(to: &str, body: &str, subject: Option<&str>, type_: MessageType) -> Message {
    let mut message = Message::new(Some(Jid::new(to).unwrap()));
    message.from = Some(Jid::new("herald@broadcast.localhost").unwrap());
    message.type_ = type_;
    message.bodies.insert(Lang::default(), body.to_string());
    if let Some(subject) = subject {
        message
            .subjects
            .insert(Lang::default(), subject.to_string());
    }
    message
}

fn encode(stanza: impl Into<Stanza>) -> Result<Vec<u8>, Unserializable> {
    let mut out = b"kept".to_vec();
    let outgoing = Outgoing::Stanza(Box::new(stanza.into()));
    let result = StanzaEncoder::default().encode(&outgoing, &mut out);
    let written = out.split_off(4);
    assert_eq!(out, b"kept", "what was there before stays");
    result.map(|()| written)
}

#[test]
fn a_broadcast_message_is_written_directly_and_reads_back_the_same() {
    let sent = message(
        "ohara@localhost/O'Hara & <Co> \"desk\"",
        "Tom & Jerry <3 \"quotes\" 'apostrophes' > and\ttabs\r\nlines, ünïcödé ✓",
        Some("Alert: <b>now</b>"),
        MessageType::Headline,
    );
    let bytes = encode(sent.clone()).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with("<message from='herald@broadcast.localhost'"),
        "{text}"
    );
    assert!(!text.contains("jabber:component"), "{text}");
    assert_eq!(parse(&bytes), sent);
}

#[test]
fn a_message_with_a_payload_or_a_language_takes_the_generic_path_and_reads_back() {
    let mut with_lang = message("a@localhost", "hallo", None, MessageType::Chat);
    with_lang.bodies.insert(Lang("de".into()), "hallo".into());
    let mut with_payload = message("a@localhost", "x", None, MessageType::Chat);
    with_payload
        .payloads
        .push(Element::builder("ping", "urn:xmpp:ping").build());
    for sent in [with_lang, with_payload] {
        assert!(!is_plain(&sent));
        assert_eq!(parse(&encode(sent.clone()).unwrap()), sent);
    }
}

#[test]
fn forbidden_characters_are_refused_by_both_paths_and_nothing_is_written() {
    for body in [
        "bell \u{7}",
        "nul \0",
        "not a character \u{fffe}",
        "\u{ffff}",
    ] {
        let plain = message("a@localhost", body, None, MessageType::Chat);
        assert!(encode(plain.clone()).is_err(), "{body:?}");
        let mut generic = plain;
        generic
            .payloads
            .push(Element::builder("x", "urn:x").build());
        assert!(encode(generic).is_err(), "{body:?}");
    }
}

#[test]
fn other_stanzas_are_encoded_without_the_stream_namespace() {
    let ping = Iq::from_get("p1", xmpp_parsers::ping::Ping)
        .with_from(Jid::new("broadcast.localhost").unwrap())
        .with_to(Jid::new("localhost").unwrap());
    let text = String::from_utf8(encode(ping).unwrap()).unwrap();
    assert!(text.starts_with("<iq "), "{text}");
    assert!(!text.contains("jabber:component"), "{text}");
}

fn marks() -> Marks {
    Marks {
        id_prefix: "Kq3-_x.".into(),
        thread: "herald.<&>".into(),
        hints: vec!["no-store", "no-permanent-store"],
        receipt: false,
    }
}

fn write_template(template: &Arc<MessageTemplate>, to: &Addressee) -> Vec<u8> {
    let mut out = Vec::new();
    let outgoing = Outgoing::Message {
        template: template.clone(),
        to: to.clone(),
    };
    StanzaEncoder::default()
        .encode(&outgoing, &mut out)
        .unwrap();
    out
}

#[test]
fn a_broadcast_template_writes_what_the_message_would_be() {
    let template = MessageTemplate::new(
        BareJid::new("herald@broadcast.localhost").unwrap(),
        MessageType::Chat,
        Some("<subject> & 'more'".into()),
        "body \"quoted\" & <tagged>\r\n".into(),
        marks(),
    )
    .unwrap();
    let template = Arc::new(template);
    for position in [0, 7, 10, 4_294_967_295] {
        let to = Addressee::own("alice@localhost".into(), position);
        let out = write_template(&template, &to);
        assert_eq!(parse(&out), template.to_message(&to));
        // The same message, written by the generic encoder, reads back the same.
        assert_eq!(
            parse(&encode(template.to_message(&to)).unwrap()),
            parse(&out)
        );
    }
}

#[test]
fn a_broadcast_message_carries_its_id_twice_numbered_by_its_recipients_position() {
    let template = MessageTemplate::new(
        BareJid::new("herald@broadcast.localhost").unwrap(),
        MessageType::Headline,
        None,
        "hello".into(),
        marks(),
    )
    .map(Arc::new)
    .unwrap();
    let to = |position| Addressee::own("bob@localhost".into(), position);
    let message = parse(&write_template(&template, &to(42)));
    assert_eq!(
        message.id.as_ref().map(|id| id.0.as_str()),
        Some("Kq3-_x.42")
    );
    let origin_id = message
        .payloads
        .iter()
        .find(|p| p.is("origin-id", "urn:xmpp:sid:0"))
        .expect("an origin-id");
    assert_eq!(origin_id.attr("id"), Some("Kq3-_x.42"));
    let hints: Vec<&str> = message
        .payloads
        .iter()
        .filter(|p| p.ns() == "urn:xmpp:hints")
        .map(|p| p.name())
        .collect();
    assert_eq!(hints, ["no-store", "no-permanent-store"]);
    assert_eq!(
        write_template(&template, &to(42)),
        write_template(&template, &to(42)),
        "the same recipient, the same bytes"
    );
    assert_ne!(
        parse(&write_template(&template, &to(43))).id,
        message.id,
        "another position, another id"
    );
}

#[test]
fn a_template_refuses_what_xml_forbids() {
    let from = BareJid::new("herald@broadcast.localhost").unwrap();
    let bad = |subject: Option<&str>, body: &str| {
        MessageTemplate::new(
            from.clone(),
            MessageType::Chat,
            subject.map(str::to_string),
            body.to_string(),
            marks(),
        )
        .is_err()
    };
    assert!(bad(None, "bell \u{7}"));
    assert!(bad(Some("\u{ffff}"), "fine"));
    assert!(!bad(Some("fine"), "fine"));
}

proptest! {
    /// Any text either path can write reads back as it was, and the fast
    /// path accepts exactly what the generic one does.
    #[test]
    fn both_paths_agree(body in "(\\PC|[\\x00-\\x1f])*", subject in proptest::option::of("[ -~\u{80}-\u{10ffff}]*")) {
        let plain = message("u@localhost", &body, subject.as_deref(), MessageType::Chat);
        let mut generic = plain.clone();
        generic.payloads.push(Element::builder("x", "urn:x").build());
        let fast = encode(plain.clone());
        let slow = encode(generic.clone());
        prop_assert_eq!(fast.is_ok(), slow.is_ok());
        if let (Ok(fast), Ok(slow)) = (fast, slow) {
            prop_assert_eq!(parse(&fast), plain);
            prop_assert_eq!(parse(&slow), generic);
        }
    }
}

fn parse_presence(bytes: &[u8]) -> Presence {
    read(bytes)
}

#[test]
fn a_plain_presence_is_written_directly_and_reads_back_as_the_generic_path_writes_it() {
    use xmpp_parsers::presence::Type;
    let types = [
        Type::None,
        Type::Error,
        Type::Probe,
        Type::Subscribe,
        Type::Subscribed,
        Type::Unavailable,
        Type::Unsubscribe,
        Type::Unsubscribed,
    ];
    for type_ in types {
        for id in [None, Some("p'1&<2>\"".to_string())] {
            let mut sent = Presence::new(type_.clone())
                .with_from(Jid::new("herald@broadcast.localhost").unwrap())
                .with_to(Jid::new("ohara@localhost/O'Hara & <Co> \"desk\"").unwrap());
            sent.id = id;
            assert!(plain::is_plain_presence(&sent));
            let direct = encode(sent.clone()).unwrap();
            let text = String::from_utf8(direct.clone()).unwrap();
            assert!(text.starts_with("<presence from='herald@"), "{text}");
            assert!(text.ends_with("/>"), "{text}");
            let mut generic = Vec::new();
            StanzaEncoder::default()
                .encode_generic(&sent.clone().into(), &mut generic)
                .unwrap();
            assert_eq!(parse_presence(&direct), sent);
            assert_eq!(parse_presence(&direct), parse_presence(&generic));
        }
    }
}

#[test]
fn a_presence_with_more_than_addresses_takes_the_generic_path_and_reads_back() {
    use xmpp_parsers::presence::{Priority, Show, Type};
    let plain = Presence::new(Type::None).with_to(Jid::new("a@localhost").unwrap());
    let mut with_show = plain.clone();
    with_show.show = Some(Show::Away);
    let mut with_status = plain.clone();
    with_status.statuses.insert(Lang::default(), "out".into());
    let mut with_priority = plain.clone();
    with_priority.priority = Priority(-1);
    let mut with_payload = plain;
    with_payload
        .payloads
        .push(Element::builder("x", "urn:x").build());
    for sent in [with_show, with_status, with_priority, with_payload] {
        assert!(!plain::is_plain_presence(&sent));
        assert_eq!(parse_presence(&encode(sent.clone()).unwrap()), sent);
    }
}

#[test]
fn a_ping_is_written_directly_and_reads_back_as_the_generic_path_writes_it() {
    let ping = Iq::from_get("p'1&<2>", xmpp_parsers::ping::Ping)
        .with_from(Jid::new("broadcast.localhost").unwrap())
        .with_to(Jid::new("localhost").unwrap());
    let direct = encode(ping.clone()).unwrap();
    let text = String::from_utf8(direct.clone()).unwrap();
    assert!(text.starts_with("<iq type='get'"), "{text}");
    let mut generic = Vec::new();
    StanzaEncoder::default()
        .encode_generic(&ping.clone().into(), &mut generic)
        .unwrap();
    assert_ne!(direct, generic, "the direct path wrote it");
    assert_eq!(read::<Iq>(&direct), ping);
    assert_eq!(read::<Iq>(&direct), read::<Iq>(&generic));
    // Any other iq, a get included, takes the generic path.
    let version = Iq::from_get("v1", xmpp_parsers::version::VersionQuery)
        .with_to(Jid::new("localhost").unwrap());
    let Iq::Get { payload, .. } = &version else {
        unreachable!("made as a get")
    };
    assert!(!plain::is_ping(payload));
    assert_eq!(read::<Iq>(&encode(version.clone()).unwrap()), version);
}
