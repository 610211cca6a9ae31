//! Taps on a topic exchange: what Herald publishes there (reports, presence
//! and message events), seen by a test.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use serde_json::Value;
use tokio::time::Instant;

use super::{
    amqp_url, connect_to, declare_and_bind, declare_topic_exchange, unique_name, AmqpMessage,
};

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
