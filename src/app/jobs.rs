//! Jobs from taking to acknowledging: holding them while unknown
//! recipients are probed, fan-out through the handler, the barriers that
//! tell what the server has read, checkpoints inside long jobs, remembering
//! completed jobs, and publishing reports once the store has committed them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::presence::Type as PresenceType;

use super::held::Turn;
use super::strangers::StrangerTest;
use super::{Component, Ledger};
use crate::amqp::{Job, Publisher, Taken};
use crate::handler::{Context, Effects, Event, Handler, JobOutcome, Tally};
use crate::presence::PresenceBook;
use crate::store::{self, CompletedJob, Write};
use crate::xmpp::{stanzas, Session};

/// What waits for the server to read the stanzas before it.
pub(super) enum Work {
    /// A point inside a job: its progress is saved once read.
    Checkpoint {
        key: String,
        token: Vec<u8>,
    },
    Job(PendingJob),
    /// Probes of unknown recipients: their held jobs may go once read
    /// (and answered).
    Probes {
        ticket: u64,
    },
}

/// A job whose stanzas are written but not yet known to be read.
pub(super) struct PendingJob {
    pub(super) taken: Taken,
    pub(super) key: Option<String>,
    report: Option<Event>,
    /// When it was published (its AMQP timestamp) or else taken.
    since: SystemTime,
}

impl<H: Handler> Component<H> {
    pub(super) fn on_barrier_answered(&mut self, id: &str) -> bool {
        let Some(released) = self.barriers.answered(id, Instant::now()) else {
            return false;
        };
        self.metrics
            .server_roundtrip
            .observe(released.roundtrip.as_secs_f64());
        let now = SystemTime::now();
        let mut reports = Vec::new();
        for work in released.work {
            let job = match work {
                Work::Checkpoint { key, token } => {
                    self.record_progress(key, token);
                    continue;
                }
                Work::Probes { ticket } => {
                    // Some servers (ejabberd) answer a probe from the
                    // user's session, after the ping: allow for late answers.
                    self.held
                        .answered(ticket, Instant::now() + self.settle_delay);
                    continue;
                }
                Work::Job(job) => job,
            };
            if !self.link.is_current(&job.taken) {
                // Its AMQP connection is gone and the broker has requeued
                // it: the redelivery reports it, not this one.
                self.metrics.jobs.requeued.inc();
                if let Some(key) = &job.key {
                    self.jobs.abandon(key);
                }
                continue;
            }
            self.metrics.jobs.delivered.inc();
            let duration = now.duration_since(job.since).unwrap_or_default();
            self.metrics.job_duration.observe(duration.as_secs_f64());
            if let (Some(key), Some(report)) = (&job.key, &job.report) {
                self.record_completion(key, report);
            }
            reports.push((job.key, job.report, job.taken));
        }
        if !reports.is_empty() {
            self.publish_when_stored(reports);
        }
        if released.presence_settled {
            self.settle_at = Some(Instant::now() + self.settle_delay);
        }
        true
    }

    /// A job from the queue waits behind those already held; the event
    /// loop then lets through what may go (see [`Component::advance_held`]).
    pub(super) fn on_job(&mut self, job: Job) {
        if job.taken.generation() != self.jobs_generation {
            self.jobs_generation = job.taken.generation();
            self.forget_jobs_of_lost_connections();
        }
        self.held.push(job);
        self.metrics.held_jobs.set(self.held.len() as i64);
    }

    /// Fans out held jobs in order while the first may go: examined and
    /// without strangers, or with its probes answered. Then examines the
    /// jobs behind it, so that their probes go out now rather than in turn.
    pub(super) fn advance_held(&mut self, session: &mut Session) {
        loop {
            let now = Instant::now();
            let Some((job, turn)) = self.held.first(now) else {
                break;
            };
            if !self.link.is_current(&job.taken) {
                // Its AMQP connection is gone: the broker has requeued it.
                // Checked as each job comes first, not over the whole
                // queue on every turn of the loop.
                self.held.pop_first();
                self.metrics.jobs.requeued.inc();
                continue;
            }
            let probing = match turn {
                Turn::Wait => break,
                Turn::Examine => Some(StrangerTest {
                    server: &self.server,
                    subscribers: &self.subscriptions,
                    strangers: &self.strangers,
                    now,
                }),
                Turn::Run => None,
            };
            let (outcome, effects) = examine(
                &mut self.handler,
                &self.domain,
                &self.presence,
                &self.jobs,
                probing,
                job,
            );
            match outcome {
                JobOutcome::Probe { users } if turn == Turn::Examine => {
                    if users.is_empty() {
                        self.held.examined(0);
                    } else {
                        self.probe_strangers(session, users, 0);
                    }
                }
                outcome => {
                    let Some(job) = self.held.pop_first() else {
                        break;
                    };
                    self.finish_job(session, job, outcome, effects);
                }
            }
        }
        for position in self.held.unexamined_behind() {
            let Some(job) = self.held.get(position) else {
                continue;
            };
            let test = StrangerTest {
                server: &self.server,
                subscribers: &self.subscriptions,
                strangers: &self.strangers,
                now: Instant::now(),
            };
            let (outcome, _) = examine(
                &mut self.handler,
                &self.domain,
                &self.presence,
                &self.jobs,
                Some(test),
                job,
            );
            match outcome {
                JobOutcome::Probe { users } if !users.is_empty() => {
                    self.probe_strangers(session, users, position)
                }
                // Run in its turn, against the presence of that moment.
                _ => self.held.examined(position),
            }
        }
        self.metrics.held_jobs.set(self.held.len() as i64);
    }

    /// Probes `users` for the held job at `position`, which waits for a
    /// barrier behind the probes.
    fn probe_strangers(&mut self, session: &mut Session, users: Vec<BareJid>, position: usize) {
        let now = Instant::now();
        self.metrics
            .probes
            .unknown_recipient
            .inc_by(users.len() as u64);
        tracing::debug!(users = users.len(), "probing unknown recipients");
        for user in users {
            session.enqueue(stanzas::presence(PresenceType::Probe, &self.contact, &user));
            self.strangers.probed(user, now);
        }
        let ticket = self.held.probing(position);
        self.barriers.push(Work::Probes { ticket });
    }

    /// On shutdown: held jobs wrote nothing; they go back to the queue.
    pub(super) fn requeue_held(&mut self) {
        for job in self.held.drain() {
            self.metrics.jobs.requeued.inc();
            job.taken.requeue();
        }
        self.metrics.held_jobs.set(0);
    }

    fn finish_job(
        &mut self,
        session: &mut Session,
        job: Job,
        outcome: JobOutcome,
        effects: Effects,
    ) {
        match outcome {
            JobOutcome::Probe { .. } => {
                // Only a handler that ignores `is_stranger` asks again once
                // its probes were answered; holding the job would loop.
                let reason = "the handler asked for probes of recipients already probed";
                tracing::error!(reason, "job dead-lettered");
                self.metrics.jobs.dead_lettered.inc();
                self.link.publisher().dead_letter(job, reason);
            }
            JobOutcome::DeadLetter { reason } => {
                tracing::warn!(%reason, "job dead-lettered");
                self.metrics.jobs.dead_lettered.inc();
                self.link.publisher().dead_letter(job, &reason);
            }
            JobOutcome::Duplicate { report, key } => {
                self.metrics.jobs.duplicate.inc();
                self.jobs.reporting(&key);
                self.publish_reports(vec![(Some(key), report, job.taken)]);
            }
            JobOutcome::Done { report, tally, key } => {
                self.count_recipients(tally);
                self.apply_job(session, effects, key.as_deref());
                if let (Some(key), Some(report)) = (&key, &report) {
                    self.jobs.start(key.clone(), report.clone());
                }
                let since = published_at(&job).unwrap_or_else(SystemTime::now);
                self.barriers.push(Work::Job(PendingJob {
                    taken: job.taken,
                    key,
                    report,
                    since,
                }));
            }
        }
    }

    /// A job taken on a broker connection since lost can be neither
    /// acknowledged nor reported: the broker has requeued it, and its
    /// redelivery is the job now, not a repeat of it. So it stops counting
    /// as in progress (else its redelivery would be answered as a duplicate
    /// of an attempt that never reports, and acknowledged without its
    /// messages being confirmed). Its stanzas still wait for the server;
    /// when read, they are dropped as stale.
    fn forget_jobs_of_lost_connections(&mut self) {
        for work in self.barriers.pending_mut() {
            let Work::Job(job) = work else { continue };
            if self.link.is_current(&job.taken) {
                continue;
            }
            if let Some(key) = job.key.take() {
                tracing::debug!(job = %key, "taken on a lost broker connection; its redelivery is the job now");
                self.jobs.abandon(&key);
            }
        }
    }

    fn count_recipients(&self, tally: Tally) {
        let counters = &self.metrics.recipients;
        counters.sent.inc_by(tally.sent);
        counters.offline.inc_by(tally.offline);
        counters.unavailable.inc_by(tally.unavailable);
        counters.invalid.inc_by(tally.invalid);
    }

    /// A job's stanzas, with a barrier after each checkpoint so that its
    /// progress is saved as the server reads it.
    fn apply_job(&mut self, session: &mut Session, effects: Effects, key: Option<&str>) {
        let Effects {
            stanzas,
            events,
            checkpoints,
        } = effects;
        let mut checkpoints = checkpoints.into_iter().peekable();
        let total = stanzas.len();
        for (sent, stanza) in stanzas.into_iter().enumerate() {
            self.pass_checkpoints(session, &mut checkpoints, key, sent);
            session.enqueue(stanza);
        }
        self.pass_checkpoints(session, &mut checkpoints, key, total);
        self.publish_events(events);
    }

    fn pass_checkpoints(
        &mut self,
        session: &mut Session,
        checkpoints: &mut std::iter::Peekable<std::vec::IntoIter<(usize, Vec<u8>)>>,
        key: Option<&str>,
        sent: usize,
    ) {
        while let Some((_, token)) = checkpoints.next_if(|(at, _)| *at <= sent) {
            if let Some(key) = key {
                self.barriers.push(Work::Checkpoint {
                    key: key.to_string(),
                    token,
                });
                let id = self.barriers.ping_now(Instant::now());
                session.enqueue(stanzas::ping(&self.domain, &self.server, id));
            }
        }
    }

    fn record_progress(&mut self, key: String, token: Vec<u8>) {
        self.jobs.advance(key.clone(), token.clone());
        let _ = self
            .store
            .send(Write::Change(store::Change::JobProgress { key, token }));
    }

    /// Checkpoints of jobs that an earlier run did not complete.
    pub(super) fn restore_progress(&mut self, progress: Vec<(String, Vec<u8>)>) {
        for (key, token) in progress {
            self.jobs.advance(key, token);
        }
    }

    /// Jobs completed in earlier runs, oldest first, so duplicates are caught.
    pub(super) fn restore_completed(&mut self, completed: Vec<CompletedJob>) {
        for job in completed {
            let report = Event {
                routing_key: crate::broadcast::REPORT_KEY.to_string(),
                payload: job.report,
            };
            for key in self.jobs.restore(job.key, job.seq, report, job.reported) {
                let _ = self
                    .store
                    .send(Write::Change(store::Change::JobForgotten(key)));
            }
        }
        self.metrics
            .remembered_jobs
            .set(self.jobs.completed_len() as i64);
    }

    fn record_completion(&mut self, key: &str, report: &Event) {
        let completion = self.jobs.complete(key, report.clone());
        let _ = self
            .store
            .send(Write::Change(store::Change::JobDone(CompletedJob {
                key: key.to_string(),
                seq: completion.seq,
                reported: false,
                report: report.payload.clone(),
            })));
        for forgotten in completion.forgotten {
            let _ = self
                .store
                .send(Write::Change(store::Change::JobForgotten(forgotten)));
        }
        self.metrics
            .remembered_jobs
            .set(self.jobs.completed_len() as i64);
    }

    /// Publishes the reports (then acknowledges the jobs) once the store has
    /// committed their completion: a job acknowledged is a job remembered,
    /// so its redelivery or republication is a duplicate, never a resend.
    fn publish_when_stored(&self, reports: Vec<Report>) {
        let (synced, committed) = oneshot::channel();
        let _ = self.store.send(Write::Sync(synced));
        let publisher = self.link.publisher().clone();
        let store = self.store.clone();
        let abandoned = self.abandoned_reports.clone();
        tokio::spawn(async move {
            // An error means the writer is gone (shutdown): publish anyway.
            let _ = committed.await;
            publish(&publisher, &store, &abandoned, reports).await;
        });
    }

    fn publish_reports(&self, reports: Vec<Report>) {
        let publisher = self.link.publisher().clone();
        let store = self.store.clone();
        let abandoned = self.abandoned_reports.clone();
        tokio::spawn(async move { publish(&publisher, &store, &abandoned, reports).await });
    }

    /// A completed job's report was given up: it is owed again.
    pub(super) fn on_report_abandoned(&mut self, key: &str) {
        self.jobs.owe(key);
    }
}

/// The handler's verdict on a job; with `probing`, it may name strangers
/// to probe first.
fn examine<H: Handler>(
    handler: &mut H,
    domain: &BareJid,
    presence: &PresenceBook,
    jobs: &Ledger,
    probing: Option<StrangerTest<'_>>,
    job: &Job,
) -> (JobOutcome, Effects) {
    let mut effects = Effects::default();
    let mut ctx =
        Context::new(domain, presence, jobs, &mut effects).for_redelivery(job.delivery.redelivered);
    if let Some(test) = probing {
        ctx = ctx.probing(test);
    }
    let outcome = handler.on_job(&mut ctx, &job.delivery.data);
    (outcome, effects)
}

/// A job's key, its report, and what acknowledges it.
type Report = (Option<String>, Option<Event>, Taken);

/// Publishes each report and acknowledges its job once the broker confirmed
/// it, then records in the store that the report went out: a job stored as
/// completed but not reported still owes its report after a crash. A report
/// the link gave up on is sent back to the loop, which marks it owed.
async fn publish(
    publisher: &Publisher,
    store: &mpsc::UnboundedSender<Write>,
    abandoned: &mpsc::UnboundedSender<String>,
    reports: Vec<Report>,
) {
    let mut confirmations = Vec::new();
    for (key, report, taken) in reports {
        match report {
            Some(report) => {
                let (confirmed, confirmation) = oneshot::channel();
                publisher.report(&report.routing_key, report.payload, taken, confirmed);
                confirmations.extend(key.map(|key| (key, confirmation)));
            }
            None => taken.ack(),
        }
    }
    for (key, confirmation) in confirmations {
        if confirmation.await.is_ok() {
            let _ = store.send(Write::Change(store::Change::JobReported(key)));
        } else {
            // The link dropped it (its connection was lost): the job comes
            // back from the queue and must then get this report.
            let _ = abandoned.send(key);
        }
    }
}

/// The job's AMQP `timestamp` (seconds since the epoch), if its publisher set one.
fn published_at(job: &Job) -> Option<SystemTime> {
    let seconds = (*job.delivery.properties.timestamp())?;
    let at = UNIX_EPOCH + Duration::from_secs(seconds);
    // A publisher's clock ahead of ours would give negative durations.
    (at <= SystemTime::now()).then_some(at)
}
