use super::*;
use std::time::Duration;

fn delivery(tag: u64) -> Delivery {
    Delivery {
        id: id(tag),
        payload: Vec::new(),
        redelivered: false,
        age: None,
        received_at: std::time::UNIX_EPOCH,
        user_id: None,
    }
}

fn id(tag: u64) -> JobId {
    JobId {
        generation: 1,
        lane: Lane::Normal,
        tag,
    }
}

#[test]
fn a_new_job_is_examined_first_and_an_examined_one_runs() {
    let mut jobs = Jobs::default();
    let now = Instant::now();
    jobs.take(delivery(1), now, now);
    assert_eq!(
        jobs.first_held(Lane::Normal, now),
        Some((id(1), Turn::Examine))
    );
    jobs.set_stage(id(1), Stage::Held(Hold::Examined));
    assert_eq!(jobs.first_held(Lane::Normal, now), Some((id(1), Turn::Run)));
    assert_eq!(jobs.pop_held(Lane::Normal), Some(id(1)));
    assert_eq!(jobs.held_len(), 0);
}

#[test]
fn a_probing_job_holds_the_ones_behind_it_until_its_probes_settle() {
    let mut jobs = Jobs::default();
    let now = Instant::now();
    let settle = Duration::from_millis(300);
    jobs.take(delivery(1), now, now);
    jobs.take(delivery(2), now, now);
    let ticket = jobs.probing(id(1));
    assert_eq!(jobs.unexamined_behind(Lane::Normal, 1), vec![id(2)]);
    jobs.set_stage(id(2), Stage::Held(Hold::Examined));
    assert!(jobs.unexamined_behind(Lane::Normal, 1).is_empty());
    assert_eq!(
        jobs.first_held(Lane::Normal, now),
        Some((id(1), Turn::Wait))
    );

    jobs.probes_answered(ticket, now + settle);
    assert_eq!(jobs.held_settles_at(), Some(now + settle));
    assert_eq!(
        jobs.first_held(Lane::Normal, now),
        Some((id(1), Turn::Wait))
    );
    assert_eq!(
        jobs.first_held(Lane::Normal, now + settle),
        Some((id(1), Turn::Run))
    );
    jobs.pop_held(Lane::Normal);
    assert_eq!(jobs.first_held(Lane::Normal, now), Some((id(2), Turn::Run)));
}

#[test]
fn an_answer_settles_its_ticket_and_earlier_ones_only() {
    let mut jobs = Jobs::default();
    let now = Instant::now();
    for tag in 1..=3 {
        jobs.take(delivery(tag), now, now);
    }
    let first = jobs.probing(id(1));
    let second = jobs.probing(id(2));
    let third = jobs.probing(id(3));
    assert!(first < second && second < third);
    jobs.probes_answered(second, now);
    assert_eq!(jobs.first_held(Lane::Normal, now), Some((id(1), Turn::Run)));
    jobs.pop_held(Lane::Normal);
    assert_eq!(jobs.first_held(Lane::Normal, now), Some((id(2), Turn::Run)));
    jobs.pop_held(Lane::Normal);
    assert_eq!(
        jobs.first_held(Lane::Normal, now),
        Some((id(3), Turn::Wait))
    );
}

#[test]
fn a_lost_stream_makes_every_held_job_new_again_in_order() {
    let mut jobs = Jobs::default();
    let now = Instant::now();
    jobs.take(delivery(1), now, now);
    jobs.take(delivery(2), now, now);
    let ticket = jobs.probing(id(1));
    jobs.set_stage(id(2), Stage::Held(Hold::Examined));
    jobs.restart_held();
    jobs.probes_answered(ticket, now);
    assert_eq!(
        jobs.first_held(Lane::Normal, now),
        Some((id(1), Turn::Examine))
    );
    assert_eq!(jobs.unexamined_behind(Lane::Normal, 1), vec![id(2)]);
}

#[test]
fn acknowledgements_wait_for_earlier_jobs_and_pass_requeued_ones() {
    let mut jobs = Jobs::default();
    let now = Instant::now();
    let mut out = Outputs::default();
    for tag in 1..=3 {
        jobs.take(delivery(tag), now, now);
    }
    jobs.drain_held();
    jobs.ack(id(3), &mut out);
    assert!(out.is_empty(), "1 and 2 are still open");
    jobs.requeue(id(1), &mut out);
    jobs.ack(id(2), &mut out);
    let acks: Vec<String> = out.iter().map(|o| format!("{o:?}")).collect();
    assert_eq!(acks.len(), 2);
    assert!(acks[0].starts_with("Requeue"), "{acks:?}");
    assert!(acks[1].contains("tag: 3") && acks[1].contains("multiple: true"));
    assert_eq!(jobs.len(), 0);
}
