//! The read window: a big job keeps no more stanzas unread by the server
//! than it reads in `xmpp.server_queue_ms` beyond its base roundtrip, so
//! that an urgent job's message waits behind that much and no more.

use super::*;

const USERS: usize = 10_000;
/// How long the tests' server takes to answer a barrier.
const READ: Duration = Duration::from_millis(100);

/// A core with `USERS` users online and a job to all of them taken.
fn big_job_taken() -> (Harness, Vec<String>) {
    let (mut h, users) = Harness::with_online(USERS);
    let big = serde_json::json!({"id": "big", "to": users, "body": "routine"});
    h.deliver(1, &big.to_string());
    (h, users)
}

/// What the core queues now and in the next turn: with nothing unread and
/// the base roundtrip a second old, the first slice is a small one whose
/// ping measures the base, and the rest follows at once.
fn drain_turns(h: &mut Harness) -> Vec<Output> {
    let mut outputs = h.drain();
    h.tick(Duration::ZERO);
    outputs.extend(h.drain());
    outputs
}

/// The server answers every ping among `outputs` after [`READ`].
fn read_after_a_while(h: &mut Harness, outputs: &[Output]) {
    h.now += READ;
    for ping in ids_of_pings(outputs) {
        h.answer(&ping);
    }
}

#[test]
fn a_big_job_goes_out_as_fast_as_the_server_reads_it_and_no_faster() {
    let (mut h, users) = big_job_taken();
    let mut reached = Vec::new();
    let mut slices = 0;
    loop {
        let window = h.core.read_window.size(h.now, false);
        let outputs = drain_turns(&mut h);
        let sent = message_recipients(&outputs);
        assert!(
            sent.len() <= window,
            "{} sent with a window of {window}",
            sent.len()
        );
        reached.extend(sent);
        if reached.len() == USERS {
            break;
        }
        assert!(!h.core.waits_for_room(), "the stream's queue has room");
        h.tick(Duration::ZERO);
        assert!(
            message_recipients(&h.drain()).is_empty(),
            "nothing more before the server answers"
        );
        read_after_a_while(&mut h, &outputs);
        slices += 1;
        assert!(slices < 100, "the job goes out");
    }
    assert_eq!(reached, users, "each once, in order");
    // Answers after 100 ms for at most a window each: the window follows
    // the rate measured, times the 50 ms target (the base is nothing here).
    let window = h.core.read_window.size(h.now, false);
    assert!((512..4096).contains(&window), "{window}");
    assert!(slices >= 2, "{slices} slices");
}

#[test]
fn an_urgent_job_waits_for_one_answer_behind_a_big_one_not_for_its_end() {
    let (mut h, _) = big_job_taken();
    let first = drain_turns(&mut h);
    let ahead = message_recipients(&first).len();
    assert!(ahead > 0 && ahead < USERS);

    let alert = r#"{"id":"alert","to":["u5@localhost"],"body":"evacuate"}"#;
    h.deliver_on(Lane::Urgent, 1, alert);
    h.tick(Duration::ZERO);
    assert!(
        message_recipients(&h.drain()).is_empty(),
        "the window is full: nothing more goes, the big job's messages neither"
    );
    read_after_a_while(&mut h, &first);
    h.tick(Duration::ZERO);
    let next = message_recipients(&h.drain());
    assert_eq!(next.first().map(String::as_str), Some("u5@localhost"));
    assert!(next.len() < USERS - ahead, "the big job goes on in slices");
}
