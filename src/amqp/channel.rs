//! A live broker connection: the jobs consumer on one channel, the urgent
//! jobs' consumer on another, the control requests' on a third, publishing
//! with confirms on a fourth.
//!
//! Only one Herald consumes a jobs queue: the one that holds its token.
//! The token is a message in the queue's lock queue ([`topology`]), which
//! every Herald consumes, unacknowledged, one at a time: with RabbitMQ's
//! single active consumer only one connection gets deliveries from it, so
//! only one holds a token, until its connection closes (even when its
//! process was killed) and the broker hands the token to the next. The
//! jobs consumer is exclusive too, which on a classic queue also keeps
//! out a consumer that takes no token (RabbitMQ 3.10 does not enforce an
//! exclusive consumer on a quorum queue, hence the token).

use std::sync::Arc;

use futures_util::StreamExt;

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
/// The header in which a dead letter names its producer: the `user_id` it
/// was published with (a dead letter cannot carry it as its own).
pub const PRODUCER_HEADER: &str = "x-herald-user-id";

/// Control requests taken before earlier ones are answered, at most.
const CONTROL_PREFETCH: u16 = 16;
/// Urgent jobs taken before earlier ones are settled, at most: they pass
/// the job window, which the jobs queue's may have filled.
const URGENT_PREFETCH: u16 = 64;

pub struct Open {
    pub connection: Connection,
    /// Holds the token, unacknowledged, as long as the connection lives
    /// (a consumer keeps its channel open); ends if the broker cancels it.
    pub lock_consumer: Consumer,
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

/// A connection with the topology declared, waiting for the token.
pub struct Connected {
    connection: Connection,
    lock_consumer: Consumer,
}

impl Connected {
    /// Connects, declares the topology, puts a token in the lock queue (at
    /// most one waits there: any other is dropped) and queues up for one.
    pub async fn connect(
        config: &AmqpConfig,
        broker: &BrokerAddress,
        name: &str,
    ) -> Result<Connected, OpenError> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = super::connect(config, broker, properties).await?;
        let lock = connection.create_channel().await?;
        topology::declare(&lock, config).await?;
        let queue = topology::lock_queue(&config.jobs_queue);
        lock.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"token",
            BasicProperties::default(),
        )
        .await?;
        let lock_consumer = consume_from(&lock, &queue, "herald-lock", 1, false).await?;
        Ok(Connected {
            connection,
            lock_consumer,
        })
    }

    /// Waits for the token, then consumes the jobs (exclusively) and the
    /// control requests, and opens the publish channel.
    pub async fn activate(mut self, config: &AmqpConfig) -> Result<Open, OpenError> {
        match self.lock_consumer.next().await {
            Some(Ok(_token)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(OpenError::LockCancelled),
        }
        let connection = self.connection;
        let consume = connection.create_channel().await?;
        let (jobs, prefetch) = (&config.jobs_queue, config.prefetch);
        let consumer = consume_from(&consume, jobs, "herald", prefetch, true).await?;
        let urgent = connection.create_channel().await?;
        let (queue, prefetch) = (&config.urgent_queue, URGENT_PREFETCH);
        let urgent_consumer = consume_from(&urgent, queue, "herald-urgent", prefetch, true).await?;
        let control = connection.create_channel().await?;
        let control_consumer = consume_from(
            &control,
            &config.control_queue,
            "herald-control",
            CONTROL_PREFETCH,
            false,
        )
        .await?;
        let publish = open_publish(&connection, config).await?;
        Ok(Open {
            connection,
            lock_consumer: self.lock_consumer,
            consume,
            consumer,
            urgent,
            urgent_consumer,
            control,
            control_consumer,
            publish,
        })
    }
}

impl Open {
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
/// timestamp, headers) and says why in [`ERROR_HEADER`]. A job Herald
/// queues itself carries `user`, the broker user of this connection, as
/// its `user_id`, so that it passes `[producers]` whatever they refuse.
pub async fn publish(
    channel: Channel,
    config: Arc<AmqpConfig>,
    message: Publish,
    kept: Option<BasicProperties>,
    user: Option<ShortString>,
) -> Result<Option<u64>, Publish> {
    let (exchange, routing_key, properties) = match &message.destination {
        Destination::Events { routing_key } => (
            config.events_exchange.as_str(),
            routing_key.as_str(),
            persistent_json(),
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
        Destination::Job { lane } => (
            "",
            match lane {
                Lane::Urgent => config.urgent_queue.as_str(),
                Lane::Normal => config.jobs_queue.as_str(),
            },
            match user {
                Some(user) => persistent_json().with_user_id(user),
                None => persistent_json(),
            },
        ),
        Destination::DeadLetter { reason, .. } | Destination::DeadRequest { reason, .. } => {
            let (kept, producer) = without_user_id(kept.unwrap_or_default());
            let mut headers = kept.headers().clone().unwrap_or_default();
            headers.insert(
                ERROR_HEADER.into(),
                AMQPValue::LongString(reason.clone().into()),
            );
            if let Some(producer) = producer {
                headers.insert(
                    PRODUCER_HEADER.into(),
                    AMQPValue::LongString(producer.into()),
                );
            }
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

/// A message's properties without its `user_id`, and that `user_id`: the
/// broker refuses a publish whose `user_id` is not the publishing
/// connection's user, and a dead letter is Herald's publish, not its
/// producer's. The producer is kept in [`PRODUCER_HEADER`] instead.
fn without_user_id(kept: BasicProperties) -> (BasicProperties, Option<String>) {
    let Some(user) = kept.user_id().clone() else {
        return (kept, None);
    };
    let mut rest = BasicProperties::default();
    if let Some(v) = kept.content_type() {
        rest = rest.with_content_type(v.clone());
    }
    if let Some(v) = kept.content_encoding() {
        rest = rest.with_content_encoding(v.clone());
    }
    if let Some(v) = kept.headers() {
        rest = rest.with_headers(v.clone());
    }
    if let Some(v) = kept.delivery_mode() {
        rest = rest.with_delivery_mode(*v);
    }
    if let Some(v) = kept.priority() {
        rest = rest.with_priority(*v);
    }
    if let Some(v) = kept.correlation_id() {
        rest = rest.with_correlation_id(v.clone());
    }
    if let Some(v) = kept.reply_to() {
        rest = rest.with_reply_to(v.clone());
    }
    if let Some(v) = kept.expiration() {
        rest = rest.with_expiration(v.clone());
    }
    if let Some(v) = kept.message_id() {
        rest = rest.with_message_id(v.clone());
    }
    if let Some(v) = kept.timestamp() {
        rest = rest.with_timestamp(*v);
    }
    if let Some(v) = kept.kind() {
        rest = rest.with_type(v.clone());
    }
    if let Some(v) = kept.app_id() {
        rest = rest.with_app_id(v.clone());
    }
    if let Some(v) = kept.cluster_id() {
        rest = rest.with_cluster_id(v.clone());
    }
    (rest, Some(user.to_string()))
}

/// What Herald publishes that must outlive a broker restart: reports and
/// events, and jobs it queues itself.
fn persistent_json() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
}
