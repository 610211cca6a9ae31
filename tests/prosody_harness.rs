//! Proves the test harness itself against a real Prosody: provisioning,
//! c2s logins, message delivery, and presence routing to the component.

use std::time::Duration;

use herald_testkit::c2s::XmppUser;
use herald_testkit::component::{connect_component, next_presence_from};
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;
use tokio_xmpp::parsers::presence::{Show, Type as PresenceType};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_users_exchange_a_chat_message() {
    let prosody = Prosody::start(&["alice", "bob"]);
    let mut alice = XmppUser::login_available(&prosody, "alice", "laptop").await;
    let mut bob = XmppUser::login_available(&prosody, "bob", "phone").await;
    assert_eq!(alice.jid(), "alice@localhost/laptop");
    assert_eq!(bob.bare_jid(), "bob@localhost");

    alice.send_chat("bob@localhost", "hello bob").await;
    let (from, body, kind) = bob
        .next_message(WAIT)
        .await
        .expect("bob got no message from alice");
    assert_eq!(from, "alice@localhost/laptop");
    assert_eq!(body, "hello bob");
    assert_eq!(kind, "chat");
    assert_eq!(bob.messages().len(), 1);

    // Nothing else arrives, and alice got nothing.
    bob.expect_no_message(Duration::from_millis(300)).await;
    alice.expect_no_message(Duration::from_millis(100)).await;

    alice.disconnect().await;
    bob.disconnect().await;
}

#[tokio::test]
async fn component_sees_presence_of_provisioned_users() {
    let prosody = Prosody::start(&["alice", "bob"]);
    let mut component = connect_component(&prosody).await;

    // Login + initial presence: routed to the component through the roster.
    let mut alice = XmppUser::login(&prosody, "alice", "desk").await;
    alice.send_presence(None, 0).await;
    let p = next_presence_from(&mut component, "alice@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;
    assert_eq!(p.from.unwrap().to_string(), "alice@localhost/desk");
    assert_eq!(p.to.unwrap().to_string(), "herald@broadcast.localhost");
    assert_eq!(p.show, None);

    // show + priority changes reach it too.
    alice.send_presence(Some("dnd"), 5).await;
    let p = next_presence_from(&mut component, "alice@localhost", |p| {
        p.type_ == PresenceType::None && p.show.is_some()
    })
    .await;
    assert_eq!(p.show, Some(Show::Dnd));
    assert_eq!(p.priority.0, 5);

    // Clean logout -> unavailable.
    alice.disconnect().await;
    next_presence_from(&mut component, "alice@localhost", |p| {
        p.type_ == PresenceType::Unavailable
    })
    .await;

    // A dropped TCP connection (crashed client) -> unavailable as well.
    let mut bob = XmppUser::login(&prosody, "bob", "phone").await;
    bob.send_presence(Some("away"), -1).await;
    let p = next_presence_from(&mut component, "bob@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;
    assert_eq!(p.show, Some(Show::Away));
    assert_eq!(p.priority.0, -1);
    bob.drop_connection();
    next_presence_from(&mut component, "bob@localhost", |p| {
        p.type_ == PresenceType::Unavailable
    })
    .await;
}

#[tokio::test]
async fn component_message_reaches_user() {
    let prosody = Prosody::start(&["carol"]);
    let mut component = connect_component(&prosody).await;
    let mut carol = XmppUser::login_available(&prosody, "carol", "web").await;
    next_presence_from(&mut component, "carol@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;

    let msg =
        tokio_xmpp::parsers::message::Message::chat(Some("carol@localhost/web".parse().unwrap()))
            .with_body(
                tokio_xmpp::parsers::message::Lang::new(),
                "broadcast!".to_string(),
            );
    let mut msg = msg;
    msg.from = Some("herald@broadcast.localhost".parse().unwrap());
    component.send_stanza(msg.into()).await.unwrap();

    let (from, body, kind) = carol.next_message(WAIT).await.expect("carol got nothing");
    assert_eq!(from, "herald@broadcast.localhost");
    assert_eq!(body, "broadcast!");
    assert_eq!(kind, "chat");
}

#[tokio::test]
async fn thousands_of_users_are_provisioned_by_file_writes() {
    let names: Vec<String> = (0..2000).map(|i| format!("user{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let prosody = Prosody::start(&refs);

    let accounts = prosody.data_dir().join("localhost").join("accounts");
    assert_eq!(std::fs::read_dir(&accounts).unwrap().count(), 2000);
    assert_eq!(prosody.password("user1999"), "pw-user1999");

    let mut component = connect_component(&prosody).await;
    let first = XmppUser::login_available(&prosody, "user0000", "r").await;
    let mut last = XmppUser::login_available(&prosody, "user1999", "r").await;
    next_presence_from(&mut component, "user1999@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;
    last.send_chat("user0000@localhost", "hi").await;
    drop(first);
    last.disconnect().await;
}

#[tokio::test]
async fn prosody_restarts_with_same_ports_and_users() {
    let mut prosody = Prosody::start(&["dave"]);
    let (c2s, comp) = (prosody.c2s_addr(), prosody.component_addr());
    let pid = prosody.pid().unwrap();
    prosody.stop();
    assert!(!prosody.is_running());
    prosody.start_again();
    assert!(prosody.is_running());
    assert_ne!(prosody.pid().unwrap(), pid);
    assert_eq!(prosody.c2s_addr(), c2s);
    assert_eq!(prosody.component_addr(), comp);

    let mut component = connect_component(&prosody).await;
    let dave = XmppUser::login_available(&prosody, "dave", "r").await;
    next_presence_from(&mut component, "dave@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;
    dave.disconnect().await;
}

#[tokio::test]
async fn two_prosodys_run_side_by_side() {
    let a = Prosody::start(&["erin"]);
    let b = Prosody::start(&["erin"]);
    assert_ne!(a.c2s_addr(), b.c2s_addr());
    // Each accepts its own component for the same domain.
    let _ca = connect_component(&a).await;
    let _cb = connect_component(&b).await;
    let ua = XmppUser::login(&a, "erin", "r").await;
    let ub = XmppUser::login(&b, "erin", "r").await;
    ua.disconnect().await;
    ub.disconnect().await;
}
