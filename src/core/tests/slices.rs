//! A job bigger than the stream's room goes out a slice at a time: as much
//! as the room takes, the rest once the shell has room again, judged by
//! presence at that moment; the jobs behind it wait their turn.

use super::*;

#[test]
fn a_job_bigger_than_the_room_goes_out_in_slices_and_the_next_waits() {
    let (mut h, users) = Harness::with_online(6);
    // Known to Herald, offline when the job comes.
    h.phone_presence("late@localhost", PresenceType::None);
    h.phone_presence("late@localhost", PresenceType::Unavailable);
    h.commit_all();
    h.drain_with_room(3);

    let mut to = users.clone();
    to.push("late@localhost".into());
    let big = serde_json::json!({"id": "big", "to": to, "body": "hello"});
    h.deliver(1, &big.to_string());
    h.deliver(2, r#"{"id":"next","to":["u0@localhost"],"body":"after"}"#);
    let first = h.drain_with_room(0);
    assert_eq!(message_recipients(&first), users[..3]);
    let id = |tag| JobId {
        generation: 1,
        lane: Lane::Normal,
        tag,
    };
    assert_eq!(h.core.jobs.stage(id(1)), Some(Stage::Fanning));
    assert_eq!(
        h.core.jobs.stage(id(2)),
        Some(Stage::Held(jobs::Hold::Examined))
    );
    assert!(h.core.waits_for_room(), "the shell is to wake the loop");
    assert_eq!(h.core.poll_timeout().filter(|at| *at <= h.now), None);

    // Someone comes online between slices: she is judged when reached.
    h.phone_presence("late@localhost", PresenceType::None);
    h.commit_all();
    assert!(message_recipients(&h.drain_with_room(0)).is_empty());

    h.drain_with_room(ROOM);
    assert_eq!(
        h.core.poll_timeout(),
        Some(h.now),
        "room: the next slice goes now"
    );
    h.tick(Duration::ZERO);
    let rest = h.drain_with_room(ROOM);
    let mut expected: Vec<String> = users[3..].to_vec();
    expected.extend(["late@localhost".to_string(), "u0@localhost".to_string()]);
    assert_eq!(message_recipients(&rest), expected);
    assert_eq!(h.core.jobs.stage(id(1)), Some(Stage::Written));
    assert_eq!(h.core.jobs.stage(id(2)), Some(Stage::Written));
    assert!(!h.core.waits_for_room());
}

#[test]
fn a_job_cut_off_mid_fanning_by_a_lost_stream_goes_back_to_the_queue() {
    let (mut h, _) = Harness::with_online(4);
    h.drain_with_room(2);
    let job = r#"{"id":"big","to":["u0@localhost","u1@localhost","u2@localhost","u3@localhost"],"body":"hi"}"#;
    h.deliver(1, job);
    assert_eq!(message_recipients(&h.drain_with_room(0)).len(), 2);

    h.input(Input::StreamLost);
    let outputs = h.drain();
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Requeue { job } if job.tag == 1)),
        "{outputs:?}"
    );
    assert_eq!(h.core.jobs.len(), 0);
    assert!(!h.core.waits_for_room());
}

#[test]
fn an_urgent_job_goes_between_the_slices_of_a_big_one_and_is_acknowledged_apart() {
    let (mut h, users) = Harness::with_online(6);
    h.drain_with_room(2);
    let big = serde_json::json!({"id": "big", "to": users, "body": "routine"});
    h.deliver(1, &big.to_string());
    assert_eq!(message_recipients(&h.drain_with_room(0)), users[..2]);

    // Its channel numbers its deliveries on its own.
    let urgent = JobId {
        generation: 1,
        lane: Lane::Urgent,
        tag: 7,
    };
    let alert = r#"{"id":"alert","to":["u5@localhost"],"body":"evacuate"}"#;
    h.deliver_on(Lane::Urgent, urgent.tag, alert);
    h.drain_with_room(1);
    h.tick(Duration::ZERO);
    let outputs = h.drain_with_room(0);
    assert_eq!(
        message_recipients(&outputs),
        ["u5@localhost"],
        "the alert first"
    );
    let ping = ids_of_pings(&outputs)
        .pop()
        .expect("a barrier behind the alert");

    // The alert is read, committed and reported: it is acknowledged on its
    // own lane while the big job is still going out.
    h.answer(&ping);
    for output in h.drain_with_room(0) {
        if let Output::Commit(batch) = output {
            h.input(Input::Committed { batch: batch.id });
        }
    }
    let report = h
        .drain_with_room(0)
        .into_iter()
        .find_map(|output| match output {
            Output::Publish(publish) => publish.id,
            _ => None,
        })
        .expect("the alert's report");
    h.input(Input::Published { id: report });
    let acks: Vec<JobId> = h
        .drain_with_room(0)
        .into_iter()
        .filter_map(|output| match output {
            Output::Ack { job, .. } => Some(job),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [urgent]);
    assert_eq!(
        h.core.jobs.stage(JobId {
            generation: 1,
            lane: Lane::Normal,
            tag: 1
        }),
        Some(Stage::Fanning)
    );

    h.drain_with_room(ROOM);
    h.tick(Duration::ZERO);
    assert_eq!(message_recipients(&h.drain()), users[2..]);
}

#[test]
fn a_copy_of_a_job_on_the_other_queue_waits_for_it_and_is_a_duplicate() {
    let (mut h, users) = Harness::with_online(4);
    h.drain_with_room(2);
    let job = serde_json::json!({"id": "same", "to": users, "body": "once"}).to_string();
    h.deliver(1, &job);
    h.deliver_on(Lane::Urgent, 1, &job);
    h.drain_with_room(ROOM);
    h.tick(Duration::ZERO);
    let outputs = h.drain();
    assert_eq!(
        message_recipients(&outputs),
        users[2..],
        "nothing sent twice"
    );
    let ping = ids_of_pings(&outputs).pop().expect("a barrier");
    h.answer(&ping);
    h.commit_all();
    let reports: Vec<serde_json::Value> = h
        .drain()
        .into_iter()
        .filter_map(|output| match output {
            Output::Publish(publish) => serde_json::from_slice(&publish.payload).ok(),
            _ => None,
        })
        .collect();
    let own: Vec<_> = reports.iter().filter(|r| r["duplicate"] != true).collect();
    assert_eq!(own.len(), 1, "one own report: {reports:?}");
    assert_eq!(own[0]["sent"], 4);
    assert_eq!(
        reports.len(),
        2,
        "and the copy's, as a duplicate: {reports:?}"
    );
}
