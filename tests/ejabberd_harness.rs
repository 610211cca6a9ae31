//! Proves the ejabberd harness itself: provisioning by RPC, c2s logins,
//! presence routing to the component through the provisioned roster,
//! restarts that keep the data, and nodes side by side.

use std::time::Duration;

use herald_testkit::c2s::XmppUser;
use herald_testkit::component::{connect_component, next_presence_from};
use herald_testkit::ejabberd::Ejabberd;
use herald_testkit::server::XmppServer;
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::parsers::presence::{Show, Type as PresenceType};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn provisioned_users_log_in_and_exchange_a_chat_message() {
    let ejabberd = Ejabberd::start(&["alice", "bob"]);
    assert_eq!(ejabberd.password("bob"), "pw-bob");
    let mut alice = XmppUser::login_available(&ejabberd, "alice", "laptop").await;
    let mut bob = XmppUser::login_available(&ejabberd, "bob", "phone").await;
    assert_eq!(alice.jid(), "alice@localhost/laptop");

    alice.send_chat("bob@localhost", "hello bob").await;
    let (from, body, kind) = bob.next_message(WAIT).await.expect("bob got nothing");
    assert_eq!(from, "alice@localhost/laptop");
    assert_eq!(body, "hello bob");
    assert_eq!(kind, "chat");
    alice.disconnect().await;
    bob.disconnect().await;
}

#[tokio::test]
async fn roster_item_routes_presence_to_the_component_and_messages_back() {
    let ejabberd = Ejabberd::start(&["alice", "bob"]);
    let mut component = connect_component(&ejabberd).await;

    // Login + initial presence: routed to the component through the roster.
    let mut alice = XmppUser::login(&ejabberd, "alice", "desk").await;
    alice.send_presence(None, 0).await;
    let p = next_presence_from(&mut component, "alice@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;
    assert_eq!(p.from.unwrap().to_string(), "alice@localhost/desk");
    assert_eq!(p.to.unwrap().to_string(), "herald@broadcast.localhost");

    alice.send_presence(Some("dnd"), 5).await;
    let p = next_presence_from(&mut component, "alice@localhost", |p| {
        p.type_ == PresenceType::None && p.show.is_some()
    })
    .await;
    assert_eq!(p.show, Some(Show::Dnd));
    assert_eq!(p.priority.0, 5);

    // The component's messages reach the user.
    let mut msg = Message::chat(Some("alice@localhost/desk".parse().unwrap()))
        .with_body(Lang::new(), "broadcast!".to_string());
    msg.from = Some("herald@broadcast.localhost".parse().unwrap());
    component.send_stanza(msg.into()).await.unwrap();
    let (from, body, _) = alice.next_message(WAIT).await.expect("alice got nothing");
    assert_eq!(from, "herald@broadcast.localhost");
    assert_eq!(body, "broadcast!");

    // Clean logout and a dropped TCP connection both end in unavailable.
    alice.disconnect().await;
    next_presence_from(&mut component, "alice@localhost", |p| {
        p.type_ == PresenceType::Unavailable
    })
    .await;
    let bob = XmppUser::login_available(&ejabberd, "bob", "phone").await;
    next_presence_from(&mut component, "bob@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;
    bob.drop_connection();
    next_presence_from(&mut component, "bob@localhost", |p| {
        p.type_ == PresenceType::Unavailable
    })
    .await;
}

#[tokio::test]
async fn restarts_keep_ports_users_and_rosters() {
    let mut ejabberd = Ejabberd::start(&["dave"]);
    let (c2s, comp) = (ejabberd.c2s_addr(), ejabberd.component_addr());
    let pid = ejabberd.pid().unwrap();

    ejabberd.stop();
    assert!(!ejabberd.is_running());
    ejabberd.start_again();
    assert_ne!(ejabberd.pid().unwrap(), pid);
    assert_eq!(ejabberd.c2s_addr(), c2s);
    assert_eq!(ejabberd.component_addr(), comp);

    // A crash (no clean shutdown) loses nothing provisioned either.
    ejabberd.kill();
    ejabberd.start_again();
    assert!(ejabberd.is_running());
    let mut component = connect_component(&ejabberd).await;
    let dave = XmppUser::login_available(&ejabberd, "dave", "r").await;
    next_presence_from(&mut component, "dave@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;
    dave.disconnect().await;
}

#[tokio::test]
async fn nodes_run_side_by_side_and_provision_thousands_of_users() {
    let names: Vec<String> = (0..2000).map(|i| format!("user{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let big = Ejabberd::start(&refs);
    let small = Ejabberd::start(&["erin"]);
    assert_ne!(big.node(), small.node());
    assert_ne!(big.c2s_addr(), small.c2s_addr());

    // Each accepts its own component for the same domain.
    let mut component = connect_component(&big).await;
    let _other = connect_component(&small).await;
    let last = XmppUser::login_available(&big, "user1999", "r").await;
    next_presence_from(&mut component, "user1999@localhost", |p| {
        p.type_ == PresenceType::None
    })
    .await;
    let erin = XmppUser::login(&small, "erin", "r").await;
    last.disconnect().await;
    erin.disconnect().await;
}
