//! A job published twice is delivered once: the repeat gets the first
//! job's report marked `duplicate: true`, whether it arrives while the first
//! is in progress, after it completed, or after Herald restarted.

use std::time::Duration;

use herald_testkit::events::next_report;
use herald_testkit::prosody::Prosody;
use herald_testkit::stack::Stack;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_is_reported_as_a_duplicate_even_after_a_restart() {
    let mut stack = Stack::<Prosody>::start(&["alice", "bob"]).await;
    let mut alice = stack.online("alice").await;
    let job =
        json!({"id": "once", "to": ["alice@localhost", "bob@localhost"], "body": "only once"});

    stack.publish(job.clone()).await;
    let first = next_report(&mut stack.reports, "once").await;
    assert_eq!(first["sent"], 1, "{first}");
    assert_eq!(first.get("duplicate"), None, "{first}");
    assert_eq!(
        alice.next_message(QUIET * 10).await.expect("message").1,
        "only once"
    );

    stack.publish(job.clone()).await;
    let second = next_report(&mut stack.reports, "once").await;
    assert_eq!(second["duplicate"], true, "{second}");
    assert_eq!(
        second["sent"], first["sent"],
        "the earlier counts: {second}"
    );
    assert_eq!(second["skipped"], first["skipped"], "{second}");
    alice.expect_no_message(QUIET).await;
    assert_eq!(
        stack.metric(r#"herald_jobs_total{outcome="duplicate"}"#),
        1.0
    );

    assert_eq!(stack.herald.stop(), Some(0));
    stack.herald.restart();
    stack.publish(job).await;
    let third = next_report(&mut stack.reports, "once").await;
    assert_eq!(
        third["duplicate"], true,
        "remembered across restarts: {third}"
    );
    alice.expect_no_message(QUIET).await;
    assert_eq!(stack.metric("herald_remembered_jobs"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_that_arrives_while_the_first_is_in_progress_is_a_duplicate() {
    let mut stack = Stack::<Prosody>::start(&["alice"]).await;
    let mut alice = stack.online("alice").await;
    let job = json!({"id": "twice-at-once", "to": ["alice@localhost"], "body": "back to back"});
    stack.publish(job.clone()).await;
    stack.publish(job).await;

    let reports = [
        next_report(&mut stack.reports, "twice-at-once").await,
        next_report(&mut stack.reports, "twice-at-once").await,
    ];
    let duplicates = reports.iter().filter(|r| r["duplicate"] == true).count();
    assert_eq!(duplicates, 1, "{reports:?}");
    assert!(reports.iter().all(|r| r["sent"] == 1), "{reports:?}");
    assert_eq!(
        alice.next_message(QUIET * 10).await.expect("message").1,
        "back to back"
    );
    alice.expect_no_message(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completed_but_not_reported_before_a_crash_is_reported_after_not_resent() {
    let mut stack = Stack::<Prosody>::start(&["alice"]).await;
    let mut alice = stack.online("alice").await;
    // Every report is refused while this queue is bound: the job completes
    // (the server read its message) but its report is never confirmed.
    let refusing = stack
        .amqp
        .bind_refusing_queue(&stack.names.events, "job.report")
        .await;
    stack
        .publish(json!({"id": "owed", "to": ["alice@localhost"], "body": "exactly once"}))
        .await;
    assert_eq!(
        alice.next_message(QUIET * 10).await.expect("message").1,
        "exactly once"
    );
    stack
        .herald
        .wait_log_count("publish refused; retrying", 1, QUIET * 10);
    stack.herald.kill();
    // Copies RabbitMQ routed to the tap despite refusing them.
    while herald_testkit::events::report_within(&mut stack.reports, "owed", QUIET)
        .await
        .is_some()
    {}

    stack.amqp.delete_queue(&refusing).await;
    stack.herald.restart();
    let report = next_report(&mut stack.reports, "owed").await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(
        report.get("duplicate"),
        None,
        "the job's own report, still owed: {report}"
    );
    alice.expect_no_message(QUIET).await;
    assert_eq!(
        stack.metric(r#"herald_jobs_total{outcome="duplicate"}"#),
        1.0,
        "the redelivery was recognised"
    );
}
