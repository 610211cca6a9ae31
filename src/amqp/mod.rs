//! The half of Herald that faces the business applications: the jobs queue
//! it consumes, the dead-letter queue, and the events exchange it reports to.
//!
//! lapin runs its own I/O thread; Herald's state never leaves the event
//! loop. Publishing with confirms happens in one publisher task so that the
//! loop never waits for the broker.

mod publisher;
mod topology;

use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer};

pub use lapin::message::Delivery;
pub use lapin::Acker;
pub use publisher::{Outgoing, Publisher};

use crate::config::AmqpConfig;

#[derive(Debug, thiserror::Error)]
#[error("AMQP: {0}")]
pub struct AmqpError(#[from] lapin::Error);

/// An open broker connection: the jobs consumer and the publisher.
pub struct Broker {
    pub connection: Connection,
    pub consumer: Consumer,
    pub publisher: Publisher,
}

impl Broker {
    pub async fn connect(config: &AmqpConfig) -> Result<Broker, AmqpError> {
        let connection =
            Connection::connect(config.url.expose(), ConnectionProperties::default()).await?;
        let consume_channel = connection.create_channel().await?;
        let publish_channel = connection.create_channel().await?;
        topology::declare(&consume_channel, config).await?;
        consume_channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        publish_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumer = consume_channel
            .basic_consume(
                config.jobs_queue.as_str().into(),
                "herald".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let publisher = Publisher::spawn(publish_channel, config);
        Ok(Broker {
            connection,
            consumer,
            publisher,
        })
    }
}
