//! Delivery receipts (XEP-0184) of a job that asked for them: counted
//! once per message until its window ends, and, for a job whose report
//! names its recipients, who sent them, across a restart too; each counted
//! receipt told in a `message.receipt` event.

use std::collections::HashMap;

use super::deferred::{changes, published, run, run_and_store};
use super::*;
use crate::store::{Change, Contents, Receipt};

/// The id of the message to each recipient among `outputs`, by bare JID.
fn message_ids(outputs: &[Output]) -> HashMap<String, String> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Message { template, to } => {
                let id = template.to_message(to).id?.0;
                Some((to.user().to_string(), id))
            }
            _ => None,
        })
        .collect()
}

/// A receipt from `from` (a full JID) for the message with `id`.
fn receipt(from: &str, id: &str) -> Input {
    let received: xmpp_parsers::minidom::Element =
        format!("<received xmlns='urn:xmpp:receipts' id='{id}'/>")
            .parse()
            .unwrap();
    let mut message =
        xmpp_parsers::message::Message::new(Some(Jid::new("herald@broadcast.localhost").unwrap()));
    message.from = Some(Jid::new(from).unwrap());
    message.payloads.push(received);
    Input::Stanza(message.into())
}

/// A ready core with carol online and bob a subscriber who went offline.
fn carol_online_bob_gone() -> Harness {
    let mut h = Harness::ready();
    h.phone_presence("carol@localhost", PresenceType::None);
    h.phone_presence("bob@localhost", PresenceType::None);
    h.phone_presence("bob@localhost", PresenceType::Unavailable);
    run(&mut h);
    h
}

#[test]
fn receipts_are_counted_once_each_until_the_window_ends() {
    let mut h = carol_online_bob_gone();
    // Carol never answers: the window runs to its end.
    let job = serde_json::json!({
        "id": "r", "to": ["alice@localhost", "bob@localhost", "carol@localhost"], "body": "b", "receipts": true,
    });
    h.deliver(1, &job.to_string());
    let outputs = run(&mut h);
    let id = message_ids(&outputs)["alice@localhost"].clone();
    let asks = outputs.iter().any(|output| {
        matches!(output, Output::Message { template, to }
            if template.to_message(to).payloads.iter().any(|p| p.is("request", "urn:xmpp:receipts")))
    });
    assert!(asks, "the message asks for a receipt");
    assert_eq!(published(&outputs, "job.report")[0]["deferred"], 0);

    h.input(receipt("alice@localhost/phone", &id));
    h.input(receipt("alice@localhost/phone", &id));
    h.input(receipt("alice@localhost/phone", "not-ours.0"));
    let outputs = run_and_store(&mut h);
    let stored = changes(&outputs)
        .into_iter()
        .filter(|c| matches!(c, Change::DeferredReceipts { .. }))
        .count();
    assert_eq!(stored, 1, "one receipt stored, the repeat not");
    // Bob comes online: the job has no window for late-comers.
    h.phone_presence("bob@localhost", PresenceType::None);
    assert!(message_recipients(&run(&mut h)).is_empty());
    assert!(published(&h.drain(), "job.report.final").is_empty());

    h.tick(Duration::from_secs(301));
    let last = &published(&run(&mut h), "job.report.final")[0];
    assert_eq!(
        (&last["receipts"], &last["deferred"], &last["missed"]),
        (&1.into(), &0.into(), &0.into()),
        "{last}"
    );
}

#[test]
fn a_job_asking_for_names_and_receipts_names_who_receipted_once_each_also_after_a_restart() {
    let mut h = carol_online_bob_gone();
    let job = serde_json::json!({
        "id": "r", "to": ["alice@localhost", "bob@localhost", "carol@localhost"], "body": "b",
        "receipts": true, "report_names": true, "deliver_within_secs": 60,
    });
    h.deliver(1, &job.to_string());
    let mut outputs = run(&mut h);
    let ids = message_ids(&outputs);
    // Alice's from two devices counts once; a receipt counts for the
    // message it names, whoever sends it: alice's for carol's message
    // counts, carol's own then repeats it.
    h.input(receipt("alice@localhost/phone", &ids["alice@localhost"]));
    h.input(receipt("alice@localhost/tablet", &ids["alice@localhost"]));
    h.input(receipt("alice@localhost/phone", &ids["carol@localhost"]));
    h.input(receipt("carol@localhost/phone", &ids["carol@localhost"]));
    outputs.extend(run_and_store(&mut h));
    let alice = |position| Receipt {
        position,
        sender: Some("alice@localhost".into()),
    };
    let stored: Vec<Change> = (changes(&outputs).into_iter())
        .filter(|c| matches!(c, Change::DeferredReceipts { .. }))
        .collect();
    let stored_receipt = |receipt| Change::DeferredReceipts {
        key: "r".into(),
        receipts: vec![receipt],
    };
    assert_eq!(stored, [stored_receipt(alice(0)), stored_receipt(alice(2))]);

    // Herald restarts; bob comes online and answers.
    let mut contents = Contents::new(10);
    for change in changes(&outputs) {
        contents.apply(change);
    }
    let mut h = Harness::ready_restored(|_| {}, contents.into_restored());
    run(&mut h);
    h.phone_presence("bob@localhost", PresenceType::None);
    let outputs = run(&mut h);
    let bob = message_ids(&outputs)["bob@localhost"].clone();
    h.input(receipt("bob@localhost/phone", &bob));
    // Every message sent was receipted: the final report comes early.
    let outputs = run_and_store(&mut h);
    let names = &published(&outputs, "job.report.final.names")[0];
    assert_eq!(
        names["receipted"],
        serde_json::json!(["alice@localhost", "bob@localhost"]),
        "{names}"
    );
    assert_eq!(names["late"], serde_json::json!(["bob@localhost"]));
    let last = &published(&outputs, "job.report.final")[0];
    assert_eq!(last["receipts"], 3, "{last}");
}

/// A job to alice asking for receipts, her receipt 2.5 s after it went out
/// (twice), with `receipt_events` as given: what came out then.
fn alices_receipt(receipt_events: bool) -> (Vec<Output>, String) {
    let mut h = Harness::ready_with(|config| config.amqp.receipt_events = receipt_events);
    let job = r#"{"id": "r", "to": ["alice@localhost"], "body": "b", "receipts": true}"#;
    h.deliver(1, job);
    let id = message_ids(&run(&mut h))["alice@localhost"].clone();
    h.tick(Duration::from_millis(2_500));
    h.input(receipt("alice@localhost/phone", &id));
    h.input(receipt("alice@localhost/tablet", &id));
    (run(&mut h), id)
}

#[test]
fn a_counted_receipt_is_told_once_in_an_event_unless_receipt_events_are_off() {
    let (outputs, id) = alices_receipt(true);
    let expected = serde_json::json!({
        "job": "r", "user": "alice@localhost", "id": id, "at": "2026-12-06T12:00:02.500Z",
    });
    assert_eq!(published(&outputs, "message.receipt"), [expected]);
    let last = &published(&outputs, "job.report.final")[0];
    assert_eq!(last["receipts"], 1, "{last}");

    let (outputs, _) = alices_receipt(false);
    assert!(published(&outputs, "message.receipt").is_empty());
    let last = &published(&outputs, "job.report.final")[0];
    assert_eq!(last["receipts"], 1, "counted all the same: {last}");
}

/// A ready core given a job to alice that asks for receipts (and has no
/// window of its own).
fn receipts_job_to_alice() -> Harness {
    let mut h = Harness::ready();
    let job = r#"{"id": "r", "to": ["alice@localhost"], "body": "b", "receipts": true}"#;
    h.deliver(1, job);
    h
}

#[test]
fn a_receipt_after_the_window_ends_does_not_count_though_the_final_report_waits_for_the_broker() {
    let mut h = receipts_job_to_alice();
    let id = message_ids(&run(&mut h))["alice@localhost"].clone();
    h.input(Input::BrokerLost { generation: 1 });
    h.tick(Duration::from_secs(301));
    h.input(receipt("alice@localhost/phone", &id));
    h.input(Input::BrokerUp { generation: 2 });
    h.tick(Duration::from_secs(2));
    let last = &published(&run(&mut h), "job.report.final")[0];
    assert_eq!(last["receipts"], 0, "{last}");
}

#[test]
fn a_receipt_that_comes_while_its_job_still_goes_out_counts_when_its_window_opens() {
    let mut h = receipts_job_to_alice();
    // Written, not yet proven read: the job has not completed.
    let outputs = h.drain();
    let id = message_ids(&outputs)["alice@localhost"].clone();
    h.input(receipt("alice@localhost/phone", &id));
    h.input(receipt("alice@localhost/phone", &id));
    for ping in ids_of_pings(&outputs) {
        h.answer(&ping);
    }
    let outputs = run(&mut h);
    assert_eq!(published(&outputs, "message.receipt").len(), 1);
    let last = &published(&outputs, "job.report.final")[0];
    assert_eq!(last["receipts"], 1, "{last}");
}
