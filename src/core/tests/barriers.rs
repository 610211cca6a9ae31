//! A barrier whose answer never comes: the next keepalive goes past it.

use super::*;

const KEEPALIVE: Duration = Duration::from_secs(30);

/// The pings among what the core queues now, every store batch among it
/// committed.
fn pings_with_commits(h: &mut Harness) -> Vec<String> {
    ids_of_pings(&h.drain_committed())
}

#[test]
fn a_lost_barrier_answer_holds_the_job_back_only_until_the_next_keepalive() {
    let mut h = Harness::ready_with(|config| config.xmpp.keepalive_secs = KEEPALIVE.as_secs());
    h.deliver(1, JOB);
    let lost = pings_with_commits(&mut h)
        .pop()
        .expect("a barrier behind the message");
    // Keepalives fall due every KEEPALIVE; the first after the barrier has
    // waited half of one for its answer goes past it.
    let sent = h.now;
    let again = loop {
        h.tick(Duration::from_secs(1));
        if let Some(ping) = pings_with_commits(&mut h).pop() {
            break ping;
        }
        assert!(
            h.now - sent <= KEEPALIVE,
            "no keepalive past the overdue barrier"
        );
    };
    assert!(
        h.now - sent >= KEEPALIVE / 2,
        "the barrier was not overdue yet"
    );
    assert_ne!(again, lost);

    h.answer(&again);
    let outputs = h.drain();
    let Some(Output::Commit(batch)) = outputs.last() else {
        panic!("the job was read: its completion goes to the store: {outputs:?}");
    };
    h.input(Input::Committed { batch: batch.id });
    let Some(Output::Publish(report)) = h.drain().pop() else {
        panic!("then its report");
    };
    h.input(Input::Published {
        id: report.id.unwrap(),
    });
    let outputs = h.drain();
    assert!(
        matches!(
            outputs[..],
            [Output::Ack {
                job: JobId { tag: 1, .. },
                ..
            }]
        ),
        "{outputs:?}"
    );
    // The lost answer, should it come after all, releases nothing more.
    h.answer(&lost);
    assert_eq!(h.drain().len(), 0);
}
