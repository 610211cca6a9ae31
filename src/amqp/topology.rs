//! Queues and exchange Herald relies on, declared (idempotently) at connect.

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ErrorKind, ExchangeKind};

use crate::config::{AmqpConfig, QueueType};

/// Why a connection could not be opened with its topology declared.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The queue exists with another type: RabbitMQ never changes it, so
    /// retrying cannot help until an operator moves the queue.
    #[error(
        "queue {queue:?} exists with another type than amqp.queue_type = \"{wanted}\", and \
         RabbitMQ cannot change the type of an existing queue: set amqp.queue_type to the \
         queue's type, or drain the queue, delete it and let Herald declare it again (see \
         \"Quorum queues\" in docs/operations.md); the broker said: {said}",
        wanted = .wanted.as_str()
    )]
    QueueTypeDiffers {
        queue: String,
        wanted: QueueType,
        said: String,
    },
    #[error("the broker cancelled the consumer of the jobs queue's lock queue (was it deleted?)")]
    LockCancelled,
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

/// The queue whose token lets one Herald at a time consume `jobs_queue`:
/// a single active consumer queue of at most one waiting message.
pub fn lock_queue(jobs_queue: &str) -> String {
    format!("{jobs_queue}.lock")
}

pub async fn declare(channel: &Channel, config: &AmqpConfig) -> Result<(), OpenError> {
    for queue in [
        &config.jobs_queue,
        &config.urgent_queue,
        &config.dead_letter_queue,
        &config.control_queue,
    ] {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                queue_arguments(config.queue_type),
            )
            .await
            .map_err(|e| explain(e, queue, config.queue_type))?;
    }
    let lock = lock_queue(&config.jobs_queue);
    channel
        .queue_declare(
            lock.as_str().into(),
            QueueDeclareOptions::durable(),
            lock_arguments(config.queue_type),
        )
        .await
        .map_err(|e| explain(e, &lock, config.queue_type))?;
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

/// Classic queues are declared without `x-queue-type`, as Herald always
/// declared them, so that queues of earlier versions stay equivalent.
fn queue_arguments(queue_type: QueueType) -> FieldTable {
    let mut arguments = FieldTable::default();
    if queue_type == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(queue_type.as_str().into()),
        );
    }
    arguments
}

/// The lock queue's: one consumer at a time gets its messages, and at
/// most one token waits in it (a Herald puts one in at every connect).
fn lock_arguments(queue_type: QueueType) -> FieldTable {
    let mut arguments = queue_arguments(queue_type);
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    arguments
}

/// A refused declaration that names `x-queue-type` said that the queue has
/// another type (RabbitMQ: `PRECONDITION_FAILED - inequivalent arg
/// 'x-queue-type'`).
fn explain(error: lapin::Error, queue: &str, wanted: QueueType) -> OpenError {
    if let ErrorKind::ProtocolError(refusal) = error.kind() {
        let said = refusal.get_message().as_str();
        let precondition = AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED);
        if *refusal.kind() == precondition && said.contains("x-queue-type") {
            return OpenError::QueueTypeDiffers {
                queue: queue.to_string(),
                wanted,
                said: said.to_string(),
            };
        }
    }
    OpenError::Amqp(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_queue_has_one_active_consumer_one_token_and_the_queues_type() {
        assert_eq!(lock_queue("broadcast.jobs"), "broadcast.jobs.lock");
        for queue_type in [QueueType::Classic, QueueType::Quorum] {
            let arguments = lock_arguments(queue_type);
            let get = |key: &str| arguments.inner().get(key).cloned();
            assert_eq!(
                get("x-single-active-consumer"),
                Some(AMQPValue::Boolean(true))
            );
            assert_eq!(get("x-max-length"), Some(AMQPValue::LongLongInt(1)));
            let type_of_queues = queue_arguments(queue_type);
            assert_eq!(
                get("x-queue-type").as_ref(),
                type_of_queues.inner().get("x-queue-type")
            );
        }
        let quorum = lock_arguments(QueueType::Quorum);
        assert_eq!(
            quorum.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
    }
}
