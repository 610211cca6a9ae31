//! A job's window (`deliver_within_secs`): who was offline when it went
//! out gets it on coming online within the window, once; the window's
//! final report says who was reached late and who was missed; a lost
//! stream and a restart lose nobody.

use super::*;
use crate::store::{Change, Contents};

/// Everything `h` outputs until it settles: pings answered, batches
/// committed, publishes confirmed.
pub(super) fn run(h: &mut Harness) -> Vec<Output> {
    let mut all = Vec::new();
    loop {
        let outputs = h.drain();
        if outputs.is_empty() {
            return all;
        }
        for output in &outputs {
            match output {
                Output::Ping(_) => {
                    for ping in ids_of_pings(std::slice::from_ref(output)) {
                        h.answer(&ping);
                    }
                }
                Output::Commit(batch) => h.input(Input::Committed { batch: batch.id }),
                Output::Publish(publish) => {
                    if let Some(id) = publish.id {
                        h.input(Input::Published { id });
                    }
                }
                _ => {}
            }
        }
        all.extend(outputs);
    }
}

/// [`run`], then once more after the store's delay for changes nothing
/// waits for.
pub(super) fn run_and_store(h: &mut Harness) -> Vec<Output> {
    let mut outputs = run(h);
    h.tick(Duration::from_secs(1));
    outputs.extend(run(h));
    outputs
}

/// The payloads published with `routing_key` among `outputs`, read.
pub(super) fn published(outputs: &[Output], routing_key: &str) -> Vec<serde_json::Value> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Publish(publish)
                if publish.destination
                    == (Destination::Events {
                        routing_key: routing_key.into(),
                    }) =>
            {
                serde_json::from_slice(&publish.payload).ok()
            }
            _ => None,
        })
        .collect()
}

pub(super) fn changes(outputs: &[Output]) -> Vec<Change> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Commit(batch) => Some(batch.changes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Alice online; bob and carol known and offline; a job to all three
/// with a window of a minute (names asked when `names`).
fn window_job(names: bool) -> (Harness, Vec<Output>) {
    let mut h = Harness::ready();
    for user in ["bob@localhost", "carol@localhost"] {
        h.phone_presence(user, PresenceType::None);
        h.phone_presence(user, PresenceType::Unavailable);
    }
    run(&mut h);
    let job = serde_json::json!({
        "id": "w", "to": ["alice@localhost", "bob@localhost", "carol@localhost"],
        "body": "leave now", "deliver_within_secs": 60, "report_names": names,
    });
    h.deliver(1, &job.to_string());
    let outputs = run(&mut h);
    (h, outputs)
}

#[test]
fn a_recipient_coming_online_in_the_window_gets_it_once_and_the_final_report_says_who() {
    let (mut h, outputs) = window_job(true);
    assert_eq!(message_recipients(&outputs), ["alice@localhost"]);
    let report = &published(&outputs, "job.report")[0];
    assert_eq!(report["deferred"], 2, "{report}");
    assert_eq!(report["skipped"]["offline"], 2, "counted as before");
    assert!(changes(&outputs)
        .iter()
        .any(|c| matches!(c, Change::DeferralOpened(o) if o.waiting.len() == 2)));

    h.phone_presence("bob@localhost", PresenceType::None);
    let outputs = run_and_store(&mut h);
    assert_eq!(message_recipients(&outputs), ["bob@localhost"]);
    assert!(
        outputs.iter().any(|o| matches!(o, Output::Ping(_))),
        "a barrier covers it"
    );
    assert!(changes(&outputs).contains(&Change::DeferredReached {
        key: "w".into(),
        positions: vec![1],
    }));
    // Bob again, on another resource: nothing more.
    let tablet = Presence::new(PresenceType::None)
        .with_from(Jid::new("bob@localhost/tablet").unwrap())
        .with_to(Jid::new("herald@broadcast.localhost").unwrap());
    h.input(Input::Stanza(tablet.into()));
    assert!(message_recipients(&run(&mut h)).is_empty());
    assert!(published(&h.drain(), "job.report.final").is_empty());

    h.tick(Duration::from_secs(61));
    let outputs = run_and_store(&mut h);
    let last = &published(&outputs, "job.report.final")[0];
    assert_eq!(
        (&last["deferred"], &last["late"], &last["missed"]),
        (&2.into(), &1.into(), &1.into()),
        "{last}"
    );
    let names = &published(&outputs, "job.report.final.names")[0];
    assert_eq!(names["late"], serde_json::json!(["bob@localhost"]));
    assert_eq!(names["missed"], serde_json::json!(["carol@localhost"]));
    assert!(
        names.get("receipted").is_none(),
        "no receipts asked: {names}"
    );
    assert!(changes(&outputs).contains(&Change::DeferralClosed("w".into())));
    // Carol after the window: nothing.
    h.phone_presence("carol@localhost", PresenceType::None);
    assert!(message_recipients(&run(&mut h)).is_empty());
}

#[test]
fn the_final_report_comes_once_everyone_was_reached_before_the_window_ends() {
    let (mut h, _) = window_job(false);
    h.phone_presence("bob@localhost", PresenceType::None);
    assert!(published(&run(&mut h), "job.report.final").is_empty());
    h.phone_presence("carol@localhost", PresenceType::None);
    let outputs = run(&mut h);
    let last = &published(&outputs, "job.report.final")[0];
    assert_eq!((&last["late"], &last["missed"]), (&2.into(), &0.into()));
    assert!(last.get("names").is_none());
}

#[test]
fn a_stream_lost_before_the_server_read_a_late_message_sends_it_again() {
    let (mut h, _) = window_job(false);
    h.phone_presence("bob@localhost", PresenceType::None);
    let outputs = h.drain();
    assert_eq!(message_recipients(&outputs), ["bob@localhost"]);
    h.input(Input::StreamLost);
    h.input(Input::StreamUp);
    let outputs = run(&mut h);
    assert!(
        message_recipients(&outputs).is_empty(),
        "bob is not online on this stream"
    );
    h.phone_presence("bob@localhost", PresenceType::None);
    assert_eq!(message_recipients(&run(&mut h)), ["bob@localhost"]);
    h.tick(Duration::from_secs(61));
    let last = &published(&run(&mut h), "job.report.final")[0];
    assert_eq!(
        (&last["late"], &last["missed"], &last["possible_duplicates"]),
        (&1.into(), &1.into(), &1.into()),
        "{last}"
    );
}

/// What the store holds of a window job once bob came online in it, of
/// the changes `kept` lets through.
fn stored_after_bob_was_reached(kept: impl Fn(&Change) -> bool) -> Contents {
    let (mut h, mut outputs) = window_job(false);
    outputs.extend(run_and_store(&mut h));
    h.phone_presence("bob@localhost", PresenceType::None);
    outputs.extend(run_and_store(&mut h));
    let mut contents = Contents::new(10);
    for change in changes(&outputs).into_iter().filter(|change| kept(change)) {
        contents.apply(change);
    }
    contents
}

#[test]
fn a_restart_resumes_the_window_from_the_store() {
    let contents = stored_after_bob_was_reached(|_| true);
    // Compacted, as a store file is.
    let mut compacted = Contents::new(10);
    for change in contents.changes() {
        compacted.apply(change);
    }
    let mut h = Harness::ready_restored(|_| {}, compacted.into_restored());
    run(&mut h);
    h.phone_presence("bob@localhost", PresenceType::None);
    assert!(
        message_recipients(&run(&mut h)).is_empty(),
        "bob was reached"
    );
    h.phone_presence("carol@localhost", PresenceType::None);
    let outputs = run(&mut h);
    assert_eq!(message_recipients(&outputs), ["carol@localhost"]);
    let last = &published(&outputs, "job.report.final")[0];
    assert_eq!((&last["late"], &last["missed"]), (&2.into(), &0.into()));
}

#[test]
fn a_job_that_would_leave_more_waiting_than_allowed_leaves_none_and_says_why() {
    let mut h = Harness::ready_with(|config| config.broadcast.max_deferred = 1);
    for user in ["bob@localhost", "carol@localhost"] {
        h.phone_presence(user, PresenceType::None);
        h.phone_presence(user, PresenceType::Unavailable);
    }
    run(&mut h);
    let job = serde_json::json!({
        "id": "w", "to": ["bob@localhost", "carol@localhost"],
        "body": "leave now", "deliver_within_secs": 60,
    });
    h.deliver(1, &job.to_string());
    let report = &published(&run(&mut h), "job.report")[0];
    assert_eq!(report["deferred"], 0);
    assert!(report["deferral_refused"]
        .as_str()
        .is_some_and(|why| why.contains("max_deferred")));
    h.phone_presence("bob@localhost", PresenceType::None);
    assert!(message_recipients(&run(&mut h)).is_empty());
}

#[test]
fn cancelling_a_completed_job_ends_its_window_and_nobody_more_gets_it() {
    let (mut h, _) = window_job(false);
    h.input(Input::Request(crate::core::Request {
        id: crate::core::RequestId {
            generation: 1,
            tag: 1,
        },
        payload: br#"{"op": "cancel", "id": "w"}"#.to_vec(),
        reply_to: Some("amq.rabbitmq.reply-to.g1".into()),
        correlation_id: None,
        user_id: None,
        received_at: wall_clock(),
    }));
    let outputs = run(&mut h);
    let reply = outputs.iter().find_map(|output| match output {
        Output::Publish(publish) if matches!(publish.destination, Destination::Reply { .. }) => {
            serde_json::from_slice::<serde_json::Value>(&publish.payload).ok()
        }
        _ => None,
    });
    assert_eq!(reply.unwrap()["result"]["state"], "completed");
    assert!(changes(&outputs).contains(&Change::JobCancelled("w".into())));
    let last = &published(&outputs, "job.report.final")[0];
    assert_eq!(
        (&last["cancelled"], &last["late"], &last["missed"]),
        (&true.into(), &0.into(), &2.into()),
        "{last}"
    );
    h.phone_presence("bob@localhost", PresenceType::None);
    assert!(message_recipients(&run(&mut h)).is_empty());
}

#[test]
fn after_a_restart_that_left_its_report_owed_a_window_publishes_the_report_first_and_does_not_wait_for_its_end(
) {
    // Killed before the store had that the report was confirmed.
    let contents = stored_after_bob_was_reached(|change| !matches!(change, Change::JobReported(_)));
    let mut h = Harness::ready_restored(|_| {}, contents.into_restored());
    run(&mut h);
    h.phone_presence("carol@localhost", PresenceType::None);
    let outputs = run(&mut h);
    assert_eq!(message_recipients(&outputs), ["carol@localhost"]);
    let reports: Vec<&str> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Publish(publish) => match &publish.destination {
                Destination::Events { routing_key } => Some(routing_key.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        reports,
        ["job.report", "job.report.final"],
        "the owed report first, long before the window's end"
    );
    assert!(published(&outputs, "job.report")[0]
        .get("duplicate")
        .is_none());
}
