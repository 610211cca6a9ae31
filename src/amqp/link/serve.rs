//! Serving one connection that holds the jobs queue: deliveries and
//! control requests to the loop, its publishes, acknowledgements and store
//! batches to the broker, until the connection is lost or the loop closes
//! the link.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::types::ShortString;
use lapin::BasicProperties;

use super::{Command, Ended, LinkEvent, Task};
use crate::amqp::channel::{publish, Open};
use crate::amqp::control;
use crate::amqp::store_stream::{Answer, Appender};
use crate::amqp::unsettled::Unsettled;
use crate::core::{Destination, Lane};

impl Task {
    /// `user`: the broker user of this connection, which the jobs Herald
    /// queues itself carry as their `user_id`.
    pub(super) async fn serve(
        &mut self,
        open: &mut Open,
        generation: u64,
        user: Option<String>,
        appender: &mut Option<Appender>,
    ) -> Ended {
        let user = user.map(|user| ShortString::from(user.as_str()));
        let mut in_flight = FuturesUnordered::new();
        // Answers to control requests, each acknowledging its request.
        let mut answering = FuturesUnordered::new();
        // Of each unanswered control request: what a dead letter keeps.
        let mut requests: BTreeMap<u64, BasicProperties> = BTreeMap::new();
        let mut unsettled = Unsettled::default();
        let mut closing = false;
        let mut events = open.connection.events_listener();
        loop {
            let stored = appender.as_ref().is_none_or(Appender::is_idle);
            if closing && in_flight.is_empty() && answering.is_empty() && stored {
                return Ended::Closed;
            }
            tokio::select! {
                delivery = open.urgent_consumer.next(), if !closing => match delivery {
                    Some(Ok(delivery)) => {
                        let _ = self.urgent.send(unsettled.delivered(delivery, generation, Lane::Urgent));
                    }
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("the broker cancelled the urgent jobs consumer".into()),
                },
                delivery = open.consumer.next(), if !closing => match delivery {
                    Some(Ok(delivery)) => {
                        let _ = self.deliveries.send(unsettled.delivered(delivery, generation, Lane::Normal));
                    }
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("the broker cancelled the jobs consumer".into()),
                },
                request = open.control_consumer.next(), if !closing => match request {
                    Some(Ok(delivery)) => {
                        let (request, properties) = control::request_of(delivery, generation);
                        requests.insert(request.id.tag, properties);
                        let _ = self.events.send(LinkEvent::Request(request));
                    }
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("the broker cancelled the control consumer".into()),
                },
                // Nothing more comes while the token is held (one at a time,
                // unacknowledged); the consumer ends if the lock queue goes.
                lock = open.lock_consumer.next() => match lock {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("the broker cancelled the lock queue's consumer".into()),
                },
                next = self.commands.recv(), if !closing => match next {
                    Some(Command::Publish(message)) if message.generation == generation => {
                        if !open.publish.status().connected() {
                            // The broker closed it (an exchange deleted
                            // under it, say): reopen, redeclaring the topology.
                            if let Err(e) = open.reopen_publish(&self.config).await {
                                return Ended::Lost(format!("cannot reopen the publish channel: {e}"));
                            }
                            tracing::info!("publish channel reopened");
                        }
                        if let Some(request) = control::answered(&message) {
                            let kept = requests.remove(&request.tag);
                            let (publish, config) = (open.publish.clone(), Arc::clone(&self.config));
                            answering.push(control::answer(publish, open.control.clone(), config, message, request, kept));
                        } else {
                            let kept = match &message.destination {
                                Destination::DeadLetter { job, .. } => unsettled.properties(*job),
                                _ => None,
                            };
                            in_flight.push(publish(open.publish.clone(), Arc::clone(&self.config), message, kept, user.clone()));
                        }
                    }
                    Some(Command::Ack { job, multiple }) if job.generation == generation => {
                        unsettled.ack(open.jobs_channel(job.lane), job, multiple);
                    }
                    Some(Command::Requeue { job }) if job.generation == generation => {
                        unsettled.requeue(open.jobs_channel(job.lane), job);
                    }
                    // Batches are not a connection's: any that holds the
                    // jobs queue appends them.
                    Some(Command::Commit(batch)) => match appender.as_mut() {
                        Some(appender) => appender.commit(batch),
                        None => {
                            let none = "the store is not in a stream".to_string();
                            let _ = self.events.send(LinkEvent::Stored(Answer::Failed(batch, none)));
                        }
                    },
                    // For a connection since lost: the broker requeued its jobs.
                    Some(_) => {}
                    None => closing = true,
                },
                Some(()) = answering.next(), if !answering.is_empty() => {}
                answer = next_answer(appender) => {
                    let _ = self.events.send(LinkEvent::Stored(answer));
                }
                Some(result) = in_flight.next(), if !in_flight.is_empty() => match result {
                    Ok(Some(id)) => {
                        let _ = self.events.send(LinkEvent::Confirmed { id });
                    }
                    Ok(None) => self.metrics.events_confirmed.inc(),
                    Err(message) if message.id.is_some() => {
                        let _ = self.events.send(LinkEvent::Refused(message));
                    }
                    Err(message) => {
                        self.metrics.events_failed.inc();
                        tracing::warn!(destination = ?message.destination, "event lost: the broker did not confirm it");
                    }
                },
                event = events.next() => match event {
                    // A channel's error (an exchange deleted under the publish
                    // channel, say) is handled where it shows; only a dead
                    // connection ends this one.
                    Some(lapin::Event::Error(e)) if !open.connection.status().connected() => {
                        return Ended::Lost(e.to_string());
                    }
                    Some(lapin::Event::Error(e)) => tracing::debug!(error = %e, "AMQP channel error"),
                    Some(lapin::Event::ConnectionBlocked(reason)) => {
                        tracing::warn!(%reason, "the broker blocked publishing");
                    }
                    Some(lapin::Event::ConnectionUnblocked) => tracing::info!("the broker unblocked publishing"),
                    Some(_) => {}
                    None => return Ended::Lost("connection events ended".into()),
                },
            }
        }
    }
}

/// The appender's next answer; never, without one.
async fn next_answer(appender: &mut Option<Appender>) -> Answer {
    match appender {
        Some(appender) => appender.next().await,
        None => std::future::pending().await,
    }
}
