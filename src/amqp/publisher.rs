//! Publishing with confirms, off the event loop: events, reports and dead
//! letters go through one task that pipelines publishes and, once the broker
//! confirms one, acknowledges the job it belongs to. A job is acknowledged
//! only after its report (or dead letter) is safely with the broker; if the
//! broker refuses it, the job goes back to the queue instead.

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Acker;
use lapin::{BasicProperties, Channel};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::AmqpConfig;

/// Header of a dead letter that says why the job was refused.
pub const ERROR_HEADER: &str = "x-herald-error";

/// One message for the broker, and the job to acknowledge once it is confirmed.
pub struct Outgoing {
    exchange: String,
    routing_key: String,
    payload: Vec<u8>,
    headers: FieldTable,
    then_ack: Option<Acker>,
}

pub struct Publisher {
    tx: mpsc::UnboundedSender<Outgoing>,
    task: JoinHandle<()>,
    events_exchange: String,
    dead_letter_queue: String,
}

impl Publisher {
    pub fn spawn(channel: Channel, config: &AmqpConfig) -> Publisher {
        let (tx, rx) = mpsc::unbounded_channel();
        Publisher {
            tx,
            task: tokio::spawn(run(channel, rx)),
            events_exchange: config.events_exchange.clone(),
            dead_letter_queue: config.dead_letter_queue.clone(),
        }
    }

    /// Publishes an event to the events exchange; acknowledges `then_ack` once confirmed.
    pub fn event(&self, routing_key: &str, payload: Vec<u8>, then_ack: Option<Acker>) {
        self.send(Outgoing {
            exchange: self.events_exchange.clone(),
            routing_key: routing_key.to_string(),
            payload,
            headers: FieldTable::default(),
            then_ack,
        });
    }

    /// Moves a refused job to the dead-letter queue with its reason.
    pub fn dead_letter(&self, delivery: lapin::message::Delivery, reason: &str) {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(reason.to_string().into()),
        );
        self.send(Outgoing {
            exchange: String::new(),
            routing_key: self.dead_letter_queue.clone(),
            payload: delivery.data,
            headers,
            then_ack: Some(delivery.acker),
        });
    }

    fn send(&self, outgoing: Outgoing) {
        if let Err(mpsc::error::SendError(lost)) = self.tx.send(outgoing) {
            // Only after close(): the job is not acknowledged and will be redelivered.
            tracing::warn!(routing_key = %lost.routing_key, "publisher closed; message not sent");
        }
    }

    /// Waits until everything handed over so far is confirmed (or refused).
    pub async fn close(self) {
        drop(self.tx);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "publisher task failed");
        }
    }
}

async fn run(channel: Channel, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            next = rx.recv(), if open => match next {
                Some(outgoing) => in_flight.push(publish(&channel, outgoing)),
                None => open = false,
            },
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
}

/// Publishes and returns a future that settles the job once the broker answers.
fn publish(channel: &Channel, outgoing: Outgoing) -> impl std::future::Future<Output = ()> {
    let channel = channel.clone();
    async move {
        let Outgoing {
            exchange,
            routing_key,
            payload,
            headers,
            then_ack,
        } = outgoing;
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_headers(headers);
        let confirmed = match channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &payload,
                properties,
            )
            .await
        {
            Ok(confirm) => match confirm.await {
                Ok(confirmation) => confirmation.is_ack(),
                Err(e) => {
                    tracing::warn!(error = %e, %routing_key, "publish not confirmed");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, %routing_key, "publish failed");
                false
            }
        };
        let Some(acker) = then_ack else {
            if !confirmed {
                tracing::warn!(%routing_key, "event lost: the broker did not confirm it");
            }
            return;
        };
        let settled = if confirmed {
            acker.ack(BasicAckOptions::default()).await
        } else {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "job not settled; the broker will redeliver it");
        }
    }
}
