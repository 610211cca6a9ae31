//! The event loop. One task on a current-thread runtime owns all state: the
//! presence book, subscriptions, jobs waiting for the server to read their
//! stanzas. The XMPP stream, the jobs consumer, timers and the shutdown
//! signal are its inputs; handlers are plain calls that return effects.

mod barrier;
mod inbound;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::BasicNackOptions;
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant, MissedTickBehavior};
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::presence::Type as PresenceType;

use crate::amqp::{Acker, AmqpError, Broker, Delivery, Publisher};
use crate::broadcast::{Broadcast, JobLimits};
use crate::config::{Config, ConfigError};
use crate::handler::{Context, Effects, Event, Handler, JobOutcome};
use crate::presence::PresenceBook;
use crate::store::{self, Store, StoreError, Subscription};
use crate::xmpp::{stanzas, Closed, Endpoint, Inbound, Session};
use barrier::Barriers;

/// Errors that stop Herald.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("the broker closed the jobs consumer")]
    ConsumerClosed,
}

/// Runs Herald's broadcast component until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let limits = JobLimits {
        component_domain: config.component_domain()?,
        default_from: config.broadcast.default_from.clone(),
        max_body_bytes: config.broadcast.max_body_bytes,
        max_recipients: config.broadcast.max_recipients,
    };
    let handler = Broadcast::new(limits, config.amqp.presence_events);
    run_with(config, handler, shutdown).await
}

/// Runs any [`Handler`] with Herald's connection, presence and AMQP plumbing.
pub async fn run_with<H: Handler>(
    config: Config,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let store = Store::open(&config.store.path)?;
    let subscriptions = store.subscriptions()?;
    tracing::info!(subscriptions = subscriptions.len(), "store opened");
    let broker = Broker::connect(&config.amqp).await?;
    tracing::info!(queue = %config.amqp.jobs_queue, "consuming jobs");
    let Broker {
        connection,
        mut consumer,
        publisher,
    } = broker;
    let (store_changes, store_writer) = store.spawn_writer();
    let mut component = Component::new(&config, handler, subscriptions, store_changes, publisher)?;
    let endpoint = Endpoint {
        address: format!("{}:{}", config.xmpp.host, config.xmpp.port),
        domain: config.component_domain()?,
        connect_timeout: config.connect_timeout(),
        read_timeout: config.read_timeout(),
    };
    let mut backoff = Backoff::new(Duration::from_secs(config.xmpp.max_backoff_secs));
    tokio::pin!(shutdown);
    let outcome = loop {
        let connected = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            connected = Session::connect(&endpoint, config.secret().expose()) => connected,
        };
        let mut session = match connected {
            Ok(session) => session,
            Err(e) => {
                let pause = backoff.next();
                tracing::warn!(error = %e, retry_in = ?pause, "XMPP connection failed");
                tokio::select! {
                    _ = &mut shutdown => break Ok(()),
                    _ = sleep(pause) => continue,
                }
            }
        };
        tracing::info!(domain = %endpoint.domain, server = %endpoint.address, "XMPP component connected");
        backoff.reset();
        let ended = component
            .serve(&mut session, &mut consumer, &mut shutdown)
            .await;
        match ended {
            Ended::Shutdown => {
                component.drain(&mut session).await;
                session.close(Duration::from_secs(5)).await;
                break Ok(());
            }
            Ended::Lost(reason) => {
                tracing::warn!(%reason, "XMPP stream lost; reconnecting");
                component.on_disconnected();
            }
            Ended::ConsumerClosed => {
                component.on_disconnected();
                session.close(Duration::from_secs(5)).await;
                break Err(AppError::ConsumerClosed);
            }
        }
    };
    component.publisher.close().await;
    if let Err(e) = connection.close(200, "bye".into()).await {
        tracing::debug!(error = %e, "AMQP close");
    }
    // Subscribers learnt just before the shutdown must be probed next time.
    drop(component.store);
    if let Err(e) = store_writer.await {
        tracing::error!(error = %e, "store writer failed");
    }
    outcome
}

enum Ended {
    Shutdown,
    Lost(Closed),
    ConsumerClosed,
}

/// A job whose stanzas are written but not yet known to be read.
struct PendingJob {
    acker: Acker,
    report: Option<Event>,
}

/// Everything the event loop owns.
struct Component<H> {
    handler: H,
    domain: BareJid,
    server: BareJid,
    name: String,
    presence: PresenceBook,
    subscriptions: HashSet<Subscription>,
    store: mpsc::UnboundedSender<store::Change>,
    publisher: Publisher,
    barriers: Barriers<PendingJob>,
    /// Presence is rebuilt after (re)connecting; jobs wait until then.
    taking_jobs: bool,
    settle_at: Option<Instant>,
    settle_delay: Duration,
    keepalive: Duration,
    high_water: usize,
}

impl<H: Handler> Component<H> {
    fn new(
        config: &Config,
        handler: H,
        subscriptions: Vec<Subscription>,
        store: mpsc::UnboundedSender<store::Change>,
        publisher: Publisher,
    ) -> Result<Self, ConfigError> {
        Ok(Component {
            handler,
            domain: config.component_domain()?,
            server: config.server_domain()?,
            name: config.xmpp.name.clone(),
            presence: PresenceBook::new(),
            subscriptions: subscriptions.into_iter().collect(),
            store,
            publisher,
            barriers: Barriers::new("herald-barrier"),
            taking_jobs: false,
            settle_at: None,
            settle_delay: Duration::from_millis(config.xmpp.probe_settle_ms),
            keepalive: config.keepalive(),
            high_water: config.xmpp.outbound_high_water,
        })
    }

    async fn serve(
        &mut self,
        session: &mut Session,
        consumer: &mut lapin::Consumer,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Ended {
        self.on_connected(session);
        let mut keepalive = tokio::time::interval(self.keepalive);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.send_due_barrier(session, false);
            let take_jobs = self.taking_jobs && session.backlog() < self.high_water;
            let settle_at = self.settle_at;
            tokio::select! {
                _ = shutdown.as_mut() => return Ended::Shutdown,
                inbound = session.next() => match inbound {
                    Inbound::Stanza(stanza) => self.on_stanza(session, stanza),
                    Inbound::Invalid { kind, from, id, type_, error } => {
                        self.on_invalid(session, &kind, from, id, type_, &error)
                    }
                    Inbound::Closed(reason) => return Ended::Lost(reason),
                },
                delivery = consumer.next(), if take_jobs => match delivery {
                    Some(Ok(delivery)) => self.on_job(session, delivery),
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "jobs consumer failed");
                        return Ended::ConsumerClosed;
                    }
                    None => return Ended::ConsumerClosed,
                },
                _ = keepalive.tick() => self.send_due_barrier(session, true),
                _ = tokio::time::sleep_until(settle_at.unwrap_or_else(Instant::now)), if settle_at.is_some() => {
                    self.settle_at = None;
                    self.taking_jobs = true;
                    tracing::info!(
                        users = self.presence.online_users(),
                        resources = self.presence.online_resources(),
                        "presence rebuilt; taking jobs"
                    );
                }
            }
        }
    }

    /// A new stream knows nothing of the old one's presence: forget it and
    /// probe every subscriber, then wait for the server to answer the probes.
    fn on_connected(&mut self, session: &mut Session) {
        self.presence.clear();
        self.taking_jobs = false;
        self.settle_at = None;
        for subscription in &self.subscriptions {
            session.enqueue(stanzas::presence(
                PresenceType::Probe,
                &subscription.contact,
                &subscription.user,
            ));
        }
        tracing::info!(probes = self.subscriptions.len(), "probing subscribers");
        self.barriers.request_settle();
    }

    /// Jobs not proven read go back to the queue; they will be delivered
    /// again (possibly twice to some recipients) after reconnecting.
    fn on_disconnected(&mut self) {
        self.taking_jobs = false;
        let abandoned = self.barriers.abandon();
        if !abandoned.is_empty() {
            tracing::warn!(
                jobs = abandoned.len(),
                "requeueing jobs not confirmed by the server"
            );
        }
        for job in abandoned {
            requeue(job.acker);
        }
    }

    /// On shutdown: stop taking jobs and give the server a bounded time to
    /// confirm what was written; the rest goes back to the queue.
    async fn drain(&mut self, session: &mut Session) {
        self.taking_jobs = false;
        let deadline = sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !self.barriers.is_idle() {
            self.send_due_barrier(session, false);
            tokio::select! {
                _ = &mut deadline => break,
                inbound = session.next() => match inbound {
                    Inbound::Stanza(stanza) => self.on_stanza(session, stanza),
                    Inbound::Closed(_) => break,
                    Inbound::Invalid { .. } => {}
                },
            }
        }
        self.on_disconnected();
    }

    fn send_due_barrier(&mut self, session: &mut Session, keepalive: bool) {
        if let Some(id) = self.barriers.next_ping(keepalive) {
            session.enqueue(stanzas::ping(&self.domain, &self.server, id));
        }
    }

    fn on_barrier_answered(&mut self, id: &str) -> bool {
        let Some(released) = self.barriers.answered(id) else {
            return false;
        };
        for job in released.work {
            match job.report {
                Some(report) => {
                    self.publisher
                        .event(&report.routing_key, report.payload, Some(job.acker))
                }
                None => settle_ack(job.acker),
            }
        }
        if released.presence_settled {
            self.settle_at = Some(Instant::now() + self.settle_delay);
        }
        true
    }

    fn on_job(&mut self, session: &mut Session, delivery: Delivery) {
        let mut effects = Effects::default();
        let outcome = {
            let mut ctx = Context::new(&self.domain, &self.presence, &mut effects);
            self.handler.on_job(&mut ctx, &delivery.data)
        };
        match outcome {
            JobOutcome::DeadLetter { reason } => {
                tracing::warn!(%reason, "job dead-lettered");
                self.publisher.dead_letter(delivery, &reason);
            }
            JobOutcome::Done { report } => {
                self.apply(session, effects);
                self.barriers.push(PendingJob {
                    acker: delivery.acker,
                    report,
                });
            }
        }
    }

    fn apply(&mut self, session: &mut Session, effects: Effects) {
        for stanza in effects.stanzas {
            session.enqueue(stanza);
        }
        for event in effects.events {
            self.publisher
                .event(&event.routing_key, event.payload, None);
        }
    }

    fn remember(&mut self, subscription: Subscription) {
        if !self.subscriptions.contains(&subscription) {
            self.subscriptions.insert(subscription.clone());
            let _ = self.store.send(store::Change::Add(subscription));
        }
    }

    fn forget(&mut self, subscription: Subscription) {
        if self.subscriptions.remove(&subscription) {
            let _ = self.store.send(store::Change::Remove(subscription));
        }
    }
}

fn settle_ack(acker: Acker) {
    tokio::spawn(async move {
        if let Err(e) = acker.ack(Default::default()).await {
            tracing::warn!(error = %e, "job not acknowledged; the broker will redeliver it");
        }
    });
}

fn requeue(acker: Acker) {
    tokio::spawn(async move {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        if let Err(e) = acker.nack(options).await {
            tracing::debug!(error = %e, "nack failed; the broker requeues on channel close");
        }
    });
}

/// Exponential backoff with jitter, so that many Herald instances (or one
/// in a crash loop) do not hammer a server that is coming back.
struct Backoff {
    current: Duration,
    max: Duration,
}

impl Backoff {
    const START: Duration = Duration::from_millis(250);

    fn new(max: Duration) -> Self {
        Backoff {
            current: Self::START,
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        // Jitter in [0.5, 1.0) of the base, from the clock's low bits: no RNG needed.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        base / 2 + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }

    fn reset(&mut self) {
        self.current = Self::START;
    }
}
