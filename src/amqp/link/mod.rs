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
//!
//! With the store in a stream ([`super::store_stream`]) the link reads it
//! the first time it holds the token, before [`LinkEvent::Up`], and appends
//! the core's batches on the connection that holds the token (`serve.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use super::address::BrokerAddress;
use super::channel::{Connected, Open};
use super::store_stream::{self, Answer, Appender, StoreStream, StreamError, Writer};
use super::topology::{lock_queue, OpenError};
use crate::backoff::Backoff;
use crate::config::AmqpConfig;
use crate::core::{Batch, Delivery, JobId, Publish, Request};
use crate::metrics::Metrics;
use crate::rotation::Rotation;
use crate::store::Contents;

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
    /// stands by until it can take it. Also when, with the store in a
    /// stream, another Herald held it while this one had lost the broker.
    Standby,
    /// With the store in a stream: what it holds, read when this Herald
    /// first held the jobs queue (before [`LinkEvent::Up`]), or why it
    /// cannot be read.
    StoreRead(Result<Box<Contents>, String>),
    /// With the store in a stream: how a batch went.
    Stored(Answer),
}

/// How long a Herald waits for the token before it says it stands by: a
/// lone Herald gets it at once, the broker handing it over on its first
/// delivery from the lock queue.
const STANDBY_NOTICE: Duration = Duration::from_secs(1);

/// What the event loop asks of the link.
#[derive(Debug)]
pub enum Command {
    Publish(Publish),
    Ack {
        job: JobId,
        multiple: bool,
    },
    Requeue {
        job: JobId,
    },
    /// With the store in a stream: append a batch.
    Commit(Batch),
}

/// What the link runs on: the broker nodes, checked at start, and the rest
/// of `[amqp]`.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// Never empty ([`super::addresses`]).
    pub brokers: Vec<BrokerAddress>,
    pub config: AmqpConfig,
    /// The store's stream, if the store lives there.
    pub store: Option<StoreStream>,
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
                store: settings.store.clone(),
                store_writer: Writer::new(),
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
    store: Option<StoreStream>,
    /// This process as a writer of the store's stream, which it reads once,
    /// when first active.
    store_writer: Writer,
    brokers: Rotation<BrokerAddress>,
    name: String,
    commands: mpsc::UnboundedReceiver<Command>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    urgent: mpsc::UnboundedSender<Delivery>,
    events: mpsc::UnboundedSender<LinkEvent>,
    metrics: Metrics,
}

/// Why the store's stream was not attached.
enum StoreAttach {
    /// The loop closed the link, or the stream cannot be read: the link ends.
    Closed,
    Failed(StreamError),
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
            let mut appender = match self.attach_store(&open).await {
                Ok(appender) => appender,
                Err(StoreAttach::Closed) => return,
                Err(StoreAttach::Failed(e)) => {
                    let pause = backoff.next();
                    tracing::warn!(%broker, error = %e, retry_in = ?pause, "the store's stream could not be read; reconnecting");
                    let _ = timeout(
                        Duration::from_secs(5),
                        open.connection.close(200, "bye".into()),
                    )
                    .await;
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
            let ended = (self.serve(&mut open, generation, broker.user(), &mut appender)).await;
            let _ = self.events.send(LinkEvent::Lost { generation });
            for answer in appender.into_iter().flat_map(Appender::abandon) {
                let _ = self.events.send(LinkEvent::Stored(answer));
            }
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

    /// With the store in a stream: attaches to it on `open`, reading it
    /// the first time (and telling the loop what it holds, or that it
    /// cannot be read, which ends the link). Later, if another Herald
    /// appended a fence meanwhile, this one's state is stale: it steps
    /// down ([`LinkEvent::Standby`]) and the link ends, never appending.
    async fn attach_store(&mut self, open: &Open) -> Result<Option<Appender>, StoreAttach> {
        let Some(settings) = self.store.clone() else {
            return Ok(None);
        };
        let writer = self.store_writer.clone();
        let attached = self
            .while_down(store_stream::attach(&open.connection, &settings, &writer))
            .await
            .ok_or(StoreAttach::Closed)?;
        match attached {
            Ok((appender, contents)) => {
                if let Some(contents) = contents {
                    let _ = self
                        .events
                        .send(LinkEvent::StoreRead(Ok(Box::new(contents))));
                }
                Ok(Some(appender))
            }
            Err(StreamError::Truncated(e)) => {
                let _ = self.events.send(LinkEvent::StoreRead(Err(e.to_string())));
                Err(StoreAttach::Closed)
            }
            Err(StreamError::Overtaken(stream)) => {
                tracing::warn!(%stream, "another Herald held the jobs queue while this one had lost the broker");
                let _ = self.events.send(LinkEvent::Standby);
                Err(StoreAttach::Closed)
            }
            Err(e) => Err(StoreAttach::Failed(e)),
        }
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
                    Some(Command::Commit(batch)) => {
                        let down = "the broker is not connected".to_string();
                        let _ = self.events.send(LinkEvent::Stored(Answer::Failed(batch, down)));
                    }
                    None => return None,
                },
            }
        }
    }
}

mod serve;
