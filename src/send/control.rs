//! `herald presence`, `herald online`, `herald status`, `herald cancel`
//! and `herald group`: one control
//! request each, published to `amqp.control_queue` the way an application
//! does it, and the reply printed as Herald wrote it (JSON).
//!
//! The reply comes by RabbitMQ's direct reply-to: the request's `reply_to`
//! is `amq.rabbitmq.reply-to`, and the same channel consumes that
//! pseudo-queue (without acknowledgements, as RabbitMQ requires) before
//! publishing, so no queue is declared and nothing is left behind.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};
use tokio::time::timeout;

use super::broker::Link;
use super::SendError;
use crate::config::Config;
use crate::control::{Reply, Request};

/// RabbitMQ's pseudo-queue of direct replies.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Consumes `channel`'s direct replies: requests published on the same
/// channel with [`request_properties`] are answered here. RabbitMQ requires
/// the consumer to take them without acknowledgements.
pub async fn direct_replies(channel: &Channel) -> Result<Consumer, lapin::Error> {
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    channel
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
}

/// The properties of a JSON control request answered by direct reply-to
/// with `correlation_id`.
pub fn request_properties(correlation_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_reply_to(DIRECT_REPLY_TO.into())
        .with_correlation_id(correlation_id.into())
}

/// Sends `request` to Herald's control queue and waits up to `wait` for
/// the reply.
pub async fn ask(config: &Config, request: &Request, wait: Duration) -> Result<Reply, SendError> {
    let amqp = &config.amqp;
    let secs = wait.as_secs();
    let link = timeout(wait, Link::open(amqp))
        .await
        .map_err(|_| SendError::Timeout {
            secs,
            what: "connecting to the broker",
        })??;
    let result = timeout(wait, exchange(&link, &amqp.control_queue, request, wait))
        .await
        .unwrap_or(Err(SendError::Timeout {
            secs,
            what: "waiting for Herald's reply (is Herald running and connected?)",
        }));
    link.close().await;
    result
}

async fn exchange(
    link: &Link,
    queue: &str,
    request: &Request,
    wait: Duration,
) -> Result<Reply, SendError> {
    let amqp = |what| move |source| SendError::Amqp { what, source };
    let channel = link.channel();
    let mut replies = direct_replies(channel)
        .await
        .map_err(amqp("cannot consume direct replies"))?;
    let correlation_id = format!("herald-cli-{}", std::process::id());
    let properties = request_properties(&correlation_id)
        // Nobody waits for the answer after that: a Herald that is down
        // now must not find the request when it starts.
        .with_expiration(wait.as_millis().to_string().as_str().into());
    link.publish(queue, "amqp.control_queue", &request.to_json(), properties)
        .await?;
    while let Some(delivery) = replies.next().await {
        let delivery = delivery.map_err(amqp("reading the reply"))?;
        let ours = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.as_str())
            == Some(correlation_id.as_str());
        if ours {
            return serde_json::from_slice(&delivery.data)
                .map_err(|e| SendError::Broker(format!("a reply that is not a reply: {e}")));
        }
    }
    Err(SendError::Broker(
        "the broker closed the reply consumer".into(),
    ))
}
