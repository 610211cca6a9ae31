//! The broker side of `herald send`: one connection, one channel in
//! confirm mode, a private queue for the report.

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};

use super::SendError;
use crate::config::{AmqpConfig, ConfigError};

/// One connection and one channel in confirm mode.
pub(super) struct Link {
    pub(super) connection: Connection,
    channel: Channel,
    /// The broker user it logged in as, if the URL says: what it
    /// publishes carries it as its `user_id`, so that Herald applies that
    /// user's `[producers]` entry (the broker refuses any other user_id).
    user: Option<String>,
}

fn amqp_error(what: &'static str) -> impl FnOnce(lapin::Error) -> SendError {
    move |source| SendError::Amqp { what, source }
}

impl Link {
    /// Connects to the first of the configured brokers that answers.
    pub(super) async fn open(config: &AmqpConfig) -> Result<Link, SendError> {
        let brokers = crate::amqp::addresses(config).map_err(ConfigError::Invalid)?;
        let Some((last, others)) = brokers.split_last() else {
            return Err(ConfigError::Invalid("no broker to connect to".into()).into());
        };
        let connect =
            |broker| crate::amqp::connect(config, broker, ConnectionProperties::default());
        for broker in others {
            match connect(broker).await {
                Ok(connection) => return Link::on(connection, broker.user()).await,
                Err(e) => {
                    eprintln!("cannot connect to the broker at {broker} ({e}); trying the next")
                }
            }
        }
        // The URL is not in the message: it may hold a password.
        let connection = connect(last).await.map_err(amqp_error(
            "cannot connect to the broker (amqp.url or amqp.urls)",
        ))?;
        Link::on(connection, last.user()).await
    }

    async fn on(connection: Connection, user: Option<String>) -> Result<Link, SendError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(amqp_error("cannot open a channel"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp_error("cannot enable publisher confirms"))?;
        Ok(Link {
            connection,
            channel,
            user,
        })
    }

    /// A server-named, exclusive, auto-delete queue bound to the events
    /// exchange for `key` (`job.report`, or `job.report.#` for the names
    /// too): it sees every report published from now on and disappears with
    /// the connection.
    pub(super) async fn bind_reports(
        &self,
        exchange: &str,
        key: &str,
    ) -> Result<Consumer, SendError> {
        let private = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = self
            .channel
            .queue_declare("".into(), private, FieldTable::default())
            .await
            .map_err(amqp_error("cannot declare a queue for the report"))?;
        self.channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error(
                "cannot bind to the events exchange (amqp.events_exchange; Herald declares it when it starts)",
            ))?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        self.channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("cannot consume the report queue"))
    }

    /// Publishes `payload` to `queue` (Herald's `key` in `[amqp]`),
    /// `mandatory`, and waits for the broker's confirm: an error unless the
    /// broker has it in `queue`.
    pub(super) async fn publish(
        &self,
        queue: &str,
        key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), SendError> {
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let properties = match &self.user {
            Some(user) => properties.with_user_id(user.as_str().into()),
            None => properties,
        };
        let confirmation = self
            .channel
            .basic_publish("".into(), queue.into(), mandatory, payload, properties)
            .await
            .map_err(amqp_error("cannot publish"))?
            .await
            .map_err(amqp_error("no confirm from the broker"))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(SendError::Broker(format!(
                    "the broker has no queue {queue:?} ({key}; Herald declares it when it \
                     starts): the message was returned, {}",
                    returned.reply_text
                )))
            }
            Confirmation::Nack(None) => Err(SendError::Broker(
                "the broker refused the message (negative confirm)".into(),
            )),
            Confirmation::NotRequested => Err(SendError::Broker(
                "the broker did not confirm the message".into(),
            )),
        }
    }

    /// The channel, in confirm mode.
    pub(super) fn channel(&self) -> &Channel {
        &self.channel
    }

    pub(super) async fn close(self) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.connection.close(200, "bye".into()).await;
    }
}
