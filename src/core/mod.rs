//! Herald's core: every piece of state and every decision, with no I/O.
//! It takes [`Input`]s (a stanza, a delivery, a confirm, a commit, the
//! stream or the broker connection up or lost) and the time, and gives
//! [`Output`]s (stanzas, publishes, acknowledgements, store batches) to
//! [`Core::poll_output`] and its next deadline to [`Core::poll_timeout`].
//! The shell ([`crate::shell`]) owns the sockets, the broker client, the
//! store file and the clock, and only moves inputs in and outputs out; the
//! simulation (`tests/simulation`) drives the same core with simulated
//! servers, brokers, stores and time.
//!
//! A job's life is one [`jobs::Stage`], the XMPP side's one [`Phase`].
//! Inputs from a broker connection that is gone are dropped where they
//! arrive ([`Core::handle`]); stanzas only go out while there is a stream.

/// What a handler sees of the core, borrowed field by field (a method
/// borrowing the whole core would keep the handler from being called).
macro_rules! handler_context {
    ($core:expr, $effects:expr) => {
        Context::new(
            &$core.settings.domain,
            &$core.presence,
            &$core.ledger,
            &$core.groups,
            $effects,
        )
    };
}

mod ack_window;
mod adhoc;
mod barrier;
mod broker;
mod cancel;
mod completion;
mod connection;
mod control;
mod deferred;
mod fanning;
mod groups;
mod id_map;
mod inbound;
mod intake;
pub mod io;
mod job_window;
mod jobs;
mod ledger;
mod limiter;
mod phase;
mod read_window;
mod settings;
mod store_log;
mod strangers;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use crate::groups::Groups;
use crate::handler::{Effects, Event, Handler};
use crate::metrics::Metrics;
use crate::presence::{Clock, PresenceBook};
use crate::producers::Rates;
use crate::store::Change;
use crate::user_text::UserKey;
use crate::xmpp::stanzas;
use barrier::Barriers;
use broker::Broker;
use fanning::Fanning;
use io::Outputs;
pub use io::{
    Batch, Delivery, Destination, Input, InvalidStanza, JobId, Lane, Output, Publish, Request,
    RequestId, Restored,
};
use job_window::JobWindow;
use jobs::Jobs;
pub use ledger::Earlier;
pub(crate) use ledger::Ledger;
use limiter::SenderLimiter;
pub use phase::Phase;
use read_window::ReadWindow;
pub use settings::Settings;
use store_log::StoreLog;
pub use strangers::StrangerTest;
use strangers::Strangers;

/// How long shutdown waits for the server to confirm what was written.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long shutdown then waits for commits and report confirms.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// What waits for the server to read the stanzas before it.
#[derive(Debug)]
enum Covered {
    Job(JobId),
    /// A point inside a job: its progress is saved once read, if the job
    /// is still this attempt's (a given-up attempt's checkpoints would
    /// overwrite the progress of the attempt after it).
    Checkpoint {
        job: JobId,
        key: String,
        token: Vec<u8>,
    },
    /// Probes of unknown recipients: their held jobs may go once read.
    Probes {
        ticket: u64,
    },
    /// A message to a recipient who waited in a job's window.
    Deferred {
        slot: deferred::Slot,
        position: u32,
    },
}

pub struct Core<H> {
    handler: H,
    settings: Settings,
    phase: Phase,
    /// Who subscribes and who is online.
    presence: PresenceBook,
    /// Users online on the last stream, until the new one's presence is
    /// rebuilt: those who do not answer its first probes are probed again.
    online_before: HashSet<UserKey>,
    /// Recipients probed lately without learning anything.
    strangers: Strangers,
    limiter: SenderLimiter,
    /// Each rate-limited producer's jobs lately.
    rates: Rates,
    ledger: Ledger,
    groups: Groups,
    jobs: Jobs,
    /// How many of them may be in flight.
    window: JobWindow,
    barriers: Barriers<Covered>,
    /// How many stanzas may wait for the server to read them.
    read_window: ReadWindow,
    store: StoreLog,
    broker: Broker,
    /// Each lane's job going out a slice at a time, if any.
    fanning: [Option<Fanning>; 2],
    /// Stanzas the stream's queue takes before it is full, as the shell
    /// last said, less what was queued since.
    stream_room: usize,
    out: Outputs,
    /// Operators' ad-hoc command sessions and queued broadcasts.
    adhoc: adhoc::Adhoc,
    /// Jobs' windows for recipients they could not reach at once.
    deferred: deferred::Book,
    metrics: Metrics,
    now: Instant,
    /// The moments the presence book keeps, counted from the core's start.
    clock: Clock,
    keepalive_at: Instant,
}

impl<H: Handler> Core<H> {
    pub fn new(
        settings: Settings,
        handler: H,
        restored: Restored,
        metrics: Metrics,
        (now, wall_clock): (Instant, SystemTime),
    ) -> Self {
        metrics
            .subscriptions
            .set(restored.subscriptions.len() as i64);
        let mut core = Core {
            handler,
            phase: Phase::Down { was_ready: false },
            presence: PresenceBook::with_subscriptions(restored.subscriptions),
            online_before: HashSet::new(),
            strangers: Strangers::new(settings.unknown_probe_ttl),
            limiter: SenderLimiter::new(
                settings.user_events_per_sec,
                settings.user_events_burst,
                Clock::new(now),
            ),
            rates: Rates::default(),
            ledger: Ledger::new(settings.remember_jobs),
            groups: restored.groups,
            jobs: Jobs::default(),
            window: JobWindow::new(settings.max_in_flight),
            barriers: Barriers::new("herald-barrier"),
            read_window: ReadWindow::new(settings.server_queue, settings.max_unread),
            store: StoreLog::new(settings.max_backoff),
            broker: Broker::new(settings.max_backoff),
            fanning: [None, None],
            stream_room: 0,
            out: Outputs::default(),
            adhoc: adhoc::Adhoc::default(),
            deferred: deferred::Book::default(),
            metrics,
            now,
            clock: Clock::new(now),
            keepalive_at: now + settings.keepalive,
            settings,
        };
        for job in restored.completed {
            let report = Event {
                routing_key: crate::broadcast::REPORT_KEY.to_string(),
                payload: job.report,
            };
            core.ledger.restore(job.key, job.seq, report, job.reported);
        }
        for (key, token) in restored.progress {
            core.ledger.advance(key, token);
        }
        for key in restored.cancelled {
            core.ledger.cancel(key);
        }
        core.restore_deferrals(restored.deferrals, wall_clock);
        core.update_job_gauges();
        core
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        self.now = now;
        match input {
            Input::StreamUp => self.on_stream_up(),
            Input::Stanza(stanza) if self.phase.has_stream() => self.on_stanza(stanza),
            Input::InvalidStanza(invalid) if self.phase.has_stream() => self.on_invalid(invalid),
            Input::Stanza(_) | Input::InvalidStanza(_) => {}
            Input::StreamLost => self.on_stream_lost(),
            Input::BrokerUp { generation } => self.on_broker_up(generation),
            Input::BrokerLost { generation } => self.on_broker_lost(generation),
            Input::Delivery(delivery) => {
                // The one place where a job of a connection since lost is
                // dropped (the broker has requeued it). Deliveries and the
                // link's events come on two channels: a delivery of a new
                // connection may come before its `BrokerUp`, one of a lost
                // connection after its `BrokerLost`.
                let generation = delivery.id.generation;
                if self.broker.is_new(generation) {
                    self.on_broker_up(generation);
                }
                if self.broker.live() == Some(generation) {
                    self.on_delivery(delivery);
                }
            }
            Input::Request(request) => self.on_request(request),
            Input::Published { id } => self.on_published(id),
            Input::PublishRefused { publish } => {
                self.metrics.events_failed.inc();
                let others = self.on_adhoc_refused(&publish) || self.on_final_refused(publish.id);
                if !others && self.broker.refused(publish, now).is_some() {
                    tracing::warn!("publish refused; retrying without redoing the job");
                }
            }
            Input::Committed { batch } => self.on_committed(batch),
            Input::CommitFailed { batch, error } => self.on_commit_failed(batch, &error),
            Input::Shutdown => self.on_shutdown(),
        }
        self.advance();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Phase::Settling { until } = self.phase {
            if until <= now {
                self.on_probes_settled();
            }
        }
        if self.phase.has_stream() && self.keepalive_at <= now {
            self.keepalive_at = now + self.settings.keepalive;
            let queued = self.out.stanzas_queued();
            // Checked once a keepalive: a lost answer holds the stream back
            // for at most about one keepalive more.
            let stale_after = self.settings.keepalive / 2;
            if let Some(id) = self.barriers.keepalive(now, queued, stale_after) {
                self.ping(id);
            }
            self.limiter.sweep(now);
            self.strangers.sweep(now);
        }
        for publish in self.broker.retry(now) {
            self.out.push_back(Output::Publish(publish));
        }
        self.close_due_deferrals();
        if let Phase::Draining { until } = self.phase {
            if until <= now {
                self.close_stream_work();
            }
        }
        self.advance();
    }

    /// The next output to carry out, in order. `room`: how many more
    /// stanzas the stream's queue takes now (a job's slices are cut to it
    /// and to the read window).
    pub fn poll_output(&mut self, room: usize) -> Option<Output> {
        self.stream_room = room.saturating_sub(self.out.len());
        if self.out.is_empty() {
            // After everything queued in this turn: one barrier covers it all.
            if self.phase.has_stream() {
                if let Some(id) = self.barriers.next_ping(self.now, self.out.stanzas_queued()) {
                    self.ping(id);
                }
            }
            if let Some(batch) = self.store.next_batch(self.now) {
                self.out.push_back(Output::Commit(batch));
            }
        }
        self.out.pop_front()
    }

    /// When [`Core::handle_timeout`] is to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Settling { until } | Phase::Draining { until } | Phase::Closing { until } => {
                Some(until)
            }
            Phase::Ready => self.jobs.held_settles_at(),
            Phase::Probing | Phase::Down { .. } => None,
        };
        let keepalive = self.phase.has_stream().then_some(self.keepalive_at);
        let next_slice = self.fans_out_now().then_some(self.now);
        // Final reports need a broker to go to.
        let final_report = (self.broker.live()).and_then(|_| self.deferred.next_due(self.now));
        [
            next_slice,
            final_report,
            phase,
            keepalive,
            self.broker.retry_at(),
            self.store.due_at(),
            self.window.changes_at(self.now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the shell should hand over jobs (backpressure aside).
    pub fn takes_jobs(&self) -> bool {
        self.phase.takes_jobs() && self.jobs.len() < self.window.size(self.now)
    }

    /// Shutdown is complete: every job is settled or left to the broker.
    pub fn is_finished(&self) -> bool {
        match self.phase {
            Phase::Closing { until } => {
                (self.jobs.len() == 0 && self.store.is_idle()) || until <= self.now
            }
            _ => false,
        }
    }

    /// Changes not committed when shutdown ends, for a last attempt.
    pub fn take_unwritten(&mut self) -> Vec<Change> {
        self.store.take_unwritten()
    }

    /// What may happen now that an input was handled.
    fn advance(&mut self) {
        if self.phase.takes_jobs() && (self.is_fanning() || self.jobs.held_len() > 0) {
            self.advance_held();
        }
        if matches!(self.phase, Phase::Draining { .. }) && self.barriers.is_idle() {
            self.close_stream_work();
        }
    }

    fn ping(&mut self, id: String) {
        let ping = stanzas::ping(&self.settings.domain, &self.settings.server, id);
        self.out.push_back(Output::Ping(ping));
    }

    fn apply(&mut self, effects: Effects) {
        for stanza in effects.stanzas {
            self.out.push_back(stanza.into());
        }
        self.publish_events(effects.events);
    }

    fn publish_events(&mut self, events: Vec<Event>) {
        for event in events {
            match self.broker.event(event.routing_key, event.payload) {
                Some(publish) => self.out.push_back(Output::Publish(publish)),
                None => self.metrics.events_failed.inc(),
            }
        }
    }

    fn update_job_gauges(&self) {
        self.metrics.held_jobs.set(self.jobs.held_len() as i64);
        self.metrics
            .remembered_jobs
            .set(self.ledger.completed_len() as i64);
    }
}

#[cfg(test)]
mod tests;
