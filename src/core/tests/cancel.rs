//! Cancelling jobs through the core: one not taken yet sends nothing when
//! it comes up, one fanning out stops before its next slice with what it
//! sent kept, one completed has nothing to cancel; each answer waits for
//! the store to commit the cancellation.

use serde_json::{json, Value};

use super::*;

fn cancel(id: &str) -> Value {
    json!({"op": "cancel", "id": id})
}

#[test]
fn a_job_cancelled_before_it_comes_up_sends_nothing_and_is_reported_cancelled() {
    let mut h = Harness::ready();
    let reply = h.change(1, &cancel("j"));
    assert_eq!(reply["result"], json!({"id": "j", "state": "pending"}));

    let job = json!({"id": "j", "to": ["alice@localhost", "x@localhost/r"], "body": "hi"});
    let (sent, report) = h.job(1, &job);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(report["cancelled"], true);
    assert_eq!(report["sent"], 0);
    assert_eq!(report["skipped"]["cancelled"], 1);
    assert_eq!(report["skipped"]["invalid"], 1);
    assert!(report.get("expired").is_none());
    let metrics = h.core.metrics.recipients.cancelled.get();
    assert_eq!((metrics, h.core.metrics.jobs.cancelled.get()), (1, 1));

    // Published again, it repeats the cancelled job's report.
    let (sent, again) = h.job(2, &job);
    assert!(sent.is_empty());
    assert_eq!(
        (again["duplicate"].clone(), again["cancelled"].clone()),
        (json!(true), json!(true))
    );
}

#[test]
fn a_redelivered_cancelled_job_counts_the_rest_as_possible_duplicates() {
    let mut h = Harness::ready();
    h.change(1, &cancel("j"));
    h.input(Input::Delivery(Delivery {
        id: JobId {
            generation: 1,
            lane: Lane::Normal,
            tag: 1,
        },
        payload: br#"{"id":"j","to":["alice@localhost"],"body":"hi"}"#.to_vec(),
        redelivered: true,
        age: None,
        received_at: wall_clock(),
        user_id: None,
    }));
    let [report] = &h.settle()[..] else {
        panic!("one report");
    };
    assert_eq!(report["skipped"]["cancelled"], 1);
    assert_eq!(
        report["possible_duplicates"], 1,
        "an earlier attempt may have reached them"
    );
}

#[test]
fn a_job_fanning_out_stops_before_its_next_slice_and_keeps_what_it_sent() {
    let (mut h, users) = Harness::with_online(6);
    h.drain_with_room(2);
    h.deliver(
        1,
        &json!({"id": "big", "to": users, "body": "hi"}).to_string(),
    );
    assert_eq!(message_recipients(&h.drain_with_room(0)), users[..2]);

    h.request(1, &cancel("big"));
    let outputs = h.drain_with_room(0);
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::Publish(p) if matches!(p.destination, Destination::Reply { .. }))),
        "no reply before the commit: {outputs:?}"
    );
    let batch = outputs.iter().find_map(|o| match o {
        Output::Commit(batch) => Some(batch.id),
        _ => None,
    });
    h.input(Input::Committed {
        batch: batch.expect("the cancellation is stored"),
    });
    let pings = ids_of_pings(&outputs);
    let reply = h.only_reply();
    assert_eq!(reply["result"]["state"], "in_progress");
    assert_eq!(reply["result"]["report"]["sent"], 2);
    assert_eq!(reply["result"]["report"]["skipped"]["cancelled"], 4);

    // Room again: nothing more of it goes; its report once the server
    // read what it wrote.
    let outputs = h.drain_with_room(ROOM);
    assert!(message_recipients(&outputs).is_empty(), "{outputs:?}");
    for ping in pings {
        h.answer(&ping);
    }
    let [report] = &h.settle()[..] else {
        panic!("one report");
    };
    assert_eq!(report["id"], "big");
    assert_eq!(report["cancelled"], true);
    assert_eq!(
        (report["sent"].clone(), report["recipients"].clone()),
        (json!(2), json!(6))
    );
}

#[test]
fn a_completed_job_has_nothing_to_cancel_and_nothing_is_stored() {
    let mut h = Harness::ready();
    let job = json!({"id": "done", "to": ["alice@localhost"], "body": "hi"});
    h.job(1, &job);
    h.commit_all();
    h.request(1, &cancel("done"));
    let outputs = h.drain();
    assert!(
        !outputs.iter().any(|o| matches!(o, Output::Commit(_))),
        "{outputs:?}"
    );
    let reply: Vec<Value> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Publish(p) => serde_json::from_slice(&p.payload).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(
        reply,
        [json!({"ok": true, "result": {"id": "done", "state": "completed"}})]
    );
}

#[test]
fn status_counts_the_cancelled_ids_remembered() {
    let mut h = Harness::ready();
    let cancelled = |h: &mut Harness, tag| {
        h.request(tag, &json!({"op": "status"}));
        h.only_reply()["result"]["cancelled"].clone()
    };
    assert_eq!(cancelled(&mut h, 1), 0);
    h.change(2, &cancel("a"));
    h.change(3, &cancel("b"));
    // A completed job has nothing to cancel: nothing is remembered.
    h.job(
        1,
        &json!({"id": "done", "to": ["alice@localhost"], "body": "hi"}),
    );
    h.commit_all();
    h.request(4, &cancel("done"));
    h.drain();
    assert_eq!(cancelled(&mut h, 5), 2);
}

impl Harness {
    /// Answers barriers, commits batches and lets time pass until nothing
    /// more comes; what was published meanwhile.
    pub(super) fn settle(&mut self) -> Vec<Value> {
        let mut published = Vec::new();
        for _ in 0..5 {
            let outputs = self.drain();
            for output in &outputs {
                match output {
                    Output::Publish(publish) => {
                        published.push(serde_json::from_slice(&publish.payload).unwrap())
                    }
                    Output::Commit(batch) => self.input(Input::Committed { batch: batch.id }),
                    _ => {}
                }
            }
            for ping in ids_of_pings(&outputs) {
                self.answer(&ping);
            }
            self.tick(Duration::from_secs(1));
        }
        published
    }
}
