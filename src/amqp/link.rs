//! The link to the broker, kept up by a task of its own so that the event
//! loop never waits for RabbitMQ. It connects (with backoff and jitter, to
//! the configured nodes in turn: a failed connect or a lost connection
//! moves on to the next), declares the topology, consumes jobs, and carries
//! out what the core decided: publishes (with confirms), acknowledgements
//! and requeues. Control requests come on a channel of their own and go
//! to the core like deliveries; their answers are published and the
//! requests then acknowledged ([`super::control`]).
//! Nothing here decides anything about a job or a request.
//!
//! Each connection has a generation number, told to the loop with
//! [`LinkEvent::Up`] before its first delivery and [`LinkEvent::Lost`]
//! after its last. What the core asks for a connection since lost is
//! dropped here: the broker has requeued that connection's jobs itself.
//!
//! A connection consumes only once it holds the jobs queue's token
//! ([`super::channel`]); a Herald whose token does not come soon is a
//! standby: the link says so once ([`LinkEvent::Standby`]) and waits, on
//! the same connection, until the broker hands it the token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::types::ShortString;
use lapin::BasicProperties;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::address::BrokerAddress;
use super::channel::{publish, Connected, Open};
use super::control;
use super::topology::{lock_queue, OpenError};
use super::unsettled::Unsettled;
use crate::backoff::Backoff;
use crate::config::AmqpConfig;
use crate::core::{Delivery, Destination, JobId, Lane, Publish, Request};
use crate::metrics::Metrics;
use crate::rotation::Rotation;

/// What the link tells the event loop, besides deliveries.
#[derive(Debug)]
pub enum LinkEvent {
    Up {
        generation: u64,
    },
    Lost {
        generation: u64,
    },
    Confirmed {
        id: u64,
    },
    /// Given back to be retried.
    Refused(Publish),
    /// A control request, to be answered.
    Request(Request),
    /// Connected, but another Herald holds the jobs queue: this one
    /// stands by until it can take it.
    Standby,
}

/// How long a Herald waits for the token before it says it stands by: a
/// lone Herald gets it at once, the broker handing it over on its first
/// delivery from the lock queue.
const STANDBY_NOTICE: Duration = Duration::from_secs(1);

/// What the event loop asks of the link.
#[derive(Debug)]
pub enum Command {
    Publish(Publish),
    Ack { job: JobId, multiple: bool },
    Requeue { job: JobId },
}

/// What the link runs on: the broker nodes, checked at start, and the rest
/// of `[amqp]`.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Never empty ([`super::addresses`]).
    pub brokers: Vec<BrokerAddress>,
    pub config: AmqpConfig,
}

/// The event loop's handle on the link task.
pub struct Link {
    commands: mpsc::UnboundedSender<Command>,
    pub deliveries: mpsc::UnboundedReceiver<Delivery>,
    /// The urgent queue's, apart: they must not wait behind the others.
    pub urgent: mpsc::UnboundedReceiver<Delivery>,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    task: JoinHandle<()>,
}

impl Link {
    /// Starts the link task; it connects in the background.
    pub fn spawn(settings: &LinkSettings, name: String, metrics: Metrics) -> Link {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        // Unbounded but never long: the broker sends at most `prefetch`
        // unacknowledged jobs.
        let (deliveries_tx, deliveries) = mpsc::unbounded_channel();
        let (urgent_tx, urgent) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            Task {
                config: Arc::new(settings.config.clone()),
                brokers: Rotation::new(settings.brokers.clone()),
                name,
                commands: commands_rx,
                deliveries: deliveries_tx,
                urgent: urgent_tx,
                events: events_tx,
                metrics,
            }
            .run(),
        );
        Link {
            commands,
            deliveries,
            urgent,
            events,
            task,
        }
    }

    pub fn send(&self, command: Command) {
        // Fails only once the task is gone (shutdown): the broker requeues
        // whatever was not acknowledged.
        let _ = self.commands.send(command);
    }

    /// Carries out what was handed over so far (within `limit`), then
    /// closes the connection; jobs not acknowledged by then go back to the
    /// queue.
    pub async fn close(self, limit: Duration) {
        let Link { commands, task, .. } = self;
        drop(commands);
        let abort = task.abort_handle();
        if tokio::time::timeout(limit, task).await.is_err() {
            tracing::warn!("unpublished reports left at shutdown; their jobs will be redelivered");
            abort.abort();
        }
    }
}

struct Task {
    config: Arc<AmqpConfig>,
    brokers: Rotation<BrokerAddress>,
    name: String,
    commands: mpsc::UnboundedReceiver<Command>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    urgent: mpsc::UnboundedSender<Delivery>,
    events: mpsc::UnboundedSender<LinkEvent>,
    metrics: Metrics,
}

/// How a connection's service ended.
enum Ended {
    /// The event loop closed the link and everything was carried out.
    Closed,
    Lost(String),
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_secs(self.config.max_backoff_secs));
        let mut generation = 0;
        loop {
            let (config, name) = (Arc::clone(&self.config), self.name.clone());
            let broker = self.brokers.next().clone();
            let Some(connected) = self
                .while_down(Connected::connect(&config, &broker, &name))
                .await
            else {
                return;
            };
            let activated = match connected {
                Ok(connected) => {
                    self.metrics.amqp.up();
                    self.metrics.update_ready();
                    backoff.reset();
                    match self.stand_by(connected).await {
                        Some(activated) => activated,
                        None => return,
                    }
                }
                Err(e) => Err(e),
            };
            let mut open = match activated {
                Ok(open) => open,
                Err(e) => {
                    self.metrics.amqp.failed();
                    self.metrics.update_ready();
                    let pause = backoff.next();
                    tracing::warn!(%broker, error = %e, retry_in = ?pause, "AMQP connection failed");
                    if self.while_down(sleep(pause)).await.is_none() {
                        return;
                    }
                    continue;
                }
            };
            generation += 1;
            self.metrics.active.set(1);
            self.metrics.update_ready();
            tracing::info!(%broker, queue = %self.config.jobs_queue, "AMQP connected; consuming jobs");
            let _ = self.events.send(LinkEvent::Up { generation });
            let ended = self.serve(&mut open, generation, broker.user()).await;
            let _ = self.events.send(LinkEvent::Lost { generation });
            self.metrics.active.set(0);
            self.metrics.amqp.down();
            self.metrics.update_ready();
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                open.connection.close(200, "bye".into()),
            )
            .await;
            match ended {
                Ended::Closed => return,
                Ended::Lost(reason) => {
                    let pause = backoff.next();
                    tracing::warn!(%broker, %reason, retry_in = ?pause, "AMQP connection lost; reconnecting");
                    if self.while_down(sleep(pause)).await.is_none() {
                        return;
                    }
                }
            }
        }
    }

    /// Waits on `connected` for the jobs queue's token; says once that
    /// this Herald stands by if it does not come within [`STANDBY_NOTICE`].
    /// `None` when the loop closed the link meanwhile.
    async fn stand_by(&mut self, connected: Connected) -> Option<Result<Open, OpenError>> {
        let config = Arc::clone(&self.config);
        let token = connected.activate(&config);
        tokio::pin!(token);
        if let Ok(activated) = self.while_down(timeout(STANDBY_NOTICE, &mut token)).await? {
            return Some(activated);
        }
        let lock = lock_queue(&config.jobs_queue);
        tracing::info!(queue = %config.jobs_queue, %lock, "another Herald holds the jobs queue; standing by");
        let _ = self.events.send(LinkEvent::Standby);
        self.while_down(token).await
    }

    /// Runs `work` while no connection is up. What the loop asks for
    /// meanwhile belongs to a lost connection and is dropped (the core
    /// counts events it could not hand over). `None` when the loop closed
    /// the link.
    async fn while_down<F: std::future::Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return Some(output),
                next = self.commands.recv() => match next {
                    Some(Command::Publish(_)) => self.metrics.events_failed.inc(),
                    // The broker requeued those jobs when the connection went.
                    Some(Command::Ack { .. } | Command::Requeue { .. }) => {}
                    None => return None,
                },
            }
        }
    }

    /// `user`: the broker user of this connection, which the jobs Herald
    /// queues itself carry as their `user_id`.
    async fn serve(&mut self, open: &mut Open, generation: u64, user: Option<String>) -> Ended {
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
            if closing && in_flight.is_empty() && answering.is_empty() {
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
                    // For a connection since lost: the broker requeued its jobs.
                    Some(_) => {}
                    None => closing = true,
                },
                Some(()) = answering.next(), if !answering.is_empty() => {}
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
