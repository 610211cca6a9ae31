//! The link to the broker, kept up by a task of its own so that the event
//! loop never waits for RabbitMQ. The task connects (with backoff and
//! jitter), declares the topology, consumes jobs and hands them to the loop,
//! and publishes what the loop gives it with publisher confirms.
//!
//! Each connection has a generation number. A job is tied to the connection
//! it came on: when that connection is lost, the broker requeues the job by
//! itself, so the loop drops jobs and reports of older generations rather
//! than deliver or report them twice.
//!
//! A job is acknowledged only after its report (or dead letter) is
//! confirmed, and in delivery order: a job done before an earlier one waits
//! for it, and both go in one `basic.ack` with `multiple` ([`AckWindow`]). A refused publish is retried on the same connection, reopening
//! the publish channel (and redeclaring the topology, which brings back a
//! deleted exchange) when the broker closed it; the job stays unacknowledged
//! meanwhile, so it is never lost and its messages are never sent again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Acker, BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

use super::ack_window::{Ack, AckWindow};
use super::topology;
use crate::backoff::Backoff;
use crate::config::AmqpConfig;
use crate::metrics::Metrics;

/// Header of a dead letter that says why the job was refused.
pub const ERROR_HEADER: &str = "x-herald-error";

/// A job taken from the queue, tied to the connection it came on.
pub struct Job {
    pub delivery: Delivery,
    pub taken: Taken,
}

/// What settles a job with the broker: the link task does, in delivery
/// order. Dropped unsettled, the job is given back to the queue, so that a
/// forgotten job can never hold back the acknowledgement of later ones.
pub struct Taken {
    acker: Option<Acker>,
    tag: u64,
    generation: u64,
    settle: mpsc::UnboundedSender<Settle>,
}

/// A job settled by the loop or a publish, for the link task to send.
struct Settle {
    generation: u64,
    tag: u64,
    acker: Acker,
    requeue: bool,
}

impl Taken {
    /// The connection the job came on (they are numbered from 1).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Gives the job back to the queue (for another delivery attempt).
    pub fn requeue(mut self) {
        self.settle(true);
    }

    /// Acknowledges the job: it is done and leaves the queue.
    pub fn ack(mut self) {
        self.settle(false);
    }

    fn settle(&mut self, requeue: bool) {
        if let Some(acker) = self.acker.take() {
            // Fails only once the link is gone: the broker requeues on close.
            let _ = self.settle.send(Settle {
                generation: self.generation,
                tag: self.tag,
                acker,
                requeue,
            });
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.settle(true);
    }
}

/// One message for the broker, and the job to acknowledge once it is confirmed.
struct Outgoing {
    exchange: String,
    routing_key: String,
    payload: Vec<u8>,
    properties: BasicProperties,
    then_ack: Option<Taken>,
    /// Resolved once the broker confirmed the message and the job is handed
    /// over to be acknowledged (in delivery order).
    confirmed: Option<oneshot::Sender<()>>,
}

/// The event loop's handle on the link task.
pub struct Link {
    publisher: Publisher,
    jobs: mpsc::UnboundedReceiver<Job>,
    generation: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// Hands messages to the link task for publishing; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    events_exchange: String,
    dead_letter_queue: String,
}

impl Link {
    /// Starts the link task; it connects in the background.
    pub fn spawn(config: &AmqpConfig, name: String, metrics: Metrics) -> Link {
        let (outgoing_tx, outgoing_rx) = mpsc::unbounded_channel();
        // Unbounded but never long: the broker sends at most `prefetch`
        // unacknowledged jobs.
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let generation = Arc::new(AtomicU64::new(0));
        let (settler, settle) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            Task {
                config: config.clone(),
                name,
                outgoing: outgoing_rx,
                settle,
                settler,
                jobs: jobs_tx,
                generation: Arc::clone(&generation),
                metrics,
            }
            .run(),
        );
        Link {
            publisher: Publisher {
                outgoing: outgoing_tx,
                events_exchange: config.events_exchange.clone(),
                dead_letter_queue: config.dead_letter_queue.clone(),
            },
            jobs: jobs_rx,
            generation,
            task,
        }
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The next job from a live connection. Jobs that arrived on a
    /// connection since lost are skipped: the broker has requeued them.
    /// Cancel-safe.
    pub async fn next_job(&mut self) -> Option<Job> {
        loop {
            let job = self.jobs.recv().await?;
            if self.is_current(&job.taken) {
                return Some(job);
            }
        }
    }

    /// A job that has already arrived, without waiting; skips jobs of
    /// lost connections like [`Link::next_job`].
    pub fn ready_job(&mut self) -> Option<Job> {
        while let Ok(job) = self.jobs.try_recv() {
            if self.is_current(&job.taken) {
                return Some(job);
            }
        }
        None
    }

    /// Whether `taken` belongs to the live connection (its ack can work).
    pub fn is_current(&self, taken: &Taken) -> bool {
        taken.generation == self.generation.load(Ordering::Relaxed)
    }

    /// Publishes what was handed over so far (within `limit`), then closes
    /// the connection; jobs not acknowledged by then go back to the queue.
    pub async fn close(self, limit: Duration) {
        let Link {
            publisher, task, ..
        } = self;
        // Clones held elsewhere (reports waiting for the store) keep the
        // link open until they have handed over their message.
        drop(publisher);
        let abort = task.abort_handle();
        if tokio::time::timeout(limit, task).await.is_err() {
            tracing::warn!("unpublished reports left at shutdown; their jobs will be redelivered");
            abort.abort();
        }
    }
}

impl Publisher {
    /// Publishes an event to the events exchange (best effort: not retried).
    pub fn event(&self, routing_key: &str, payload: Vec<u8>) {
        self.send(self.to_events(routing_key, payload, None, None));
    }

    /// Publishes a job's report to the events exchange until the broker
    /// confirms it, then acknowledges the job and resolves `confirmed`.
    pub fn report(
        &self,
        routing_key: &str,
        payload: Vec<u8>,
        taken: Taken,
        confirmed: oneshot::Sender<()>,
    ) {
        self.send(self.to_events(routing_key, payload, Some(taken), Some(confirmed)));
    }

    fn to_events(
        &self,
        routing_key: &str,
        payload: Vec<u8>,
        then_ack: Option<Taken>,
        confirmed: Option<oneshot::Sender<()>>,
    ) -> Outgoing {
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2);
        Outgoing {
            exchange: self.events_exchange.clone(),
            routing_key: routing_key.to_string(),
            payload,
            properties,
            then_ack,
            confirmed,
        }
    }

    /// Moves a refused job to the dead-letter queue with its reason, keeping
    /// its properties (message id, correlation id, timestamp, headers).
    pub fn dead_letter(&self, job: Job, reason: &str) {
        let Job { delivery, taken } = job;
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(reason.to_string().into()),
        );
        let properties = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        self.send(Outgoing {
            exchange: String::new(),
            routing_key: self.dead_letter_queue.clone(),
            payload: delivery.data,
            properties,
            then_ack: Some(taken),
            confirmed: None,
        });
    }

    fn send(&self, outgoing: Outgoing) {
        if let Err(mpsc::error::SendError(lost)) = self.outgoing.send(outgoing) {
            // Only after close(): an unacknowledged job will be redelivered.
            tracing::warn!(routing_key = %lost.routing_key, "AMQP link closed; message not sent");
        }
    }
}

struct Task {
    config: AmqpConfig,
    name: String,
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
    settle: mpsc::UnboundedReceiver<Settle>,
    settler: mpsc::UnboundedSender<Settle>,
    jobs: mpsc::UnboundedSender<Job>,
    generation: Arc<AtomicU64>,
    metrics: Metrics,
}

/// How a connection's service ended.
enum Ended {
    /// The event loop closed the link and everything was published.
    Closed,
    Lost(String),
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_secs(self.config.max_backoff_secs));
        loop {
            let (config, name) = (self.config.clone(), self.name.clone());
            let Some(opened) = self.while_down(Open::connect(&config, &name)).await else {
                return;
            };
            let mut open = match opened {
                Ok(open) => open,
                Err(e) => {
                    self.metrics.amqp.failed();
                    self.metrics.update_ready();
                    let pause = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?pause, "AMQP connection failed");
                    if self.while_down(sleep(pause)).await.is_none() {
                        return;
                    }
                    continue;
                }
            };
            let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
            self.metrics.amqp.up();
            self.metrics.update_ready();
            backoff.reset();
            tracing::info!(queue = %self.config.jobs_queue, "AMQP connected; consuming jobs");
            let ended = self.serve(&mut open, generation).await;
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
                    tracing::warn!(%reason, retry_in = ?pause, "AMQP connection lost; reconnecting");
                    if self.while_down(sleep(pause)).await.is_none() {
                        return;
                    }
                }
            }
        }
    }

    /// Runs `work` while no connection is up. What the loop hands over
    /// meanwhile belongs to a lost connection (or is an event with nowhere
    /// to go) and is dropped. `None` when the loop closed the link.
    async fn while_down<F: std::future::Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => return Some(output),
                next = self.outgoing.recv() => match next {
                    Some(outgoing) => self.discard(outgoing, "broker not connected"),
                    None => return None,
                },
            }
        }
    }

    fn discard(&self, outgoing: Outgoing, why: &str) {
        self.metrics.events_failed.inc();
        match outgoing.then_ack {
            Some(_) => tracing::debug!(routing_key = %outgoing.routing_key, why,
                "publish dropped; its job was requeued by the broker"),
            None => tracing::warn!(routing_key = %outgoing.routing_key, why, "event lost"),
        }
    }

    async fn serve(&mut self, open: &mut Open, generation: u64) -> Ended {
        let mut in_flight = FuturesUnordered::new();
        let mut waiting: VecDeque<Outgoing> = VecDeque::new();
        let mut retry_backoff = Backoff::new(Duration::from_secs(self.config.max_backoff_secs));
        let retry = sleep(Duration::ZERO);
        tokio::pin!(retry);
        let mut retry_armed = false;
        let mut closing = false;
        let mut window = AckWindow::default();
        let mut events = open.connection.events_listener();
        loop {
            if closing && in_flight.is_empty() && waiting.is_empty() {
                let mut settles = Vec::new();
                while let Ok(settle) = self.settle.try_recv() {
                    settles.push(settle);
                }
                settle_jobs(settles, generation, &mut window);
                // Done jobs still waiting for an earlier one go on their
                // own rather than be redelivered after the close.
                for acker in window.drain_done() {
                    send_now(acker.ack(BasicAckOptions::default()));
                }
                return Ended::Closed;
            }
            tokio::select! {
                delivery = open.consumer.next(), if !closing => match delivery {
                    Some(Ok(delivery)) => {
                        window.taken(delivery.delivery_tag);
                        let taken = Taken {
                            acker: Some(delivery.acker.clone()),
                            tag: delivery.delivery_tag,
                            generation,
                            settle: self.settler.clone(),
                        };
                        // The loop only goes away at shutdown; the job is then requeued on close.
                        let _ = self.jobs.send(Job { delivery, taken });
                    }
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("the broker cancelled the jobs consumer".into()),
                },
                next = self.outgoing.recv(), if !closing => match next {
                    Some(outgoing) if stale(&outgoing, generation) => {
                        self.discard(outgoing, "connection since replaced");
                    }
                    Some(outgoing) => in_flight.push(publish(open.publish.clone(), outgoing)),
                    None => closing = true,
                },
                Some(settle) = self.settle.recv() => {
                    // Confirms come in bursts: settle all that are here with
                    // one ack.
                    let mut settles = vec![settle];
                    while let Ok(settle) = self.settle.try_recv() {
                        settles.push(settle);
                    }
                    settle_jobs(settles, generation, &mut window);
                }
                Some(result) = in_flight.next(), if !in_flight.is_empty() => match result {
                    Ok(()) => self.metrics.events_confirmed.inc(),
                    Err(outgoing) => {
                        self.metrics.events_failed.inc();
                        if outgoing.then_ack.is_none() {
                            tracing::warn!(routing_key = %outgoing.routing_key, "event lost: the broker did not confirm it");
                            continue;
                        }
                        waiting.push_back(outgoing);
                        if !retry_armed {
                            retry_armed = true;
                            let pause = retry_backoff.next();
                            tracing::warn!(retry_in = ?pause, "publish refused; retrying without redoing the job");
                            retry.as_mut().reset(Instant::now() + pause);
                        }
                    }
                },
                _ = &mut retry, if retry_armed => {
                    retry_armed = false;
                    if !open.publish.status().connected() {
                        if let Err(e) = open.reopen_publish(&self.config).await {
                            return Ended::Lost(format!("cannot reopen the publish channel: {e}"));
                        }
                        tracing::info!("publish channel reopened");
                    }
                    for outgoing in waiting.drain(..) {
                        in_flight.push(publish(open.publish.clone(), outgoing));
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

/// Sends what settling these jobs releases: each requeued job's own nack,
/// then one ack for every done job no earlier open job holds back. Jobs of
/// a lost connection were requeued by the broker already.
fn settle_jobs(settles: Vec<Settle>, generation: u64, window: &mut AckWindow<Acker>) {
    let mut newest = None;
    for settle in settles {
        if settle.generation != generation {
            continue;
        }
        let released = if settle.requeue {
            let options = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            send_now(settle.acker.nack(options));
            window.requeued(settle.tag)
        } else {
            window.done(settle.tag, settle.acker)
        };
        if let Some(Ack::UpTo(acker)) = released {
            // A later run includes the earlier ones.
            newest = Some(acker);
        }
    }
    if let Some(acker) = newest {
        send_now(acker.ack(BasicAckOptions { multiple: true }));
    }
}

/// Hands an ack or nack to lapin without waiting for it to be written.
/// lapin queues the frame on the first poll, so frames go out in the order
/// they are handed over (an ack `multiple` never overtakes a nack before
/// it); waiting for each to be written would hold up the link task for a
/// round trip to lapin's I/O thread per frame. One that fails is lost with
/// its channel, and the broker then redelivers the jobs it covered.
fn send_now(frame: impl std::future::Future<Output = lapin::Result<bool>>) {
    if let Some(Err(e)) = frame.now_or_never() {
        tracing::warn!(error = %e, "acknowledgement not sent; the broker will redeliver those jobs");
    }
}

fn stale(outgoing: &Outgoing, generation: u64) -> bool {
    outgoing
        .then_ack
        .as_ref()
        .is_some_and(|taken| taken.generation != generation)
}

/// A live connection: the jobs consumer and the publish channel.
struct Open {
    connection: Connection,
    consumer: Consumer,
    publish: Channel,
}

impl Open {
    async fn connect(config: &AmqpConfig, name: &str) -> Result<Open, lapin::Error> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = super::connect(config, properties).await?;
        let consume = connection.create_channel().await?;
        topology::declare(&consume, config).await?;
        consume
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = consume
            .basic_consume(
                config.jobs_queue.as_str().into(),
                "herald".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let publish = open_publish(&connection, config).await?;
        Ok(Open {
            connection,
            consumer,
            publish,
        })
    }

    async fn reopen_publish(&mut self, config: &AmqpConfig) -> Result<(), lapin::Error> {
        self.publish = open_publish(&self.connection, config).await?;
        Ok(())
    }
}

async fn open_publish(
    connection: &Connection,
    config: &AmqpConfig,
) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    topology::declare(&channel, config).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes, waits for the confirm and settles the job; gives the message
/// back if the broker did not confirm it.
async fn publish(channel: Channel, outgoing: Outgoing) -> Result<(), Outgoing> {
    let result = channel
        .basic_publish(
            outgoing.exchange.as_str().into(),
            outgoing.routing_key.as_str().into(),
            BasicPublishOptions::default(),
            &outgoing.payload,
            outgoing.properties.clone(),
        )
        .await;
    let confirmed = match result {
        Ok(confirm) => match confirm.await {
            Ok(confirmation) => confirmation.is_ack(),
            Err(e) => {
                tracing::debug!(error = %e, routing_key = %outgoing.routing_key, "publish not confirmed");
                false
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, routing_key = %outgoing.routing_key, "publish failed");
            false
        }
    };
    if !confirmed {
        return Err(outgoing);
    }
    if let Some(taken) = outgoing.then_ack {
        taken.ack();
    }
    if let Some(confirmed) = outgoing.confirmed {
        let _ = confirmed.send(());
    }
    Ok(())
}
