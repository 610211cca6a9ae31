//! RabbitMQ helpers (lapin 4) for integration tests.
//!
//! The broker is `amqp://guest:guest@127.0.0.1:5672/%2f` unless
//! `HERALD_TEST_AMQP_URL` says otherwise. An unreachable broker panics with a
//! message saying so (tests never skip). Use [`unique_name`] for every queue
//! and exchange a test creates so that parallel tests never share one.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use serde_json::Value;
use tokio::time::Instant;

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

/// One message taken from a queue.
#[derive(Debug, Clone)]
pub struct AmqpMessage {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// The AMQP headers table converted to JSON (`{}` if none); e.g. the
    /// `x-death` entries RabbitMQ adds to dead-lettered messages.
    pub headers: Value,
    pub properties: BasicProperties,
}

impl AmqpMessage {
    fn from_parts(
        exchange: &str,
        routing_key: &str,
        body: Vec<u8>,
        properties: BasicProperties,
    ) -> Self {
        let headers = properties
            .headers()
            .as_ref()
            .map(field_table_to_json)
            .unwrap_or_else(|| Value::Object(Default::default()));
        AmqpMessage {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            body,
            headers,
            properties,
        }
    }

    /// The body parsed as JSON (panics if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "message body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
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

/// A private, exclusive, auto-delete queue bound to a durable topic exchange:
/// sees every event published there after `bind` returned.
pub struct EventTap {
    pub exchange: String,
    pub queue: String,
    connection: Connection,
    consumer: Consumer,
}

impl EventTap {
    /// Declares the durable topic `exchange` (idempotent) and binds a fresh
    /// exclusive auto-delete queue to it with `routing_key_pattern` (topic
    /// syntax: `job.*`, `#`).
    pub async fn bind(exchange: &str, routing_key_pattern: &str) -> EventTap {
        Self::bind_at(&amqp_url(), exchange, routing_key_pattern).await
    }

    /// Like [`EventTap::bind`], on the broker at `url`.
    pub async fn bind_at(url: &str, exchange: &str, routing_key_pattern: &str) -> EventTap {
        let connection = connect_to(url).await;
        let ch = connection
            .create_channel()
            .await
            .expect("create AMQP channel");
        declare_topic_exchange(&ch, exchange).await;
        let queue = unique_name("herald-test-tap");
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let (arguments, key) = (FieldTable::default(), routing_key_pattern);
        declare_and_bind(&ch, &queue, options, arguments, exchange, key).await;
        let consumer = ch
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume tap queue");
        EventTap {
            exchange: exchange.to_string(),
            queue,
            connection,
            consumer,
        }
    }

    /// The next event as `(routing_key, JSON body)`, or None after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, Value)> {
        self.next_message(timeout)
            .await
            .map(|m| (m.routing_key.clone(), m.json()))
    }

    /// The next event as a whole [`AmqpMessage`], or None after `timeout`.
    pub async fn next_message(&mut self, timeout: Duration) -> Option<AmqpMessage> {
        match tokio::time::timeout(timeout, self.consumer.next()).await {
            Ok(Some(Ok(d))) => Some(AmqpMessage::from_parts(
                d.exchange.as_str(),
                d.routing_key.as_str(),
                d.data,
                d.properties,
            )),
            Ok(Some(Err(e))) => panic!("event tap on {:?} failed: {e}", self.exchange),
            Ok(None) => panic!("event tap on {:?} was closed", self.exchange),
            Err(_) => None,
        }
    }

    /// Skips events until one with `routing_key` arrives (within `timeout`
    /// overall) and returns its JSON body.
    pub async fn next_with_key(&mut self, routing_key: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (key, body) = self.next(left).await?;
            if key == routing_key {
                return Some(body);
            }
        }
    }

    /// Skips events until one with `routing_key` whose JSON body `matches`
    /// arrives (within `timeout` overall) and returns that body.
    pub async fn next_matching(
        &mut self,
        routing_key: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let body = self.next_with_key(routing_key, left).await?;
            if matches(&body) {
                return Some(body);
            }
        }
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// Converts an AMQP field table (headers) to JSON: strings, numbers, bools,
/// arrays and nested tables as themselves; timestamps as seconds; byte arrays
/// as lossy UTF-8.
pub fn field_table_to_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), amqp_value_to_json(v)))
            .collect(),
    )
}

fn amqp_value_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Float(f) => (*f as f64).into(),
        AMQPValue::Double(f) => (*f).into(),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_string()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::FieldArray(a) => {
            Value::Array(a.as_slice().iter().map(amqp_value_to_json).collect())
        }
        AMQPValue::Timestamp(t) => (*t).into(),
        AMQPValue::FieldTable(t) => field_table_to_json(t),
        AMQPValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b.as_slice()).into_owned())
        }
        other => Value::String(format!("{other:?}")),
    }
}
