//! Proves the RabbitMQ test helpers against the real broker.

use std::time::Duration;

use herald_testkit::amqp::{self, Amqp, EventTap};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn unique_names_differ() {
    let a = amqp::unique_name("jobs");
    let b = amqp::unique_name("jobs");
    assert!(a.starts_with("jobs-"));
    assert_ne!(a, b);
}

#[tokio::test]
async fn publish_and_get_one_round_trip() {
    let amqp = Amqp::connect().await;
    let queue = amqp::unique_name("herald-test-q");
    amqp.channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(amqp.queue_exists(&queue).await);
    assert!(!amqp.queue_exists(&amqp::unique_name("nope")).await);

    amqp::publish_json(&queue, &json!({"job": 1, "to": ["alice@localhost"]})).await;
    assert_eq!(amqp.message_count(&queue).await, Some(1));
    let msg = amqp::get_one(&queue, WAIT).await.expect("no message");
    assert_eq!(msg.json(), json!({"job": 1, "to": ["alice@localhost"]}));
    assert_eq!(msg.routing_key, queue);
    assert_eq!(msg.headers, json!({}));
    assert!(amqp
        .get_one(&queue, Duration::from_millis(200))
        .await
        .is_none());
    amqp.delete_queue(&queue).await;
    amqp.close().await;
}

#[tokio::test]
async fn dead_lettered_message_has_x_death_headers() {
    let amqp = Amqp::connect().await;
    let work = amqp::unique_name("herald-test-work");
    let dlq = amqp::unique_name("herald-test-dlq");
    amqp.channel
        .queue_declare(
            dlq.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Messages expire at once and are dead-lettered to `dlq` through the
    // default exchange.
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongUInt(0));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dlq.as_str().into()),
    );
    amqp.channel
        .queue_declare(work.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();

    amqp.publish_json(&work, &json!({"job": "expired"})).await;
    let msg = amqp
        .get_one(&dlq, WAIT)
        .await
        .expect("nothing dead-lettered");
    assert_eq!(msg.json(), json!({"job": "expired"}));
    let death = &msg.headers["x-death"][0];
    assert_eq!(death["queue"], json!(work));
    assert_eq!(death["reason"], json!("expired"));

    amqp.delete_queue(&work).await;
    amqp.delete_queue(&dlq).await;
    amqp.close().await;
}

#[tokio::test]
async fn event_tap_sees_topic_events() {
    let exchange = amqp::unique_name("herald-test-events");
    let mut tap = EventTap::bind(&exchange, "job.#").await;
    let amqp = Amqp::connect().await;
    amqp.publish_json_to(&exchange, "job.done", &json!({"id": 7}))
        .await;
    amqp.publish_json_to(&exchange, "job.failed.x", &json!({"id": 8}))
        .await;

    let (key, body) = tap.next(WAIT).await.expect("no event");
    assert_eq!(key, "job.done");
    assert_eq!(body, json!({"id": 7}));
    assert_eq!(
        tap.next_with_key("job.failed.x", WAIT).await,
        Some(json!({"id": 8}))
    );
    assert!(tap.next(Duration::from_millis(200)).await.is_none());

    // Clean up the durable exchange this test created.
    use lapin::options::ExchangeDeleteOptions;
    amqp.channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    tap.close().await;
    amqp.close().await;
}
