use super::*;
use crate::broadcast::fanout::Walk;
use crate::broadcast::job::JobLimits;
use crate::presence::{PresenceBook, ResourcePresence, Show};
use xmpp_parsers::jid::{BareJid, FullJid};

fn job(to: &[String]) -> Job {
    let limits = JobLimits {
        component_domain: BareJid::new("broadcast.localhost").unwrap(),
        default_sender: "herald@broadcast.localhost".parse().unwrap(),
        max_body_bytes: 1024,
        max_recipients: 100_000,
        allowed_from: Vec::new(),
        names_part_bytes: MIN_PART_BYTES,
        max_deliver_within: std::time::Duration::from_secs(3600),
        receipts_window: std::time::Duration::from_secs(300),
    };
    let json = serde_json::json!({"id": "j", "body": "hi", "to": to, "report_names": true});
    Job::parse(json.to_string().as_bytes(), &limits).unwrap()
}

fn names(to: &[&str]) -> Vec<String> {
    to.iter().map(|s| s.to_string()).collect()
}

/// alice available, carol away; everyone else offline.
fn book() -> PresenceBook {
    let mut book = PresenceBook::new();
    let origin = std::time::Instant::now();
    let at = crate::presence::Clock::new(origin).stamp(origin);
    for (jid, show) in [
        ("alice@localhost/r", Show::Online),
        ("carol@localhost/r", Show::Away),
    ] {
        let presence = ResourcePresence { show, priority: 0 };
        book.set_available(&FullJid::new(jid).unwrap(), presence, at);
    }
    book
}

fn parts_of(events: &[Event]) -> Vec<Part> {
    events
        .iter()
        .map(|event| {
            assert_eq!(event.routing_key, NAMES_KEY);
            serde_json::from_slice(&event.payload).unwrap()
        })
        .collect()
}

fn walked(job: &Job, steps: usize) -> Walk {
    let mut walk = Walk::new(job, Progress::default(), 1000, false);
    for _ in 0..steps {
        walk.step(job, &book()).unwrap();
    }
    walk
}

#[test]
fn outcomes_keep_two_bits_each_in_walk_order() {
    let mut outcomes = Outcomes::starting_at(3);
    let order = [
        Outcome::Invalid,
        Outcome::Sent,
        Outcome::Unavailable,
        Outcome::Offline,
        Outcome::Sent,
    ];
    for outcome in order {
        outcomes.push(outcome);
    }
    assert_eq!(outcomes.bits.len(), 2, "five outcomes in two bytes");
    assert_eq!(outcomes.get(2), None, "before the start");
    let got: Vec<_> = (3..8).map(|i| outcomes.get(i).unwrap()).collect();
    assert_eq!(got, order);
    assert_eq!(outcomes.get(8), None, "not walked yet");
}

#[test]
fn a_whole_walk_names_each_recipient_under_its_outcome() {
    let job = job(&names(&[
        "alice@localhost",
        "bob@localhost",
        "carol@localhost",
        "x@localhost/res",
    ]));
    let walk = walked(&job, 4);
    let (events, names_ref) = parts(&job, walk.outcomes().unwrap(), None, 7, 0);
    let parts = parts_of(&events);
    assert_eq!(names_ref, NamesRef { set: 7, parts: 1 });
    assert_eq!(parts[0].sent, ["alice@localhost"]);
    assert_eq!(parts[0].offline, ["bob@localhost"]);
    assert_eq!(parts[0].unavailable, ["carol@localhost"]);
    assert_eq!(parts[0].invalid, ["x@localhost/res"]);
    assert_eq!((parts[0].part, parts[0].parts, parts[0].set), (1, 1, 7));
}

#[test]
fn a_stopped_walk_names_the_rest_under_the_stop_and_invalid_as_invalid() {
    let job = job(&names(&[
        "alice@localhost",
        "bob@localhost",
        "x@localhost/res",
        "carol@localhost",
    ]));
    let walk = walked(&job, 1);
    let (events, _) = parts(&job, walk.outcomes().unwrap(), Some(Stop::Cancelled), 1, 0);
    let part = &parts_of(&events)[0];
    assert_eq!(part.sent, ["alice@localhost"]);
    assert_eq!(part.cancelled, ["bob@localhost", "carol@localhost"]);
    assert_eq!(part.invalid, ["x@localhost/res"]);
    assert!(part.offline.is_empty() && part.unknown.is_empty());
}

#[test]
fn a_checkpoint_carries_the_outcomes_to_the_redelivery() {
    let job = job(&names(&[
        "alice@localhost",
        "bob@localhost",
        "carol@localhost",
    ]));
    let mut walk = Walk::new(&job, Progress::default(), 2, false);
    let first = walk.step(&job, &book()).unwrap();
    assert!(first.checkpoint.is_none());
    let second = walk.step(&job, &book()).unwrap();
    let token = walk.token(second.checkpoint.expect("a checkpoint after two"));
    let last = walk.step(&job, &book()).unwrap();
    let end = last.checkpoint.expect("a named job checkpoints at its end");
    assert_eq!(end.next, 3);

    let saved = Checkpoint::read(&token).unwrap();
    assert_eq!(saved.progress.next, 2);
    let mut resumed = Walk::resume(&job, &saved, 2, true);
    resumed.step(&job, &book()).unwrap();
    assert!(resumed.is_over(&job));
    let (events, _) = parts(&job, resumed.outcomes().unwrap(), None, 1, 0);
    let part = &parts_of(&events)[0];
    assert_eq!(part.sent, ["alice@localhost"]);
    assert_eq!(part.offline, ["bob@localhost"]);
    assert_eq!(part.unavailable, ["carol@localhost"]);
}

#[test]
fn a_checkpoint_without_outcomes_leaves_the_recipients_before_it_unknown() {
    let job = job(&names(&["alice@localhost", "bob@localhost"]));
    let old = serde_json::to_vec(&Progress {
        next: 1,
        sent: 1,
        ..Progress::default()
    })
    .unwrap();
    let saved = Checkpoint::read(&old).unwrap();
    let mut walk = Walk::resume(&job, &saved, 1000, true);
    walk.step(&job, &book()).unwrap();
    let (events, _) = parts(&job, walk.outcomes().unwrap(), None, 1, 0);
    let part = &parts_of(&events)[0];
    assert_eq!(part.unknown, ["alice@localhost"]);
    assert_eq!(part.offline, ["bob@localhost"]);
}

#[test]
fn big_names_are_split_into_parts_under_the_size_each_recipient_once() {
    let to: Vec<String> = (0..3000)
        .map(|i| format!("user-with-a-longish-name-{i}@localhost"))
        .collect();
    let job = job(&to);
    let walk = walked(&job, to.len());
    let (events, names_ref) = parts(&job, walk.outcomes().unwrap(), None, 1, MIN_PART_BYTES);
    assert!(names_ref.parts > 5, "{} parts", names_ref.parts);
    assert_eq!(events.len(), names_ref.parts);
    for event in &events {
        assert!(
            event.payload.len() <= MIN_PART_BYTES,
            "{}",
            event.payload.len()
        );
    }
    let parts = parts_of(&events);
    let all: Vec<String> = parts.iter().flat_map(|p| p.offline.clone()).collect();
    assert_eq!(all, to, "every recipient once, in order");
    let numbers: Vec<(usize, usize)> = parts.iter().map(|p| (p.part, p.parts)).collect();
    let expected: Vec<(usize, usize)> = (1..=parts.len()).map(|k| (k, parts.len())).collect();
    assert_eq!(numbers, expected);
}
