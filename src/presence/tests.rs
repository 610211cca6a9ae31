use std::time::{Duration, Instant};

use super::*;

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
fn an_online_user_costs_two_moments_more_than_a_vector_of_resources_did() {
    // What the presence book keeps per online user besides their JID: the
    // resources (a boxed slice, 16 bytes) and since when (two 8-byte
    // moments). A vector of resources alone took 24.
    assert_eq!(std::mem::size_of::<OnlineUser>(), 32);
}
