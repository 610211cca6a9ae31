//! What Herald answers on the XMPP side, seen from a real client through a
//! real server (each test runs on Prosody and on ejabberd): service
//! discovery, ping, errors for unknown requests, subscription revocation and
//! subscribing again.

use std::time::Duration;

use herald_testkit::amqp::EventTap;
use herald_testkit::c2s::XmppUser;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::server::XmppServer;

const WAIT: Duration = Duration::from_secs(20);
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

async fn start<S: XmppServer>(users: &[&str]) -> (S, Herald, tempfile::TempDir) {
    let server = S::start(users);
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(&server, &Names::unique(), dir.path());
    (server, herald, dir)
}

async fn iq(
    user: &mut XmppUser,
    id: &str,
    to: &str,
    kind: &str,
    payload: &str,
) -> tokio_xmpp::minidom::Element {
    let xml = format!("<iq xmlns='jabber:client' id='{id}' to='{to}' type='{kind}'>{payload}</iq>");
    user.exchange(&xml, "iq", |el| el.attr("id") == Some(id), WAIT)
        .await
        .unwrap_or_else(|| panic!("no answer to {xml}"))
}

herald_testkit::on_both_servers!(
    disco_info_ping_and_service_unavailable,
    revoking_the_subscription_makes_herald_forget_the_user,
    a_user_who_subscribes_again_is_seen_again,
);

async fn disco_info_ping_and_service_unavailable<S: XmppServer>() {
    let (server, _herald, _dir) = start::<S>(&["alice"]).await;
    let mut alice = XmppUser::login(&server, "alice", "desk").await;

    for to in ["broadcast.localhost", "herald@broadcast.localhost"] {
        let answer = iq(
            &mut alice,
            "d1",
            to,
            "get",
            &format!("<query xmlns='{DISCO_INFO}'/>"),
        )
        .await;
        assert_eq!(
            answer.attr("type"),
            Some("result"),
            "{}",
            String::from(&answer)
        );
        let query = answer
            .get_child("query", DISCO_INFO)
            .expect("disco#info query");
        let identity = query.get_child("identity", DISCO_INFO).expect("identity");
        assert_eq!(identity.attr("category"), Some("component"));
        let features: Vec<_> = query
            .children()
            .filter(|c| c.name() == "feature")
            .filter_map(|c| c.attr("var"))
            .collect();
        assert!(features.contains(&DISCO_INFO), "{features:?}");
        assert!(features.contains(&"urn:xmpp:ping"), "{features:?}");
    }

    let pong = iq(
        &mut alice,
        "p1",
        "broadcast.localhost",
        "get",
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_eq!(pong.attr("type"), Some("result"));

    for (kind, payload) in [
        ("get", "<query xmlns='jabber:iq:version'/>"),
        ("set", "<query xmlns='urn:example:unknown'/>"),
    ] {
        let answer = iq(
            &mut alice,
            "u1",
            "herald@broadcast.localhost",
            kind,
            payload,
        )
        .await;
        assert_eq!(
            answer.attr("type"),
            Some("error"),
            "{}",
            String::from(&answer)
        );
        let error = answer
            .get_child("error", "jabber:client")
            .expect("error element");
        assert!(
            error.has_child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas"),
            "{}",
            String::from(&answer)
        );
    }
}

async fn revoking_the_subscription_makes_herald_forget_the_user<S: XmppServer>() {
    let server = S::start(&["alice"]);
    let dir = tempfile::tempdir().unwrap();
    let names = Names::unique();
    let _herald = Herald::start(&server, &names, dir.path());
    let mut presence = EventTap::bind(&names.events, "presence.changed").await;
    let mut alice = XmppUser::login_available(&server, "alice", "desk").await;
    let event = presence
        .next_with_key("presence.changed", WAIT)
        .await
        .expect("alice seen");
    assert_eq!(event["available"], true);
    // alice revokes Herald's view of her presence: Herald forgets her.
    alice
        .send_xml(
            "<presence xmlns='jabber:client' to='herald@broadcast.localhost' type='unsubscribed'/>",
        )
        .await;
    let event = presence
        .next_with_key("presence.changed", WAIT)
        .await
        .expect("Herald drops alice's presence");
    assert_eq!(event["jid"], "alice@localhost/desk");
    assert_eq!(event["available"], false);
}

async fn a_user_who_subscribes_again_is_seen_again<S: XmppServer>() {
    let server = S::start(&["alice"]);
    let dir = tempfile::tempdir().unwrap();
    let names = Names::unique();
    let _herald = Herald::start(&server, &names, dir.path());
    let mut presence = EventTap::bind(&names.events, "presence.changed").await;
    let mut alice = XmppUser::login_available(&server, "alice", "desk").await;
    let event = presence
        .next_with_key("presence.changed", WAIT)
        .await
        .expect("alice seen");
    assert_eq!(event["available"], true);

    // alice removes Herald from her roster: both directions are cancelled.
    let removed = iq(
        &mut alice,
        "r1",
        "alice@localhost",
        "set",
        "<query xmlns='jabber:iq:roster'><item jid='herald@broadcast.localhost' subscription='remove'/></query>",
    )
    .await;
    assert_eq!(removed.attr("type"), Some("result"));
    let event = presence
        .next_with_key("presence.changed", WAIT)
        .await
        .expect("Herald drops alice's presence");
    assert_eq!(event["available"], false);

    // She subscribes again: Herald approves and asks for her presence back.
    let request = alice
        .exchange(
            "<presence xmlns='jabber:client' to='herald@broadcast.localhost' type='subscribe'/>",
            "presence",
            |p| {
                p.attr("from") == Some("herald@broadcast.localhost")
                    && p.attr("type") == Some("subscribe")
            },
            WAIT,
        )
        .await;
    assert!(request.is_some(), "Herald asks alice for her presence");
    alice
        .send_xml(
            "<presence xmlns='jabber:client' to='herald@broadcast.localhost' type='subscribed'/>",
        )
        .await;
    let event = presence
        .next_with_key("presence.changed", WAIT)
        .await
        .expect("Herald sees alice again");
    assert_eq!(event["jid"], "alice@localhost/desk");
    assert_eq!(event["available"], true);

    let roster = iq(
        &mut alice,
        "r2",
        "alice@localhost",
        "get",
        "<query xmlns='jabber:iq:roster'/>",
    )
    .await;
    let item = roster
        .get_child("query", "jabber:iq:roster")
        .and_then(|q| q.get_child("item", "jabber:iq:roster"))
        .expect("Herald is on alice's roster again");
    assert_eq!(item.attr("jid"), Some("herald@broadcast.localhost"));
    assert_eq!(item.attr("subscription"), Some("both"));
}
