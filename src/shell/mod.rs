//! The shell around the [`crate::core`]: it owns the XMPP socket, the
//! broker link, the store's writer thread and the clock, turns what they
//! report into the core's inputs and carries out the core's outputs. It
//! decides nothing about jobs; one `select!` on one thread is all of it.
//!
//! Herald starts as a standby ([`standby`]): only once its link holds the
//! jobs queue does it open the store, build the core and connect to the
//! XMPP server. An active Herald that finds, after losing the broker, that
//! another took the jobs queue meanwhile steps down: it shuts down, and
//! its supervisor starts it again, as a standby.

mod standby;
mod store;
mod systemd;
mod xmpp;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::FutureExt;

use tokio::time::Instant;

use crate::amqp::{Command, Link, LinkEvent, StoreAnswer};
use crate::broadcast::Broadcast;
use crate::config::{Config, ConfigError, Settings};
use crate::core::{Core, Input, Output, Phase};
use crate::handler::Handler;
use crate::http;
use crate::metrics::Metrics;
use crate::store::{Commit, StoreError};
use crate::xmpp::wire::Outgoing;
use crate::xmpp::Inbound;
use store::StoreWriter;
use xmpp::Happened;

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
    #[error("another Herald took the jobs queue while this one had lost the broker: stepped down")]
    SteppedDown,
}

/// Jobs (or the link's events) taken in one turn of the loop when they are
/// already waiting: enough to fill a write under one barrier, few enough
/// that the loop stays responsive.
const JOB_BURST: usize = 64;
/// Stanzas from the server taken in one turn when they are already
/// waiting. A big job's slices put a barrier ping in the stream every
/// thousand messages; read one stanza a turn, their answers (and presence)
/// would queue up behind the slices, and every other job's completion with
/// them, until the big job ends.
const INBOUND_BURST: usize = 256;
/// How long the link may take to hand over the last acknowledgements.
const PUBLISH_LIMIT: Duration = Duration::from_secs(5);

/// Runs Herald's broadcast component until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    let settings = config.settings()?;
    let handler = Broadcast::new(
        settings.limits.clone(),
        settings.presence_events,
        settings.checkpoint_every,
    );
    serve(settings, handler, shutdown).await
}

/// Runs any [`Handler`] with Herald's connection, presence and AMQP plumbing.
pub async fn run_with<H: Handler>(
    config: Config,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    serve(config.settings()?, handler, shutdown).await
}

async fn serve<H: Handler>(
    settings: Settings,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let metrics = Metrics::new();
    let _http = match settings.http {
        Some(address) => {
            let server = http::bind(address, metrics.clone())
                .await
                .map_err(|source| AppError::Http { address, source })?;
            tracing::info!(address = %server.local, "serving /metrics, /healthz and /readyz");
            Some(server)
        }
        None => None,
    };
    if let Some(notifier) = systemd::Notifier::from_env() {
        notifier.ready();
        notifier.keep_watchdog();
    }
    let mut link = Link::spawn(
        &settings.amqp,
        format!("herald {} pid {}", settings.core.domain, std::process::id()),
        metrics.clone(),
    );
    tokio::pin!(shutdown);
    let Some((generation, from_stream)) =
        standby::until_active(&mut link, shutdown.as_mut()).await?
    else {
        link.close(PUBLISH_LIMIT).await;
        return Ok(());
    };
    let remember_jobs = settings.core.remember_jobs;
    let opened = StoreWriter::open(
        &settings.store,
        remember_jobs,
        from_stream,
        shutdown.as_mut(),
    );
    let Some((writer, restored)) = opened.await? else {
        link.close(PUBLISH_LIMIT).await;
        return Ok(());
    };
    tracing::info!(
        subscriptions = restored.subscriptions.len(),
        completed_jobs = restored.completed.len(),
        "store opened"
    );
    let now = Instant::now().into_std();
    let clocks = (now, std::time::SystemTime::now());
    let core = Core::new(settings.core, handler, restored, metrics.clone(), clocks);
    let dial = xmpp::Dial {
        endpoint: settings.endpoint,
        secret: settings.secret,
        metrics: metrics.session.clone(),
    };
    let xmpp = xmpp::Stream::open(
        settings.servers,
        settings.every_node,
        dial,
        settings.max_backoff,
        metrics.clone(),
    );
    let mut shell = Shell {
        xmpp,
        core,
        link,
        writer,
        metrics,
        high_water: settings.outbound_high_water,
        shutting_down: false,
        stepped_down: false,
    };
    shell.handle(Input::BrokerUp { generation });
    shell.run(shutdown).await
}

struct Shell<H> {
    core: Core<H>,
    xmpp: xmpp::Stream,
    link: Link,
    writer: StoreWriter,
    metrics: Metrics,
    high_water: usize,
    shutting_down: bool,
    /// Another Herald took the jobs queue ([`LinkEvent::Standby`]).
    stepped_down: bool,
}

impl<H: Handler> Shell<H> {
    async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        tokio::pin!(shutdown);
        while !self.core.is_finished() {
            self.carry_out();
            if matches!(self.core.phase(), Phase::Closing { .. }) {
                self.close_stream().await;
            }
            self.metrics.outbound_queue.set(self.xmpp.backlog() as i64);
            if self.core.waits_for_room() {
                // Half empty, so the next slice is queued before the
                // socket runs dry.
                self.xmpp.wake_below(self.high_water / 2);
            }
            if self.core.is_fanning() {
                // Between slices the link task (on this thread) gets its
                // turn: an urgent job's report and acknowledgement must not
                // wait for the end of a big job that keeps the loop busy.
                tokio::task::yield_now().await;
            }
            let take_jobs = self.core.takes_jobs() && self.xmpp.backlog() < self.high_water;
            let deadline = self.core.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = &mut shutdown, if !self.shutting_down => {
                    tracing::info!("shutting down");
                    self.shut_down();
                }
                happened = self.xmpp.next() => {
                    let mut read = matches!(happened, Happened::Inbound(Inbound::Stanza(_)));
                    self.on_xmpp(happened);
                    for _ in 1..INBOUND_BURST {
                        if !read {
                            break;
                        }
                        let Some(happened) = self.xmpp.next().now_or_never() else { break };
                        read = matches!(happened, Happened::Inbound(Inbound::Stanza(_)));
                        self.on_xmpp(happened);
                    }
                }
                Some(delivery) = self.link.deliveries.recv(), if take_jobs => {
                    self.handle(Input::Delivery(delivery));
                    // Jobs that arrived meanwhile go out in the same write
                    // and under the same barrier: the server then reads one
                    // burst and answers one ping, not one of each per job.
                    // The burst may pass the job window by up to its size:
                    // stopping at the window would cut bursts to one job a
                    // turn whenever the window is full (one ping a job).
                    for _ in 1..JOB_BURST {
                        let Ok(delivery) = self.link.deliveries.try_recv() else { break };
                        self.handle(Input::Delivery(delivery));
                    }
                }
                // Urgent jobs pass the job window (their prefetch bounds them).
                Some(delivery) = self.link.urgent.recv(), if self.core.phase().takes_jobs() => {
                    self.handle(Input::Delivery(delivery));
                }
                Some(event) = self.link.events.recv() => {
                    self.on_link(event);
                    // Confirms come one per report: those already here are
                    // handled in this turn, not a turn of the loop each.
                    for _ in 1..JOB_BURST {
                        let Ok(event) = self.link.events.try_recv() else { break };
                        self.on_link(event);
                    }
                }
                Some(commit) = self.writer.answer() => self.handle(match commit {
                    Commit::Done(batch) => Input::Committed { batch },
                    Commit::Failed(batch, error) => Input::CommitFailed { batch, error },
                }),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.busy(|core, now| core.handle_timeout(now));
                }
            }
        }
        self.carry_out();
        self.close_stream().await;
        let Shell {
            mut core,
            link,
            writer,
            stepped_down: self_stepped_down,
            ..
        } = self;
        writer.finish(core.take_unwritten(), link).await;
        if self_stepped_down {
            return Err(AppError::SteppedDown);
        }
        Ok(())
    }

    /// Takes no more jobs and closes the stream once the core is done with it.
    fn shut_down(&mut self) {
        self.shutting_down = true;
        if !self.xmpp.is_up() {
            self.xmpp.close_now();
        }
        self.handle(Input::Shutdown);
    }

    fn on_link(&mut self, event: LinkEvent) {
        let input = match event {
            LinkEvent::Up { generation } => Input::BrokerUp { generation },
            LinkEvent::Lost { generation } => Input::BrokerLost { generation },
            LinkEvent::Confirmed { id } => Input::Published { id },
            LinkEvent::Refused(publish) => Input::PublishRefused { publish },
            LinkEvent::Request(request) => Input::Request(request),
            LinkEvent::Standby => return self.step_down(),
            LinkEvent::Stored(StoreAnswer::Committed(batch)) => Input::Committed { batch },
            LinkEvent::Stored(StoreAnswer::Failed(batch, error)) => {
                Input::CommitFailed { batch, error }
            }
            // Read once, before the core was built.
            LinkEvent::StoreRead(_) => return,
        };
        self.handle(input);
    }

    /// The link lost the broker and another Herald took the jobs queue
    /// meanwhile: this one's XMPP connection must not compete with it.
    fn step_down(&mut self) {
        tracing::warn!("another Herald took the jobs queue; stepping down");
        self.stepped_down = true;
        if !self.shutting_down {
            self.shut_down();
        }
    }

    fn handle(&mut self, input: Input) {
        self.busy(|core, now| core.handle(input, now));
    }

    /// Runs `work` on the core with the time now, counting the time spent.
    fn busy(&mut self, work: impl FnOnce(&mut Core<H>, std::time::Instant)) {
        let busy_since = Instant::now();
        work(&mut self.core, busy_since.into_std());
        self.metrics.add_busy(busy_since.elapsed());
    }

    fn on_xmpp(&mut self, happened: Happened) {
        match happened {
            Happened::Up => {
                let (domain, server) = (self.xmpp.domain(), self.xmpp.server());
                let sessions = self.xmpp.sessions();
                tracing::info!(%domain, %server, sessions, "XMPP component connected");
                self.metrics.xmpp.up();
                self.metrics.update_ready();
                self.handle(Input::StreamUp);
            }
            Happened::Inbound(Inbound::Stanza(stanza)) => self.handle(Input::Stanza(stanza)),
            // The loop turns: the next slice of a job goes with the room.
            Happened::Inbound(Inbound::Drained) => {}
            Happened::Inbound(Inbound::Invalid(invalid)) => {
                self.handle(Input::InvalidStanza(invalid))
            }
            // Sessions report their end as `Lost`.
            Happened::Inbound(Inbound::Closed(_)) => {}
            Happened::Lost { server, reason } => {
                self.metrics.xmpp.down();
                self.metrics.update_ready();
                self.handle(Input::StreamLost);
                if self.shutting_down {
                    self.xmpp.close_now();
                    return;
                }
                // A server that breaks every stream soon after the handshake
                // must not get a reconnect loop: only a stream that got as
                // far as taking jobs earns an immediate reconnect.
                let at_once = self.core.phase() == (Phase::Down { was_ready: true });
                match self.xmpp.reconnect(at_once) {
                    None => tracing::warn!(%server, %reason, "XMPP stream lost; reconnecting"),
                    Some(retry_in) => {
                        tracing::warn!(%server, %reason, ?retry_in, "XMPP stream lost before presence was rebuilt; reconnecting")
                    }
                }
            }
        }
    }

    /// Carries out what the core decided, in order.
    fn carry_out(&mut self) {
        while let Some(output) = self
            .core
            .poll_output(self.high_water.saturating_sub(self.xmpp.backlog()))
        {
            match output {
                Output::Stanza(stanza) => self.xmpp.write(Outgoing::Stanza(Box::new(stanza))),
                Output::Ping(ping) => self.xmpp.ping(ping),
                Output::Message { template, to } => {
                    self.xmpp.write(Outgoing::Message { template, to })
                }
                Output::Publish(publish) => self.link.send(Command::Publish(publish)),
                Output::Ack { job, multiple } => self.link.send(Command::Ack { job, multiple }),
                Output::Requeue { job } => self.link.send(Command::Requeue { job }),
                Output::Commit(batch) => self.writer.commit(batch, &self.link),
            }
        }
    }

    /// The core is done with the stream: write what is queued and close it.
    async fn close_stream(&mut self) {
        if self.xmpp.is_up() {
            self.metrics.xmpp.down();
            self.metrics.update_ready();
        }
        self.xmpp.close(Duration::from_secs(5)).await;
    }
}
