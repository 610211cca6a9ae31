//! A live broker connection: the jobs consumer on one channel, the control
//! requests' consumer on another, publishing with confirms on a third.
//!
//! Only one Herald consumes a jobs queue: the one whose connection holds
//! the queue's lock, an exclusive queue named after it ([`lock_queue`]).
//! RabbitMQ refuses a second connection's declaration of it while the
//! first lives and deletes it when that connection closes, even when its
//! process was killed. The jobs consumer is exclusive too, which on a
//! classic queue also keeps out a consumer that takes no lock; RabbitMQ
//! 3.10 does not enforce an exclusive consumer on a quorum queue, hence
//! the lock queue. A connection that cannot have both is a standby's.

use std::sync::Arc;

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ErrorKind};

use super::topology::{self, OpenError};
use super::BrokerAddress;
use crate::config::AmqpConfig;
use crate::core::{Destination, Publish};

/// Header of a dead letter that says why the job was refused.
pub const ERROR_HEADER: &str = "x-herald-error";

/// Control requests taken before earlier ones are answered, at most.
const CONTROL_PREFETCH: u16 = 16;

pub struct Open {
    pub connection: Connection,
    pub consume: Channel,
    pub consumer: Consumer,
    /// Control requests have a channel of their own: their delivery tags
    /// must not mix with the jobs', which are acknowledged with `multiple`
    /// in runs, and their prefetch is not the job window's.
    pub control: Channel,
    pub control_consumer: Consumer,
    pub publish: Channel,
}

/// A connection with the topology declared, that consumes nothing yet.
pub struct Connected {
    connection: Connection,
}

/// What became of an attempt to take the jobs queue.
pub enum Activation {
    /// This connection holds the lock and consumes.
    Active(Box<Open>),
    /// Another connection holds the jobs queue: try again later.
    Standby(Box<Connected>),
}

impl Connected {
    pub async fn connect(
        config: &AmqpConfig,
        broker: &BrokerAddress,
        name: &str,
    ) -> Result<Connected, OpenError> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = super::connect(config, broker, properties).await?;
        let channel = connection.create_channel().await?;
        topology::declare(&channel, config).await?;
        Ok(Connected { connection })
    }

    /// Takes the jobs queue's lock and its exclusive consumer, then the
    /// control queue and the publish channel. Each try is on channels of
    /// its own: the broker closes a channel whose request it refuses.
    pub async fn activate(self, config: &AmqpConfig) -> Result<Activation, OpenError> {
        let connection = &self.connection;
        let lock = connection.create_channel().await?;
        let declared = lock
            .queue_declare(
                lock_queue(&config.jobs_queue).as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Err(e) if held_by_another(&e) => return Ok(Activation::Standby(Box::new(self))),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let consume = connection.create_channel().await?;
        let (jobs, prefetch) = (&config.jobs_queue, config.prefetch);
        let consumer = match consume_from(&consume, jobs, "herald", prefetch, true).await {
            Err(e) if held_by_another(&e) => return Ok(Activation::Standby(Box::new(self))),
            consumer => consumer?,
        };
        let control = connection.create_channel().await?;
        let control_consumer = consume_from(
            &control,
            &config.control_queue,
            "herald-control",
            CONTROL_PREFETCH,
            false,
        )
        .await?;
        let publish = open_publish(connection, config).await?;
        Ok(Activation::Active(Box::new(Open {
            connection: self.connection,
            consume,
            consumer,
            control,
            control_consumer,
            publish,
        })))
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// The exclusive queue whose holder consumes `jobs_queue`.
pub fn lock_queue(jobs_queue: &str) -> String {
    format!("{jobs_queue}.active")
}

/// Whether `error` is the broker's refusal because another connection
/// holds the lock (`RESOURCE_LOCKED`) or consumes the queue exclusively
/// (`ACCESS_REFUSED`).
fn held_by_another(error: &lapin::Error) -> bool {
    let ErrorKind::ProtocolError(refusal) = error.kind() else {
        return false;
    };
    [AMQPSoftError::RESOURCELOCKED, AMQPSoftError::ACCESSREFUSED]
        .into_iter()
        .any(|soft| *refusal.kind() == AMQPErrorKind::Soft(soft))
}

impl Open {
    pub async fn reopen_publish(&mut self, config: &AmqpConfig) -> Result<(), OpenError> {
        self.publish = open_publish(&self.connection, config).await?;
        Ok(())
    }
}

/// Consumes `queue` on `channel`, at most `prefetch` unacknowledged;
/// `exclusive`: no other consumer at the same time.
async fn consume_from(
    channel: &Channel,
    queue: &str,
    tag: &str,
    prefetch: u16,
    exclusive: bool,
) -> Result<Consumer, lapin::Error> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions {
                exclusive,
                ..BasicConsumeOptions::default()
            },
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
