//! Presence rebuilt on a new stream: every subscriber probed, and those who
//! were online on the last stream but stay silent probed once more before
//! jobs are taken.

use super::*;
use crate::store::Subscription;

const USERS: [&str; 3] = ["alice@localhost", "bob@localhost", "carol@localhost"];

/// A ready core whose subscribers are [`USERS`], all three online.
fn all_online() -> Harness {
    let subscriptions = USERS
        .iter()
        .map(|user| Subscription {
            user: user.parse().unwrap(),
            contact: "herald@broadcast.localhost".parse().unwrap(),
        })
        .collect();
    let restored = Restored {
        subscriptions,
        ..Restored::default()
    };
    let mut h = Harness::ready_restored(|_| {}, restored);
    for user in USERS {
        h.phone_presence(user, PresenceType::None);
    }
    h.commit_all();
    assert_eq!(h.core.presence.online_users(), 3);
    h
}

/// The users probed among `outputs`.
fn probed(outputs: &[Output]) -> Vec<String> {
    let mut users: Vec<String> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Stanza(Stanza::Presence(presence)) if presence.type_ == PresenceType::Probe => {
                presence.to.as_ref().map(Jid::to_string)
            }
            _ => None,
        })
        .collect();
    users.sort();
    users
}

/// A new stream whose first probes only `answering` answer: what it
/// writes once their settle is over.
fn new_stream_answered_by(h: &mut Harness, answering: &[&str]) -> Vec<Output> {
    h.input(Input::StreamLost);
    h.input(Input::StreamUp);
    let outputs = h.drain();
    assert_eq!(probed(&outputs), USERS);
    for user in answering {
        h.phone_presence(user, PresenceType::None);
    }
    h.answer(&ids_of_pings(&outputs)[0]);
    h.tick(Duration::from_secs(1));
    h.drain()
}

#[test]
fn users_online_before_and_silent_since_are_probed_again_before_jobs_are_taken() {
    let mut h = all_online();
    let again = new_stream_answered_by(&mut h, &["alice@localhost"]);
    assert_eq!(probed(&again), ["bob@localhost", "carol@localhost"]);
    assert_eq!(h.core.phase(), Phase::Probing, "no jobs yet");
    h.deliver(1, r#"{"id":"j1","to":["bob@localhost"],"body":"hello"}"#);
    assert!(message_recipients(&h.drain()).is_empty());

    // bob's answer was late or lost the first time; carol is gone.
    h.phone_presence("bob@localhost", PresenceType::None);
    h.answer(&ids_of_pings(&again)[0]);
    h.tick(Duration::from_secs(1));
    assert_eq!(h.core.phase(), Phase::Ready);
    let outputs = h.drain();
    assert!(probed(&outputs).is_empty(), "a second round only");
    assert_eq!(message_recipients(&outputs), ["bob@localhost"]);
}

#[test]
fn when_everyone_online_before_answers_jobs_are_taken_after_one_round() {
    let mut h = all_online();
    let outputs = new_stream_answered_by(&mut h, &USERS);
    assert!(probed(&outputs).is_empty());
    assert_eq!(h.core.phase(), Phase::Ready);
}

#[test]
fn users_online_before_a_stream_that_broke_while_probing_are_still_probed_again() {
    let mut h = all_online();
    h.input(Input::StreamLost);
    h.input(Input::StreamUp);
    h.drain();
    let again = new_stream_answered_by(&mut h, &["alice@localhost"]);
    assert_eq!(probed(&again), ["bob@localhost", "carol@localhost"]);
}
