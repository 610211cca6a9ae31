//! The event loop. One task on a current-thread runtime owns all state: the
//! presence book, subscriptions, jobs waiting for the server to read their
//! stanzas. The XMPP stream, the jobs consumer, timers and the shutdown
//! signal are its inputs; handlers are plain calls that return effects.

mod barrier;
mod held;
mod inbound;
mod jobs;
mod ledger;
mod limiter;
mod strangers;
mod subscribers;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep, Instant, MissedTickBehavior};
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::presence::Type as PresenceType;

use crate::amqp::{Job, Link};
use crate::backoff::Backoff;
use crate::broadcast::{Broadcast, JobLimits};
use crate::config::{Config, ConfigError};
use crate::handler::{Context, Effects, Event, Handler};
use crate::http;
use crate::metrics::Metrics;
use crate::presence::{PresenceBook, PresenceChange};
use crate::store::{self, Store, StoreError, Subscription, Write};
use crate::xmpp::{stanzas, Closed, Endpoint, Inbound, Session};
use barrier::Barriers;
use held::HeldJobs;
use jobs::{PendingJob, Work};
pub use ledger::Earlier;
pub(crate) use ledger::Ledger;
use limiter::SenderLimiter;
pub use strangers::StrangerTest;
use strangers::Strangers;
use subscribers::Subscribers;

/// Errors that stop Herald. Once running, Herald reconnects instead.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot serve HTTP on {address}: {source}")]
    Http {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// How long shutdown waits for the server to confirm what was written.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Jobs taken in one turn of the loop when they are already waiting: enough
/// to fill a write, few enough that the loop stays responsive.
const JOB_BURST: usize = 64;
/// How long shutdown waits for the broker to confirm reports.
const PUBLISH_LIMIT: Duration = Duration::from_secs(5);

/// Runs Herald's broadcast component until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let limits = JobLimits::from_config(&config)?;
    let handler = Broadcast::new(
        limits,
        config.amqp.presence_events,
        config.broadcast.checkpoint_every,
    );
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
    let completed = store.completed_jobs()?;
    let progress = store.job_progress()?;
    tracing::info!(
        subscriptions = subscriptions.len(),
        completed_jobs = completed.len(),
        "store opened"
    );
    let metrics = Metrics::new();
    let _http = match config.http_listen()? {
        Some(address) => {
            let server = http::bind(address, metrics.clone())
                .await
                .map_err(|source| AppError::Http { address, source })?;
            tracing::info!(address = %server.local, "serving /metrics, /healthz and /readyz");
            Some(server)
        }
        None => None,
    };
    let domain = config.component_domain()?;
    let link = Link::spawn(
        &config.amqp,
        format!("herald {domain} pid {}", std::process::id()),
        metrics.clone(),
    );
    let (store_writes, store_writer) = store.spawn_writer();
    let mut component = Component::new(
        &config,
        handler,
        subscriptions,
        store_writes,
        link,
        metrics.clone(),
    )?;
    component.restore_completed(completed);
    component.restore_progress(progress);
    let endpoint = Endpoint {
        address: format!("{}:{}", config.xmpp.host, config.xmpp.port),
        domain,
        connect_timeout: config.connect_timeout(),
        read_timeout: config.read_timeout(),
    };
    let mut backoff = Backoff::new(Duration::from_secs(config.xmpp.max_backoff_secs));
    tokio::pin!(shutdown);
    loop {
        let connect =
            Session::connect(&endpoint, config.secret().expose(), metrics.session.clone());
        let connected = tokio::select! {
            _ = &mut shutdown => break,
            connected = connect => connected,
        };
        let mut session = match connected {
            Ok(session) => session,
            Err(e) => {
                metrics.xmpp.failed();
                metrics.update_ready();
                let pause = backoff.next();
                tracing::warn!(error = %e, retry_in = ?pause, "XMPP connection failed");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = sleep(pause) => continue,
                }
            }
        };
        tracing::info!(domain = %endpoint.domain, server = %endpoint.address, "XMPP component connected");
        metrics.xmpp.up();
        metrics.update_ready();
        let ended = component.serve(&mut session, &mut shutdown).await;
        metrics.xmpp.down();
        match ended {
            Ended::Shutdown => {
                component.drain(&mut session).await;
                session.close(Duration::from_secs(5)).await;
                break;
            }
            Ended::Lost(reason) => {
                component.on_disconnected();
                // A server that breaks every stream soon after the handshake
                // must not get a reconnect loop: only a session that got as
                // far as taking jobs earns an immediate reconnect.
                if component.taking_jobs_since_connect {
                    backoff.reset();
                    tracing::warn!(%reason, "XMPP stream lost; reconnecting");
                    continue;
                }
                let pause = backoff.next();
                tracing::warn!(%reason, retry_in = ?pause, "XMPP stream lost before presence was rebuilt; reconnecting");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = sleep(pause) => {}
                }
            }
        }
    }
    component.on_disconnected();
    component.requeue_held();
    // Subscribers learnt just before the shutdown must be probed next time.
    let Component { link, store, .. } = component;
    drop(store);
    link.close(PUBLISH_LIMIT).await;
    if let Err(e) = store_writer.await {
        tracing::error!(error = %e, "store writer failed");
    }
    Ok(())
}

enum Ended {
    Shutdown,
    Lost(Closed),
}

/// What the event loop reacts to; see [`Component::serve`].
// Stanzas are the hot path: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Input {
    Xmpp(Inbound),
    Job(Job),
    Keepalive,
    Settled,
    HeldSettled,
    ReportAbandoned(String),
}

/// Everything the event loop owns.
struct Component<H> {
    handler: H,
    domain: BareJid,
    server: BareJid,
    name: String,
    presence: PresenceBook,
    subscriptions: Subscribers,
    /// Recipients probed lately without learning anything.
    strangers: Strangers,
    /// The JID users have on their roster; unknown recipients are probed from it.
    contact: BareJid,
    /// Jobs taken but not fanned out yet, in order (see `held.rs`).
    held: HeldJobs<Job>,
    jobs: Ledger,
    /// Keys of completed jobs whose report the link gave up on.
    abandoned_reports: mpsc::UnboundedSender<String>,
    abandoned_reports_rx: mpsc::UnboundedReceiver<String>,
    limiter: SenderLimiter,
    store: mpsc::UnboundedSender<Write>,
    link: Link,
    metrics: Metrics,
    barriers: Barriers<Work>,
    /// The broker connection the last job came on.
    jobs_generation: u64,
    /// Presence is rebuilt after (re)connecting; jobs wait until then.
    taking_jobs: bool,
    /// The current (or last) session got as far as taking jobs.
    taking_jobs_since_connect: bool,
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
        store: mpsc::UnboundedSender<Write>,
        link: Link,
        metrics: Metrics,
    ) -> Result<Self, ConfigError> {
        metrics.subscriptions.set(subscriptions.len() as i64);
        let (abandoned_reports, abandoned_reports_rx) = mpsc::unbounded_channel();
        Ok(Component {
            handler,
            domain: config.component_domain()?,
            server: config.server_domain()?,
            name: config.xmpp.name.clone(),
            presence: PresenceBook::new(),
            subscriptions: Subscribers::new(subscriptions),
            strangers: Strangers::new(config.unknown_probe_ttl()),
            contact: config.roster_contact()?,
            held: HeldJobs::default(),
            jobs: Ledger::new(config.store.remember_jobs),
            abandoned_reports,
            abandoned_reports_rx,
            limiter: SenderLimiter::new(
                config.xmpp.user_events_per_sec,
                config.xmpp.user_events_burst,
            ),
            store,
            link,
            metrics,
            barriers: Barriers::new("herald-barrier"),
            jobs_generation: 0,
            taking_jobs: false,
            taking_jobs_since_connect: false,
            settle_at: None,
            settle_delay: Duration::from_millis(config.xmpp.probe_settle_ms),
            keepalive: config.keepalive(),
            high_water: config.xmpp.outbound_high_water,
        })
    }

    async fn serve(
        &mut self,
        session: &mut Session,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Ended {
        self.on_connected(session);
        let mut keepalive = tokio::time::interval(self.keepalive);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.send_due_barrier(session, false);
            self.metrics.outbound_queue.set(session.backlog() as i64);
            let take_jobs = self.taking_jobs && session.backlog() < self.high_water;
            let settle_at = self.settle_at;
            let held_settles_at = self.held.settles_at();
            let input = tokio::select! {
                _ = shutdown.as_mut() => return Ended::Shutdown,
                inbound = session.next() => Input::Xmpp(inbound),
                Some(job) = self.link.next_job(), if take_jobs => Input::Job(job),
                _ = keepalive.tick() => Input::Keepalive,
                Some(key) = self.abandoned_reports_rx.recv() => Input::ReportAbandoned(key),
                _ = tokio::time::sleep_until(settle_at.unwrap_or_else(Instant::now)), if settle_at.is_some() => Input::Settled,
                _ = tokio::time::sleep_until(held_settles_at.unwrap_or_else(Instant::now)), if held_settles_at.is_some() => Input::HeldSettled,
            };
            let busy_since = Instant::now();
            match input {
                Input::Xmpp(Inbound::Stanza(stanza)) => self.on_stanza(session, stanza),
                Input::Xmpp(Inbound::Invalid {
                    kind,
                    from,
                    id,
                    type_,
                    error,
                }) => self.on_invalid(session, &kind, from, id, type_, &error),
                Input::Xmpp(Inbound::Closed(reason)) => return Ended::Lost(reason),
                Input::Job(job) => {
                    self.on_job(job);
                    // Jobs that arrived meanwhile go out in the same write
                    // and under the same barrier: the server then reads one
                    // burst and answers one ping, not one of each per job.
                    for _ in 1..JOB_BURST {
                        let Some(job) = self.link.ready_job() else {
                            break;
                        };
                        self.on_job(job);
                    }
                }
                Input::Keepalive => {
                    self.send_due_barrier(session, true);
                    self.limiter.sweep(Instant::now());
                    self.strangers.sweep(Instant::now());
                }
                Input::Settled => self.on_settled(),
                // Handled below, like every input that may let a job go.
                Input::HeldSettled => {}
                Input::ReportAbandoned(key) => self.on_report_abandoned(&key),
            }
            if self.taking_jobs && !self.held.is_empty() {
                self.advance_held(session);
            }
            self.metrics.add_busy(busy_since.elapsed());
        }
    }

    /// A new stream knows nothing of the old one's presence: forget it and
    /// probe every subscriber, then wait for the server to answer the probes.
    fn on_connected(&mut self, session: &mut Session) {
        self.forget_presence();
        self.strangers.clear();
        self.taking_jobs = false;
        self.taking_jobs_since_connect = false;
        self.settle_at = None;
        for (user, contact) in self.subscriptions.iter() {
            session.enqueue(stanzas::presence(PresenceType::Probe, contact, user));
        }
        let probes = self.subscriptions.len();
        self.metrics.probes.subscriber.inc_by(probes as u64);
        tracing::info!(probes, "probing subscribers");
        self.barriers.request_settle();
    }

    fn on_settled(&mut self) {
        self.settle_at = None;
        self.taking_jobs = true;
        self.taking_jobs_since_connect = true;
        self.metrics.presence_ready.set(1);
        self.metrics.update_ready();
        tracing::info!(
            users = self.presence.online_users(),
            resources = self.presence.online_resources(),
            "presence rebuilt; taking jobs"
        );
    }

    /// Jobs not proven read go back to the queue; they will be delivered
    /// again (possibly twice to some recipients) after reconnecting. Held
    /// jobs have written nothing: they stay held, and are examined again
    /// once presence is rebuilt on the next stream.
    fn on_disconnected(&mut self) {
        self.taking_jobs = false;
        self.held.restart();
        self.metrics.presence_ready.set(0);
        self.metrics.update_ready();
        let abandoned: Vec<PendingJob> = self
            .barriers
            .abandon()
            .into_iter()
            .filter_map(|work| match work {
                Work::Job(job) => Some(job),
                Work::Checkpoint { .. } | Work::Probes { .. } => None,
            })
            .collect();
        if !abandoned.is_empty() {
            tracing::warn!(
                jobs = abandoned.len(),
                "requeueing jobs not confirmed by the server"
            );
        }
        for job in abandoned {
            self.metrics.jobs.requeued.inc();
            if let Some(key) = &job.key {
                self.jobs.abandon(key);
            }
            job.taken.requeue();
        }
    }

    /// Presence seen on a lost stream is stale; listeners hear that every
    /// resource went away, since the new stream starts from nothing.
    fn forget_presence(&mut self) {
        for jid in self.presence.clear() {
            let change = PresenceChange {
                jid,
                now: None,
                changed: true,
            };
            let mut effects = Effects::default();
            let mut ctx = Context::new(&self.domain, &self.presence, &self.jobs, &mut effects);
            self.handler.on_presence(&mut ctx, &change);
            // Stanzas are for a stream that is gone; only events go out.
            self.publish_events(effects.events);
        }
        self.update_presence_gauges();
    }

    /// On shutdown: stop taking jobs and give the server a bounded time to
    /// confirm what was written; the rest goes back to the queue.
    async fn drain(&mut self, session: &mut Session) {
        self.taking_jobs = false;
        let deadline = sleep(DRAIN_LIMIT);
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
    }

    fn send_due_barrier(&mut self, session: &mut Session, keepalive: bool) {
        if let Some(id) = self.barriers.next_ping(keepalive, Instant::now()) {
            session.enqueue(stanzas::ping(&self.domain, &self.server, id));
        }
    }

    fn apply(&mut self, session: &mut Session, effects: Effects) {
        for stanza in effects.stanzas {
            session.enqueue(stanza);
        }
        self.publish_events(effects.events);
    }

    fn publish_events(&self, events: Vec<Event>) {
        for event in events {
            self.link
                .publisher()
                .event(&event.routing_key, event.payload);
        }
    }

    fn update_presence_gauges(&self) {
        self.metrics
            .online_users
            .set(self.presence.online_users() as i64);
        self.metrics
            .online_resources
            .set(self.presence.online_resources() as i64);
    }

    fn remember(&mut self, subscription: Subscription) {
        if self.subscriptions.insert(subscription.clone()) {
            self.metrics
                .subscriptions
                .set(self.subscriptions.len() as i64);
            let _ = self
                .store
                .send(Write::Change(store::Change::Add(subscription)));
        }
    }

    fn forget(&mut self, subscription: Subscription) {
        if self.subscriptions.remove(&subscription) {
            self.metrics
                .subscriptions
                .set(self.subscriptions.len() as i64);
            let _ = self
                .store
                .send(Write::Change(store::Change::Remove(subscription)));
        }
    }
}
