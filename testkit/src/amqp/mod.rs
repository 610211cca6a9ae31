//! RabbitMQ helpers (lapin 4) for integration tests.
//!
//! The broker is `amqp://guest:guest@127.0.0.1:5672/%2f` unless
//! `HERALD_TEST_AMQP_URL` says otherwise. An unreachable broker panics with a
//! message saying so (tests never skip). Use [`unique_name`] for every queue
//! and exchange a test creates so that parallel tests never share one.

use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use tokio::time::Instant;

pub mod bare;
mod message;
mod tap;

pub use message::{field_table_to_json, AmqpMessage};
pub use tap::EventTap;

/// The shared broker's connections of the process `pid` (Herald names its
/// connection after its pid), by the connection process rabbitmqctl knows
/// them by.
pub fn broker_connections_of(pid: u32) -> Vec<String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl must be installed next to the RabbitMQ the tests use");
    assert!(
        output.status.success(),
        "rabbitmqctl list_connections failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(&format!(" pid {pid}\"")))
        .filter_map(|line| line.split('\t').next())
        .map(str::to_string)
        .collect()
}

/// Has the shared broker close `connection` (from [`broker_connections_of`]).
pub fn close_broker_connection(connection: &str) {
    let closed = std::process::Command::new("rabbitmqctl")
        .args(["-q", "close_connection", connection, "herald test"])
        .status()
        .expect("rabbitmqctl");
    assert!(closed.success(), "rabbitmqctl close_connection failed");
}

/// Default broker URL (RabbitMQ on loopback, default vhost).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker URL for tests: `HERALD_TEST_AMQP_URL` or [`DEFAULT_AMQP_URL`].
pub fn amqp_url() -> String {
    std::env::var("HERALD_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_string())
}

/// `prefix` plus a random suffix, e.g. "jobs-3f9c0a1b2c3d4e5f": a queue or
/// exchange name no other test (or earlier run) uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", crate::random_hex())
}

/// Connects to [`amqp_url`], panicking with a clear message if RabbitMQ does
/// not answer.
pub async fn connect() -> Connection {
    connect_to(&amqp_url()).await
}

/// Connects to the broker at `url` (a private one, say), panicking with a
/// clear message if it does not answer.
pub async fn connect_to(url: &str) -> Connection {
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "cannot connect to RabbitMQ at {url}: {e}. These tests need a running broker \
             (.ci/run starts one; or set HERALD_TEST_AMQP_URL)"
        ),
        Err(_) => panic!("connecting to RabbitMQ at {url} timed out after 10 s"),
    }
}

/// A connection plus one channel with publisher confirms enabled.
pub struct Amqp {
    pub connection: Connection,
    pub channel: Channel,
}

impl Amqp {
    pub async fn connect() -> Amqp {
        Self::connect_to(&amqp_url()).await
    }

    /// Like [`Amqp::connect`], to the broker at `url`.
    pub async fn connect_to(url: &str) -> Amqp {
        let connection = connect_to(url).await;
        let channel = connection
            .create_channel()
            .await
            .expect("create AMQP channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("enable publisher confirms");
        Amqp {
            connection,
            channel,
        }
    }

    /// Publishes `body` as persistent JSON to `exchange` with `routing_key`
    /// (`mandatory`, so an unroutable message is an error) and waits for the
    /// broker's confirm. Panics if it is not routed or not acked.
    pub async fn publish_json_to(&self, exchange: &str, routing_key: &str, body: &Value) {
        self.publish_to(
            exchange,
            routing_key,
            &serde_json::to_vec(body).unwrap(),
            json_properties(),
        )
        .await;
    }

    /// Publishes raw bytes with the given properties (see `publish_json_to`).
    pub async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload,
                properties,
            )
            .await
            .unwrap_or_else(|e| panic!("publish to {exchange:?}/{routing_key:?}: {e}"))
            .await
            .unwrap_or_else(|e| panic!("publisher confirm for {exchange:?}/{routing_key:?}: {e}"));
        assert!(
            confirm.is_ack(),
            "broker nacked the message to {exchange:?}/{routing_key:?}"
        );
        if let Some(returned) = confirm.take_message() {
            panic!(
                "message to exchange {exchange:?} with routing key {routing_key:?} was not routed \
                 to any queue (does the queue exist yet?): {:?}",
                returned.reply_text
            );
        }
    }

    /// Publishes JSON to `queue` through the default exchange (see
    /// `publish_json_to`). The queue must exist.
    pub async fn publish_json(&self, queue: &str, body: &Value) {
        self.publish_json_to("", queue, body).await;
    }

    /// Whether `queue` exists (passive declare on a throw-away channel).
    pub async fn queue_exists(&self, queue: &str) -> bool {
        self.message_count(queue).await.is_some()
    }

    /// Waits until `queue` exists (e.g. until Herald has declared it).
    pub async fn wait_for_queue(&self, queue: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.queue_exists(queue).await {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Message count of `queue` (passive declare), None if it does not exist.
    pub async fn message_count(&self, queue: &str) -> Option<u32> {
        let ch = self
            .connection
            .create_channel()
            .await
            .expect("create AMQP channel");
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        let _ = ch.close(200, "bye".into()).await;
        Some(q.message_count())
    }

    /// Binds a new queue that refuses every message (`x-max-length` 0 with
    /// `reject-publish` overflow) to `exchange` for `routing_key`: while it
    /// exists the broker nacks every publish routed there. Returns its name.
    pub async fn bind_refusing_queue(&self, exchange: &str, routing_key: &str) -> String {
        let queue = unique_name("herald-test-refusing");
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongInt(0));
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        let options = QueueDeclareOptions::default();
        declare_and_bind(
            &self.channel,
            &queue,
            options,
            arguments,
            exchange,
            routing_key,
        )
        .await;
        queue
    }

    /// Deletes `exchange` (its bindings go with it; errors ignored).
    pub async fn delete_exchange(&self, exchange: &str) {
        if let Ok(ch) = self.connection.create_channel().await {
            let _ = ch
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await;
            let _ = ch.close(200, "bye".into()).await;
        }
    }

    /// Whether `exchange` exists (passive declare on a throw-away channel).
    pub async fn exchange_exists(&self, exchange: &str) -> bool {
        let Ok(ch) = self.connection.create_channel().await else {
            return false;
        };
        let options = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        let declared = ch
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                options,
                FieldTable::default(),
            )
            .await
            .is_ok();
        let _ = ch.close(200, "bye".into()).await;
        declared
    }

    /// Declares the durable topic `exchange` and a new durable queue bound
    /// to it for `routing_key_pattern`; returns the queue's name. Unlike an
    /// [`EventTap`], it keeps what it caught across a broker restart.
    pub async fn bind_durable_queue(&self, exchange: &str, routing_key_pattern: &str) -> String {
        let queue = unique_name("herald-test-durable-tap");
        declare_topic_exchange(&self.channel, exchange).await;
        let options = QueueDeclareOptions::durable();
        let (arguments, key) = (FieldTable::default(), routing_key_pattern);
        declare_and_bind(&self.channel, &queue, options, arguments, exchange, key).await;
        queue
    }

    /// Like [`Amqp::bind_durable_queue`], a quorum queue: on a cluster it
    /// keeps what it caught when a node dies.
    pub async fn bind_quorum_queue(&self, exchange: &str, routing_key_pattern: &str) -> String {
        let queue = unique_name("herald-test-quorum-tap");
        declare_topic_exchange(&self.channel, exchange).await;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        let (options, key) = (QueueDeclareOptions::durable(), routing_key_pattern);
        declare_and_bind(&self.channel, &queue, options, arguments, exchange, key).await;
        queue
    }

    /// Takes every message from `queue` until none has come for `quiet`.
    pub async fn drain(&self, queue: &str, quiet: Duration) -> Vec<AmqpMessage> {
        let mut messages = Vec::new();
        while let Some(message) = self.get_one(queue, quiet).await {
            messages.push(message);
        }
        messages
    }

    /// Deletes `queue` (cleanup; errors ignored).
    pub async fn delete_queue(&self, queue: &str) {
        if let Ok(ch) = self.connection.create_channel().await {
            let _ = ch
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
            let _ = ch.close(200, "bye".into()).await;
        }
    }

    /// Fetches (and acks) one message from `queue`, polling until `timeout`.
    /// A queue that does not exist yet counts as empty.
    pub async fn get_one(&self, queue: &str, timeout: Duration) -> Option<AmqpMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let ch = self
                .connection
                .create_channel()
                .await
                .expect("create AMQP channel");
            // A missing queue closes the channel (404): poll again on a fresh one.
            if let Ok(Some(msg)) = ch.basic_get(queue.into(), BasicGetOptions::default()).await {
                let d = msg.delivery;
                d.acker
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack fetched message");
                let _ = ch.close(200, "bye".into()).await;
                return Some(AmqpMessage::from_parts(
                    d.exchange.as_str(),
                    d.routing_key.as_str(),
                    d.data,
                    d.properties,
                ));
            }
            let _ = ch.close(200, "bye".into()).await;
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// Persistent JSON message properties (delivery mode 2, application/json).
pub fn json_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}

/// Publishes JSON to `queue` (default exchange) on a fresh connection, with
/// publisher confirm. The queue must exist.
pub async fn publish_json(queue: &str, body: &Value) {
    let amqp = Amqp::connect().await;
    amqp.publish_json(queue, body).await;
    amqp.close().await;
}

/// Fetches one message from `queue` (e.g. a dead-letter queue) on a fresh
/// connection, waiting up to `timeout`.
pub async fn get_one(queue: &str, timeout: Duration) -> Option<AmqpMessage> {
    let amqp = Amqp::connect().await;
    let msg = amqp.get_one(queue, timeout).await;
    amqp.close().await;
    msg
}

/// Declares the durable topic `exchange` (idempotent: Herald declares it alike).
async fn declare_topic_exchange(channel: &Channel, exchange: &str) {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("declare topic exchange {exchange:?}: {e}"));
}

/// Declares `queue` and binds it to `exchange` for `routing_key`.
async fn declare_and_bind(
    channel: &Channel,
    queue: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
    exchange: &str,
    routing_key: &str,
) {
    channel
        .queue_declare(queue.into(), options, arguments)
        .await
        .unwrap_or_else(|e| panic!("declare queue {queue:?}: {e}"));
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("bind queue {queue:?} to {exchange:?}: {e}"));
}
