//! What a job's marks and deadline do through the core: a reply in a
//! job's thread names the job in its event; a job taken after its
//! `expires_at` (on arrival, or held for a probe while it passes) sends
//! nothing and is reported expired.

use super::*;

#[test]
fn a_reply_in_a_jobs_thread_becomes_an_event_naming_the_job() {
    use xmpp_parsers::message::{Lang, Message, MessageType};
    let mut h = Harness::ready();
    h.deliver(1, JOB);
    let thread = h
        .drain()
        .into_iter()
        .find_map(|output| match output {
            Output::Message { template, to } => template.to_message(&to).thread,
            _ => None,
        })
        .expect("the job's message has a thread");
    let received = Destination::Events {
        routing_key: crate::broadcast::MESSAGE_KEY.into(),
    };
    for (thread, job) in [(Some(thread), Some("j1")), (None, None)] {
        let mut reply = Message::new(Some(Jid::new("herald@broadcast.localhost").unwrap()));
        reply.from = Some(Jid::new("alice@localhost/phone").unwrap());
        reply.type_ = MessageType::Chat;
        reply.bodies.insert(Lang::default(), "on my way".into());
        reply.thread = thread;
        h.input(Input::Stanza(reply.into()));
        let event = h
            .drain()
            .into_iter()
            .find_map(|output| match output {
                Output::Publish(publish) if publish.destination == received => {
                    Some(publish.payload)
                }
                _ => None,
            })
            .expect("a message.received event");
        let event: serde_json::Value = serde_json::from_slice(&event).unwrap();
        assert_eq!(event["job"].as_str(), job, "{event}");
        assert_eq!(event["body"], "on my way");
    }
}

/// Answers every ping and commits every batch until the core is quiet,
/// then gives the reports it published, by job id.
fn settle(h: &mut Harness) -> std::collections::HashMap<String, serde_json::Value> {
    let mut reports = std::collections::HashMap::new();
    loop {
        let outputs = h.drain();
        if outputs.is_empty() {
            return reports;
        }
        for id in ids_of_pings(&outputs) {
            h.answer(&id);
        }
        for output in outputs {
            match output {
                Output::Commit(batch) => h.input(Input::Committed { batch: batch.id }),
                Output::Publish(publish) => {
                    let report: serde_json::Value =
                        serde_json::from_slice(&publish.payload).unwrap();
                    if let Some(id) = report["id"].as_str() {
                        reports.insert(id.to_string(), report.clone());
                    }
                    if let Some(id) = publish.id {
                        h.input(Input::Published { id });
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn a_job_taken_after_its_deadline_sends_nothing_and_is_reported_expired() {
    let mut h = Harness::ready();
    // The jobs are taken at 12:00:00 (wall_clock()); bob is a stranger,
    // probed first, so his job is fanned out only later.
    let job = |id: &str, to: &str, expires_at: &str| {
        serde_json::json!({"id": id, "to": [to, "x@localhost/r"], "body": "hi", "expires_at": expires_at})
            .to_string()
    };
    h.deliver(
        1,
        &job("in-time", "alice@localhost", "2026-12-06T12:00:01Z"),
    );
    let in_time = h.drain();
    assert_eq!(message_recipients(&in_time), ["alice@localhost"]);
    h.deliver(
        2,
        &job("late", "alice@localhost", "2026-12-06T13:00:00+01:00"),
    );
    h.deliver(3, &job("held", "bob@localhost", "2026-12-06T12:00:02Z"));
    let late = h.drain();
    assert!(message_recipients(&late).is_empty(), "{late:?}");
    // bob's probe is read only once the deadline has passed.
    h.tick(Duration::from_secs(3));
    for ping in ids_of_pings(&in_time).iter().chain(&ids_of_pings(&late)) {
        h.answer(ping);
    }
    let mut reports = settle(&mut h);
    h.tick(Duration::from_secs(1));
    reports.extend(settle(&mut h));
    assert!(message_recipients(&h.drain()).is_empty());

    assert_eq!(reports["in-time"]["sent"], 1, "{reports:?}");
    assert!(reports["in-time"].get("expired").is_none());
    for late in ["late", "held"] {
        let report = &reports[late];
        assert_eq!(report["expired"], true, "{report}");
        assert_eq!(report["sent"], 0, "{report}");
        assert_eq!(report["skipped"]["expired"], 1, "{report}");
        assert_eq!(report["skipped"]["invalid"], 1, "{report}");
        assert_eq!(report["recipients"], 2, "{report}");
    }
    let expired = &h.core.metrics.recipients.expired;
    assert_eq!(expired.get(), 2);
}
