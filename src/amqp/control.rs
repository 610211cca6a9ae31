//! The link's side of control requests: a delivery from the control queue
//! becomes a [`Request`] for the core, and the core's answer is published
//! and then the request acknowledged.
//!
//! A request is acknowledged once its answer is published, confirmed or
//! not, rather than when it arrives: the control channel's prefetch then
//! bounds the requests Herald holds, and a request taken by a connection
//! that is lost before it answered goes back to the queue and is answered
//! on the next. An answer the broker refuses is not retried (a requester
//! waits with a timeout and asks again; a request is cheap to repeat), nor
//! is its request requeued, which could loop on a reply_to that is gone.

use std::sync::Arc;

use lapin::message::Delivery as AmqpDelivery;
use lapin::options::BasicAckOptions;
use lapin::{BasicProperties, Channel};

use super::channel::publish;
use crate::config::AmqpConfig;
use crate::core::{Destination, Publish, Request, RequestId};

/// The request a delivery of the control queue carries, and the properties
/// a dead letter of it keeps.
pub fn request_of(delivery: AmqpDelivery, generation: u64) -> (Request, BasicProperties) {
    let properties = delivery.properties;
    let request = Request {
        id: RequestId {
            generation,
            tag: delivery.delivery_tag,
        },
        payload: delivery.data,
        reply_to: properties.reply_to().as_ref().map(|to| to.to_string()),
        correlation_id: properties
            .correlation_id()
            .as_ref()
            .map(|id| id.to_string()),
        user_id: super::unsettled::user_id(&properties),
        received_at: std::time::SystemTime::now(),
    };
    (request, properties)
}

/// The request an answer (a reply or a dead letter) is for, if it is one.
pub fn answered(message: &Publish) -> Option<RequestId> {
    match &message.destination {
        Destination::Reply { request, .. } | Destination::DeadRequest { request, .. } => {
            Some(*request)
        }
        Destination::Events { .. } | Destination::DeadLetter { .. } | Destination::Job { .. } => {
            None
        }
    }
}

/// Publishes an answer and then acknowledges its request.
pub async fn answer(
    publish_channel: Channel,
    control: Channel,
    config: Arc<AmqpConfig>,
    message: Publish,
    request: RequestId,
    kept: Option<BasicProperties>,
) {
    if let Err(message) = publish(publish_channel, config, message, kept, None).await {
        tracing::warn!(destination = ?message.destination, "control answer not confirmed; the requester will time out");
    }
    if let Err(e) = control
        .basic_ack(request.tag, BasicAckOptions::default())
        .await
    {
        tracing::warn!(error = %e, "control request not acknowledged; the broker will redeliver it");
    }
}
