//! The client against the real RabbitMQ the tests run beside
//! (`HERALD_TEST_AMQP_URL`, by default guest on 127.0.0.1:5672).

use std::time::Duration;

use herald_amqp::protocol::{basic, channel, confirm, queue};
use herald_amqp::types::FieldTable;
use herald_amqp::{AMQPClass, AMQPProperties, Client, Error, Event};
use herald_testkit::amqp::{amqp_url, bare, unique_name};

async fn connect() -> Client {
    let connected = bare::connect(&amqp_url(), "herald-amqp test").await;
    connected.expect("RabbitMQ answers on HERALD_TEST_AMQP_URL")
}

fn declare(queue: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: queue.into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: true,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

/// Consumes `queue` as `tag`, acknowledging.
fn consume(queue: &str, tag: &str) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
        queue: queue.into(),
        consumer_tag: tag.into(),
        no_local: false,
        no_ack: false,
        exclusive: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

/// Waits, within a bound, for the next event.
async fn next(client: &mut Client) -> Event {
    tokio::time::timeout(Duration::from_secs(20), client.next_event())
        .await
        .expect("an event within 20 s")
        .expect("the connection stays up")
}

#[tokio::test]
async fn publishes_are_confirmed_then_consumed_and_acknowledged() {
    let mut client = connect().await;
    let id = client.open_channel().await.unwrap();
    let queue = unique_name("herald-amqp");
    client.call(id, declare(&queue)).await.unwrap();
    let select = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
        nowait: false,
    }));
    client.call(id, select).await.unwrap();
    // One body over the broker's frame size, so that it goes in pieces.
    let bodies = [b"first".to_vec(), vec![b'x'; 300_000], b"{}".to_vec()];
    for (n, body) in bodies.iter().enumerate() {
        let properties = AMQPProperties::default().with_message_id(format!("m{n}").into());
        let number = client
            .connection()
            .publish(id, "", &queue, false, properties, body);
        assert_eq!(number, Ok(Some(n as u64 + 1)));
    }
    let mut confirmed = 0;
    while confirmed < 3 {
        match next(&mut client).await {
            Event::Confirm {
                number,
                multiple,
                ack: true,
                ..
            } => {
                confirmed = if multiple {
                    number
                } else {
                    confirmed.max(number)
                };
            }
            other => panic!("not a confirm: {other:?}"),
        }
    }
    let qos = basic::Qos {
        prefetch_count: 10,
        global: false,
    };
    client
        .call(id, AMQPClass::Basic(basic::AMQPMethod::Qos(qos)))
        .await
        .unwrap();
    client.call(id, consume(&queue, "test")).await.unwrap();
    let mut last = 0;
    for (n, body) in bodies.iter().enumerate() {
        let Event::Delivery(delivery) = next(&mut client).await else {
            panic!("not a delivery");
        };
        assert_eq!(&delivery.body, body);
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        assert_eq!(message_id, Some(format!("m{n}")));
        assert_eq!(delivery.routing_key, queue);
        last = delivery.delivery_tag;
    }
    client.connection().ack(id, last, true).unwrap();
    // Nothing is left: cancelling, then deleting the queue, finds it empty.
    let cancel = basic::Cancel {
        consumer_tag: "test".into(),
        nowait: false,
    };
    client
        .call(id, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)))
        .await
        .unwrap();
    let delete = queue::Delete {
        queue: queue.as_str().into(),
        if_unused: false,
        if_empty: true,
        nowait: false,
    };
    let answer = client
        .call(id, AMQPClass::Queue(queue::AMQPMethod::Delete(delete)))
        .await;
    let Ok(AMQPClass::Queue(queue::AMQPMethod::DeleteOk(deleted))) = answer else {
        panic!("queue not deleted: {answer:?}");
    };
    assert_eq!(deleted.message_count, 0, "every message acknowledged");
    client.connection().close(200, "done").unwrap();
    assert_eq!(
        next(&mut client).await,
        Event::Closed {
            code: 200,
            text: String::new()
        }
    );
}

#[tokio::test]
async fn a_channel_error_closes_that_channel_only() {
    let mut client = connect().await;
    let broken = client.open_channel().await.unwrap();
    let kept = client.open_channel().await.unwrap();
    let missing = unique_name("herald-amqp-missing");
    let passive = queue::Declare {
        passive: true,
        ..declare_fields(&missing)
    };
    let answer = client
        .call(
            broken,
            AMQPClass::Queue(queue::AMQPMethod::Declare(passive)),
        )
        .await;
    let Err(Error::Closed { code: 404, text }) = answer else {
        panic!("not refused: {answer:?}");
    };
    assert!(text.contains(&missing), "{text}");
    let queue = unique_name("herald-amqp");
    client
        .call(kept, declare(&queue))
        .await
        .expect("the other channel works on");
    let close = channel::Close {
        reply_code: 200,
        reply_text: "".into(),
        class_id: 0,
        method_id: 0,
    };
    client
        .connection()
        .call(kept, AMQPClass::Channel(channel::AMQPMethod::Close(close)))
        .unwrap();
    assert_eq!(
        next(&mut client).await,
        Event::ChannelClosed {
            channel: kept,
            code: 200,
            text: String::new()
        }
    );
}

fn declare_fields(queue: &str) -> queue::Declare {
    let AMQPClass::Queue(queue::AMQPMethod::Declare(declare)) = declare(queue) else {
        unreachable!()
    };
    declare
}

#[tokio::test]
async fn a_mandatory_publish_no_queue_takes_comes_back_then_is_confirmed() {
    let mut client = connect().await;
    let id = client.open_channel().await.unwrap();
    let select = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
        nowait: false,
    }));
    client.call(id, select).await.unwrap();
    let nowhere = unique_name("herald-amqp-nowhere");
    let properties = AMQPProperties::default().with_message_id("lost".into());
    let number = client
        .connection()
        .publish(id, "", &nowhere, true, properties, b"{}");
    assert_eq!(number, Ok(Some(1)));
    let Event::Returned(returned) = next(&mut client).await else {
        panic!("not returned");
    };
    assert_eq!(
        (returned.code, returned.routing_key.as_str()),
        (312, nowhere.as_str())
    );
    assert_eq!(returned.body, b"{}");
    let message_id = returned
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string());
    assert_eq!(message_id.as_deref(), Some("lost"));
    let confirmed = next(&mut client).await;
    assert!(
        matches!(
            confirmed,
            Event::Confirm {
                number: 1,
                ack: true,
                ..
            }
        ),
        "{confirmed:?}"
    );
    let closing = tokio::time::timeout(Duration::from_secs(20), client.close());
    closing
        .await
        .expect("closed within 20 s")
        .expect("closed as the protocol asks");
}

#[tokio::test]
async fn a_consumer_whose_queue_is_deleted_is_cancelled() {
    let mut client = connect().await;
    let id = client.open_channel().await.unwrap();
    let queue = unique_name("herald-amqp");
    client.call(id, declare(&queue)).await.unwrap();
    client.call(id, consume(&queue, "doomed")).await.unwrap();
    let other = client.open_channel().await.unwrap();
    let delete = queue::Delete {
        queue: queue.as_str().into(),
        if_unused: false,
        if_empty: false,
        nowait: false,
    };
    client
        .call(other, AMQPClass::Queue(queue::AMQPMethod::Delete(delete)))
        .await
        .unwrap();
    let cancelled = next(&mut client).await;
    assert_eq!(
        cancelled,
        Event::ConsumerCancelled {
            channel: id,
            tag: "doomed".into()
        }
    );
}
