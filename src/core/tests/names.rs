//! A job whose report names its recipients: the parts go out once the
//! server read the messages and are confirmed before the job is remembered
//! as completed; a job cut off in between names them again, from its last
//! checkpoint, without messaging anyone twice.

use super::*;
use crate::broadcast::names::{Part, NAMES_KEY};

fn names_destination() -> Destination {
    Destination::Events {
        routing_key: NAMES_KEY.into(),
    }
}

fn is_names_part(output: &Output) -> Option<&Publish> {
    match output {
        Output::Publish(publish) if publish.destination == names_destination() => Some(publish),
        _ => None,
    }
}

/// A job to `users` and `gone@localhost` (offline, known), asking for names.
fn named_job(users: &[String]) -> String {
    let mut to = users.to_vec();
    to.push("gone@localhost".into());
    serde_json::json!({"id": "named", "to": to, "body": "hi", "report_names": true}).to_string()
}

/// `n` users online and `gone@localhost` known and offline; names parts
/// of the smallest size.
fn with_online_and_gone(n: usize) -> (Harness, Vec<String>) {
    let mut h = Harness::ready_with(|config| {
        config.broadcast.names_part_bytes = crate::broadcast::names::MIN_PART_BYTES;
    });
    let users: Vec<String> = (0..n).map(|i| format!("u{i}@localhost")).collect();
    for user in &users {
        h.phone_presence(user, PresenceType::None);
    }
    h.phone_presence("gone@localhost", PresenceType::None);
    h.phone_presence("gone@localhost", PresenceType::Unavailable);
    h.commit_all();
    (h, users)
}

/// Answers the barrier pings among `outputs`, and those they lead to:
/// everything the core queued meanwhile.
fn answer_all(h: &mut Harness, outputs: Vec<Output>) -> Vec<Output> {
    let mut pings = ids_of_pings(&outputs);
    let mut queued = Vec::new();
    while !pings.is_empty() {
        for ping in pings {
            h.answer(&ping);
        }
        let outputs = h.drain();
        pings = ids_of_pings(&outputs);
        queued.extend(outputs);
    }
    queued
}

/// The names parts among `outputs`, read.
fn parts(outputs: &[Output]) -> Vec<(u64, Part)> {
    outputs
        .iter()
        .filter_map(is_names_part)
        .map(|p| (p.id.unwrap(), serde_json::from_slice(&p.payload).unwrap()))
        .collect()
}

#[test]
fn the_names_are_confirmed_before_the_job_completes_and_the_report_refers_to_them() {
    // Enough users for two parts of 16 KiB.
    let (mut h, users) = with_online_and_gone(1500);
    h.deliver(1, &named_job(&users));
    // Two turns: the first slice is a small one whose ping measures the
    // server's base roundtrip (the read window's), the rest follows.
    let mut outputs = h.drain();
    h.tick(Duration::ZERO);
    outputs.extend(h.drain());
    assert_eq!(message_recipients(&outputs).len(), 1500);
    assert!(
        parts(&outputs).is_empty(),
        "nothing named before the server read"
    );
    let outputs = answer_all(&mut h, outputs);
    let named = parts(&outputs);
    assert!(named.len() >= 2, "{} parts", named.len());
    assert!(
        !outputs.iter().any(|o| matches!(o, Output::Commit(batch) if !batch.changes.is_empty() && batch.changes.iter().any(|c| matches!(c, crate::store::Change::JobDone(_))))),
        "not completed before its names are confirmed"
    );
    let sent: usize = named.iter().map(|(_, part)| part.sent.len()).sum();
    assert_eq!(sent, 1500);
    let offline: Vec<&String> = named.iter().flat_map(|(_, p)| &p.offline).collect();
    assert_eq!(offline, ["gone@localhost"]);

    let (last, rest) = named.split_last().unwrap();
    for (id, _) in rest {
        h.input(Input::Published { id: *id });
    }
    h.commit_all();
    assert!(
        !h.drain().iter().any(|o| matches!(o, Output::Publish(_))),
        "no report while a part is unconfirmed"
    );
    h.input(Input::Published { id: last.0 });
    let outputs = h.drain();
    let Some(Output::Commit(batch)) = outputs.last() else {
        panic!("then the completion is stored: {outputs:?}");
    };
    h.input(Input::Committed { batch: batch.id });
    let report = h
        .drain()
        .into_iter()
        .find_map(|o| match o {
            Output::Publish(p) if p.destination != names_destination() => Some(p),
            _ => None,
        })
        .expect("the report");
    let report: serde_json::Value = serde_json::from_slice(&report.payload).unwrap();
    assert_eq!(report["names"]["parts"], named.len());
    assert_eq!(report["names"]["set"], last.1.set);
}

#[test]
fn a_job_cut_off_before_its_names_were_confirmed_names_them_again_without_resending() {
    let (mut h, users) = with_online_and_gone(3);
    h.deliver(1, &named_job(&users));
    let outputs = h.drain();
    assert_eq!(message_recipients(&outputs).len(), 3);
    let first = parts(&answer_all(&mut h, outputs));
    assert_eq!(first.len(), 1);
    h.commit_all();

    h.input(Input::BrokerLost { generation: 1 });
    h.input(Input::BrokerUp { generation: 2 });
    h.input(Input::Delivery(Delivery {
        id: JobId {
            generation: 2,
            lane: Lane::Normal,
            tag: 1,
        },
        payload: named_job(&users).into_bytes(),
        redelivered: true,
        age: None,
        received_at: wall_clock(),
        user_id: None,
    }));
    let outputs = h.drain();
    assert!(
        message_recipients(&outputs).is_empty(),
        "resumed from the checkpoint at its end: {outputs:?}"
    );
    let again = parts(&answer_all(&mut h, outputs));
    assert_eq!(again.len(), 1);
    let (part, earlier) = (&again[0].1, &first[0].1);
    assert_eq!(
        (&part.sent, &part.offline),
        (&earlier.sent, &earlier.offline)
    );
    h.input(Input::Published { id: again[0].0 });
    h.commit_all();
    let report = h
        .drain()
        .into_iter()
        .find_map(|o| match o {
            Output::Publish(p) => Some(p),
            _ => None,
        })
        .expect("the report");
    let report: serde_json::Value = serde_json::from_slice(&report.payload).unwrap();
    assert_eq!(report["sent"], 3);
    assert_eq!(report["skipped"]["offline"], 1);
    assert_eq!(report.get("possible_duplicates"), None, "{report}");
}
