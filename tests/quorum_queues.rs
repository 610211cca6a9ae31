//! `amqp.queue_type = "quorum"` on the shared broker: Herald declares its
//! queues as quorum queues and delivers through them, and a jobs queue that
//! already exists with another type (which RabbitMQ cannot change, either
//! way) keeps Herald unready with an error that says so, until an operator
//! moves it.
//! Real Prosody, real c2s users, the real `herald` binary.

use std::time::Duration;

use herald_testkit::amqp::Amqp;
use herald_testkit::c2s::XmppUser;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Whether `queue`, which exists, is of type `queue_type`: RabbitMQ accepts
/// a declaration with another `x-queue-type` only if it is the queue's.
async fn is_of_type(amqp: &Amqp, queue: &str, queue_type: &str) -> bool {
    let channel = amqp.connection.create_channel().await.expect("channel");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.into()),
    );
    let declared = channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .is_ok();
    let _ = channel.close(200, "bye".into()).await;
    declared
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_are_declared_as_such_and_carry_jobs() {
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("HERALD_AMQP__QUEUE_TYPE", "quorum")];
    let mut herald = Herald::start_with_env(&server, &names, dir.path(), &env);
    let amqp = Amqp::connect().await;
    for queue in [&names.jobs, &names.dead, &names.control] {
        assert!(is_of_type(&amqp, queue, "quorum").await, "{queue}");
        assert!(!is_of_type(&amqp, queue, "classic").await, "{queue}");
    }
    let mut alice = XmppUser::login_available(&server, "alice", "r").await;
    herald.wait_metric("herald_online_users", 1.0, WAIT);
    let job = json!({"id": "q1", "to": [server.jid("alice")], "body": "through a quorum queue"});
    amqp.publish_json(&names.jobs, &job).await;
    let message = alice.next_message(WAIT).await.expect("alice got the job");
    assert_eq!(message.1, "through a quorum queue");
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
    for queue in [&names.jobs, &names.dead, &names.control] {
        amqp.delete_queue(queue).await;
    }
    amqp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_queue_of_another_type_is_named_in_the_error_until_it_is_moved() {
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let amqp = Amqp::connect().await;
    // A classic jobs queue, as Herald declared it before quorum was chosen.
    amqp.channel
        .queue_declare(
            names.jobs.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("declare a classic jobs queue");
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("HERALD_AMQP__QUEUE_TYPE", "quorum")];
    let mut herald = Herald::launch_with_env(&server, &names, dir.path(), &env);
    let said = format!(
        "queue \"{}\" exists with another type than amqp.queue_type = \"quorum\", \
         and RabbitMQ cannot change the type of an existing queue",
        names.jobs
    );
    herald.wait_log_count(&said, 2, WAIT);
    assert!(
        herald.log_count("inequivalent arg 'x-queue-type'") >= 2,
        "the broker's own words are kept:\n{}",
        herald.log_text()
    );
    assert_eq!(
        herald.readyz(),
        503,
        "no jobs taken from a queue of the wrong type"
    );

    // The operator moves the queue away (here: deletes it, empty): Herald
    // declares it with the type asked for at its next attempt.
    amqp.delete_queue(&names.jobs).await;
    herald.wait_readyz(200, WAIT);
    assert!(is_of_type(&amqp, &names.jobs, "quorum").await);
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());

    // Nor does a quorum queue become classic again.
    herald.relaunch_with_env(&[("HERALD_AMQP__QUEUE_TYPE", "classic")]);
    herald.wait_log_count("than amqp.queue_type = \"classic\"", 1, WAIT);
    assert_eq!(herald.readyz(), 503);
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
    for queue in [&names.jobs, &names.dead, &names.control] {
        amqp.delete_queue(queue).await;
    }
    amqp.close().await;
}
