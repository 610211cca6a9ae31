//! Queues and exchange Herald relies on, declared (idempotently) at connect.

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use crate::config::AmqpConfig;

pub async fn declare(channel: &Channel, config: &AmqpConfig) -> Result<(), lapin::Error> {
    for queue in [&config.jobs_queue, &config.dead_letter_queue] {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await?;
    }
    channel
        .exchange_declare(
            config.events_exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}
