use std::time::{Duration, Instant};

use super::*;
use crate::store::Subscription;

thread_local! {
    static ORIGIN: Instant = Instant::now();
}

/// The moment `millis` after the tests' clock's origin.
fn at(millis: u64) -> Stamp {
    ORIGIN.with(|&origin| Clock::new(origin).stamp(origin + Duration::from_millis(millis)))
}

fn full(s: &str) -> FullJid {
    FullJid::new(s).unwrap()
}

fn bare(s: &str) -> BareJid {
    BareJid::new(s).unwrap()
}

fn with_show(show: Show) -> ResourcePresence {
    ResourcePresence { show, priority: 0 }
}

#[test]
fn unknown_user_is_offline() {
    let book = PresenceBook::new();
    assert_eq!(
        book.reachability(&bare("a@localhost"), Policy::Online),
        Reachability::Offline
    );
}

#[test]
fn away_user_is_unavailable_for_available_policy_but_online_for_online_policy() {
    let mut book = PresenceBook::new();
    book.set_available(&full("a@localhost/phone"), with_show(Show::Away), at(0));
    let a = bare("a@localhost");
    assert_eq!(
        book.reachability(&a, Policy::Available),
        Reachability::Unavailable
    );
    assert_eq!(book.reachability(&a, Policy::Online), Reachability::Deliver);
}

#[test]
fn any_available_resource_makes_user_available() {
    let mut book = PresenceBook::new();
    book.set_available(&full("a@localhost/phone"), with_show(Show::Dnd), at(0));
    book.set_available(&full("a@localhost/desk"), with_show(Show::Chat), at(0));
    assert_eq!(
        book.reachability(&bare("a@localhost"), Policy::Available),
        Reachability::Deliver
    );
    assert_eq!(book.online_users(), 1);
    assert_eq!(book.online_resources(), 2);
}

#[test]
fn last_resource_going_offline_makes_user_offline() {
    let mut book = PresenceBook::new();
    book.set_available(&full("a@localhost/phone"), with_show(Show::Online), at(0));
    book.set_available(&full("a@localhost/desk"), with_show(Show::Online), at(0));
    book.set_unavailable(&full("a@localhost/phone"), at(0));
    let a = bare("a@localhost");
    assert_eq!(
        book.reachability(&a, Policy::Available),
        Reachability::Deliver
    );
    let change = book.set_unavailable(&full("a@localhost/desk"), at(0));
    assert!(change.changed);
    assert_eq!(
        book.reachability(&a, Policy::Available),
        Reachability::Offline
    );
    assert_eq!(book.online_users(), 0);
    assert_eq!(book.online_resources(), 0);
}

#[test]
fn negative_priority_resources_do_not_receive_bare_jid_messages() {
    let mut book = PresenceBook::new();
    let mut shy = with_show(Show::Online);
    shy.priority = -1;
    book.set_available(&full("a@localhost/bot"), shy, at(0));
    let a = bare("a@localhost");
    assert_eq!(
        book.reachability(&a, Policy::Online),
        Reachability::Unavailable
    );
    book.set_available(&full("a@localhost/desk"), with_show(Show::Online), at(0));
    assert_eq!(
        book.reachability(&a, Policy::Available),
        Reachability::Deliver
    );
}

#[test]
fn show_change_on_same_resource_replaces_it() {
    let mut book = PresenceBook::new();
    let jid = full("a@localhost/phone");
    assert!(
        book.set_available(&jid, with_show(Show::Online), at(0))
            .changed
    );
    assert!(
        book.set_available(&jid, with_show(Show::Away), at(0))
            .changed
    );
    assert!(
        !book
            .set_available(&jid, with_show(Show::Away), at(0))
            .changed
    );
    assert_eq!(book.online_resources(), 1);
    assert_eq!(
        book.reachability(&bare("a@localhost"), Policy::Available),
        Reachability::Unavailable
    );
}

#[test]
fn unavailable_for_unknown_resource_changes_nothing() {
    let mut book = PresenceBook::new();
    book.set_available(&full("a@localhost/phone"), with_show(Show::Online), at(0));
    assert!(
        !book
            .set_unavailable(&full("a@localhost/other"), at(0))
            .changed
    );
    assert_eq!(book.online_resources(), 1);
}

#[test]
fn remove_user_forgets_all_resources() {
    let mut book = PresenceBook::new();
    book.set_available(&full("a@localhost/1"), with_show(Show::Online), at(0));
    book.set_available(&full("a@localhost/2"), with_show(Show::Online), at(0));
    book.set_available(&full("b@localhost/1"), with_show(Show::Online), at(0));
    let mut removed = book.remove_user(&bare("a@localhost"));
    removed.sort_by_key(|j| j.to_string());
    assert_eq!(removed, vec![full("a@localhost/1"), full("a@localhost/2")]);
    assert_eq!(book.online_resources(), 1);
    assert_eq!(book.clear(), vec![full("b@localhost/1")]);
    assert_eq!(book.online_users(), 0);
    assert_eq!(book.online_resources(), 0);
}

#[test]
fn a_user_is_online_since_their_first_resource_and_looks_as_now_since_the_last_visible_change() {
    let mut book = PresenceBook::new();
    let a = bare("a@localhost");
    book.set_available(&full("a@localhost/phone"), with_show(Show::Online), at(10));
    let since = |book: &PresenceBook| book.since(&a).map(|s| (s.online, s.show));
    assert_eq!(since(&book), Some((at(10), at(10))));
    // The same again, and a second resource that changes neither the
    // readiest show nor availability: nothing new to say.
    book.set_available(&full("a@localhost/phone"), with_show(Show::Online), at(20));
    book.set_available(&full("a@localhost/desk"), with_show(Show::Away), at(30));
    assert_eq!(since(&book), Some((at(10), at(10))));
    // The available resource leaves: the user is away from then on.
    book.set_unavailable(&full("a@localhost/phone"), at(40));
    assert_eq!(since(&book), Some((at(10), at(40))));
    book.set_available(&full("a@localhost/desk"), with_show(Show::Chat), at(50));
    assert_eq!(since(&book), Some((at(10), at(50))));
    // Gone, then back: online anew.
    book.set_unavailable(&full("a@localhost/desk"), at(60));
    assert_eq!(since(&book), None);
    book.set_available(&full("a@localhost/desk"), with_show(Show::Dnd), at(70));
    assert_eq!(since(&book), Some((at(70), at(70))));
}

#[test]
fn a_user_takes_48_bytes_besides_their_key() {
    // Online: their packed resources (16 bytes) and since when (two 8-byte
    // moments); offline, when they went, in the same room. Their contacts
    // take 16: an index inline, or a boxed slice.
    assert_eq!(std::mem::size_of::<OnlineUser>(), 32);
    assert_eq!(std::mem::size_of::<State>(), 32);
    assert_eq!(std::mem::size_of::<User>(), 48);
}

fn sub(user: &str, contact: &str) -> Subscription {
    Subscription {
        user: bare(user),
        contact: bare(contact),
    }
}

fn subscribers(book: &PresenceBook) -> Vec<String> {
    let mut users: Vec<String> = book.subscribers().map(ToString::to_string).collect();
    users.sort();
    users
}

#[test]
fn a_user_is_a_subscriber_while_any_of_their_subscriptions_is() {
    let mut book = PresenceBook::with_subscriptions(vec![sub("a@l", "herald@b.l")]);
    let alice = UserText("a@l");
    assert!(book.is_subscriber(alice));
    assert!(book.subscribe(&sub("a@l", "alerts@b.l")));
    assert!(!book.subscribe(&sub("a@l", "alerts@b.l")), "known");
    assert_eq!(book.subscriptions(), 2);
    assert!(book.unsubscribe(&sub("a@l", "herald@b.l")));
    assert!(book.is_subscriber(alice));
    assert!(book.unsubscribe(&sub("a@l", "alerts@b.l")));
    assert!(!book.unsubscribe(&sub("a@l", "alerts@b.l")), "gone");
    assert!(!book.is_subscriber(alice));
    assert_eq!(book.subscriptions(), 0);
    assert_eq!(book.subscription_pairs().count(), 0);
    assert!(book.users.is_empty(), "nothing kept of her");
}

#[test]
fn iterates_every_subscription() {
    let book = PresenceBook::with_subscriptions(vec![
        sub("a@l", "herald@b.l"),
        sub("a@l", "alerts@b.l"),
        sub("c@l", "herald@b.l"),
    ]);
    let mut pairs: Vec<String> = book
        .subscription_pairs()
        .map(|(user, contact)| format!("{user} {contact}"))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        ["a@l alerts@b.l", "a@l herald@b.l", "c@l herald@b.l"]
    );
    assert_eq!(subscribers(&book), ["a@l", "c@l"]);
}

#[test]
fn offline_since_is_kept_only_while_the_user_subscribes_and_is_offline() {
    let mut book = PresenceBook::with_subscriptions(vec![sub("a@l", "herald@b.l")]);
    let alice = bare("a@l");
    let stranger = bare("s@l");
    book.set_offline_since(&alice, Some(at(5)));
    book.set_offline_since(&stranger, Some(at(5)));
    assert_eq!(book.offline_since(&alice), Some(at(5)));
    assert_eq!(book.offline_since(&stranger), None, "not kept");
    book.set_available(&full("a@l/desk"), with_show(Show::Chat), at(6));
    assert_eq!(book.offline_since(&alice), None, "online again");
    book.set_unavailable(&full("a@l/desk"), at(7));
    assert_eq!(book.offline_since(&alice), None, "until told");
    book.set_offline_since(&alice, Some(at(7)));
    assert!(book.unsubscribe(&sub("a@l", "herald@b.l")));
    assert!(book.subscribe(&sub("a@l", "herald@b.l")));
    assert_eq!(book.offline_since(&alice), None, "forgotten with her");
}

#[test]
fn presence_and_subscription_come_and_go_apart() {
    let mut book = PresenceBook::with_subscriptions(vec![sub("a@l", "herald@b.l")]);
    let alice = bare("a@l");
    // A stranger online is no subscriber; offline, nothing is kept.
    book.set_available(&full("s@l/x"), with_show(Show::Chat), at(1));
    assert!(!book.is_subscriber(UserText("s@l")));
    assert_eq!(subscribers(&book), ["a@l"]);
    book.set_unavailable(&full("s@l/x"), at(2));
    assert_eq!(book.users.len(), 1, "the stranger is forgotten");
    // A subscriber who unsubscribes while online stays online.
    book.set_available(&full("a@l/desk"), with_show(Show::Chat), at(3));
    assert!(book.unsubscribe(&sub("a@l", "herald@b.l")));
    assert_eq!(
        book.reachability(&alice, Policy::Available),
        Reachability::Deliver
    );
    assert!(subscribers(&book).is_empty());
    assert_eq!(book.online_users(), 1);
    // ... and is forgotten once offline.
    assert_eq!(book.remove_user(&alice), [full("a@l/desk")]);
    assert!(book.users.is_empty());
    assert_eq!((book.online_users(), book.online_resources()), (0, 0));
}

#[test]
fn clearing_presence_keeps_the_subscriptions() {
    let mut book =
        PresenceBook::with_subscriptions(vec![sub("a@l", "herald@b.l"), sub("b@l", "herald@b.l")]);
    book.set_available(&full("a@l/desk"), with_show(Show::Chat), at(1));
    book.set_available(&full("a@l/phone"), with_show(Show::Away), at(1));
    book.set_available(&full("s@l/x"), with_show(Show::Chat), at(1));
    let mut gone = book.clear();
    gone.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(gone, [full("a@l/desk"), full("a@l/phone"), full("s@l/x")]);
    assert_eq!((book.online_users(), book.online_resources()), (0, 0));
    assert_eq!(book.users().count(), 0);
    assert_eq!(subscribers(&book), ["a@l", "b@l"]);
    assert_eq!(book.subscriptions(), 2);
    assert!(!book.is_subscriber(UserText("s@l")));
    assert_eq!(book.users.len(), 2, "the stranger is forgotten");
}
