//! A live broker connection: the jobs consumer on one channel, the urgent
//! jobs' consumer on another, the control requests' on a third, publishing
//! with confirms on a fourth.

use std::sync::Arc;

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

use super::topology::{self, OpenError};
use super::BrokerAddress;
use crate::config::AmqpConfig;
use crate::core::{Destination, Lane, Publish};

/// Header of a dead letter that says why the job was refused.
pub const ERROR_HEADER: &str = "x-herald-error";

/// Control requests taken before earlier ones are answered, at most.
const CONTROL_PREFETCH: u16 = 16;
/// Urgent jobs taken before earlier ones are settled, at most: they pass
/// the job window, which the jobs queue's may have filled.
const URGENT_PREFETCH: u16 = 64;

pub struct Open {
    pub connection: Connection,
    pub consume: Channel,
    pub consumer: Consumer,
    /// Urgent jobs have a channel of their own: their acknowledgements go
    /// as they are settled, not behind a big job's of the jobs queue
    /// (acknowledgements are `multiple`, in delivery order per channel).
    pub urgent: Channel,
    pub urgent_consumer: Consumer,
    /// Control requests have a channel of their own: their delivery tags
    /// must not mix with the jobs', which are acknowledged with `multiple`
    /// in runs, and their prefetch is not the job window's.
    pub control: Channel,
    pub control_consumer: Consumer,
    pub publish: Channel,
}

impl Open {
    pub async fn connect(
        config: &AmqpConfig,
        broker: &BrokerAddress,
        name: &str,
    ) -> Result<Open, OpenError> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = super::connect(config, broker, properties).await?;
        let consume = connection.create_channel().await?;
        topology::declare(&consume, config).await?;
        let consumer =
            consume_from(&consume, &config.jobs_queue, "herald", config.prefetch).await?;
        let urgent = connection.create_channel().await?;
        let urgent_consumer = consume_from(
            &urgent,
            &config.urgent_queue,
            "herald-urgent",
            URGENT_PREFETCH,
        )
        .await?;
        let control = connection.create_channel().await?;
        let control_consumer = consume_from(
            &control,
            &config.control_queue,
            "herald-control",
            CONTROL_PREFETCH,
        )
        .await?;
        let publish = open_publish(&connection, config).await?;
        Ok(Open {
            connection,
            consume,
            consumer,
            urgent,
            urgent_consumer,
            control,
            control_consumer,
            publish,
        })
    }

    /// The channel a lane's jobs are consumed (and acknowledged) on.
    pub fn jobs_channel(&self, lane: Lane) -> &Channel {
        match lane {
            Lane::Urgent => &self.urgent,
            Lane::Normal => &self.consume,
        }
    }

    pub async fn reopen_publish(&mut self, config: &AmqpConfig) -> Result<(), OpenError> {
        self.publish = open_publish(&self.connection, config).await?;
        Ok(())
    }
}

/// Consumes `queue` on `channel`, at most `prefetch` unacknowledged.
async fn consume_from(
    channel: &Channel,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> Result<Consumer, OpenError> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(consumer)
}

async fn open_publish(connection: &Connection, config: &AmqpConfig) -> Result<Channel, OpenError> {
    let channel = connection.create_channel().await?;
    topology::declare(&channel, config).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes and waits for the confirm: the message's id once confirmed,
/// or the message back if the broker did not confirm it. A dead letter
/// keeps the job's own properties (`kept`: message id, correlation id,
/// timestamp, headers) and says why in [`ERROR_HEADER`].
pub async fn publish(
    channel: Channel,
    config: Arc<AmqpConfig>,
    message: Publish,
    kept: Option<BasicProperties>,
) -> Result<Option<u64>, Publish> {
    let (exchange, routing_key, properties) = match &message.destination {
        Destination::Events { routing_key } => (
            config.events_exchange.as_str(),
            routing_key.as_str(),
            BasicProperties::default()
                .with_content_type(ShortString::from("application/json"))
                .with_delivery_mode(2),
        ),
        Destination::Reply {
            reply_to,
            correlation_id,
            ..
        } => {
            let mut properties =
                BasicProperties::default().with_content_type(ShortString::from("application/json"));
            if let Some(id) = correlation_id {
                properties = properties.with_correlation_id(ShortString::from(id.as_str()));
            }
            ("", reply_to.as_str(), properties)
        }
        Destination::DeadLetter { reason, .. } | Destination::DeadRequest { reason, .. } => {
            let kept = kept.unwrap_or_default();
            let mut headers = kept.headers().clone().unwrap_or_default();
            headers.insert(
                ERROR_HEADER.into(),
                AMQPValue::LongString(reason.clone().into()),
            );
            (
                "",
                config.dead_letter_queue.as_str(),
                kept.with_headers(headers).with_delivery_mode(2),
            )
        }
    };
    let result = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            &message.payload,
            properties,
        )
        .await;
    let confirmed = match result {
        Ok(confirm) => match confirm.await {
            Ok(confirmation) => confirmation.is_ack(),
            Err(e) => {
                tracing::debug!(error = %e, routing_key, "publish not confirmed");
                false
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, routing_key, "publish failed");
            false
        }
    };
    if confirmed {
        Ok(message.id)
    } else {
        Err(message)
    }
}
