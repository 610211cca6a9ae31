//! Jobs from their delivery to their fan-out: held in order while unknown
//! recipients are probed, handed to the handler, and their stanzas queued
//! with a barrier after each checkpoint.

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::presence::Type as PresenceType;

use super::broker::Awaiting;
use super::jobs::{Hold, Stage, Turn};
use super::{Core, Covered, Delivery, Destination, JobId, Lane, Output, Phase, StrangerTest};
use crate::handler::{Context, Effects, Handler, JobOutcome, Tally};
use crate::producers::Refusal;
use crate::xmpp::stanzas;

impl<H: Handler> Core<H> {
    /// A job from the queue waits behind those already held; then what may
    /// go goes (see [`Core::advance_held`]).
    pub(super) fn on_delivery(&mut self, delivery: Delivery) {
        if matches!(self.phase, Phase::Draining { .. } | Phase::Closing { .. }) {
            let id = delivery.id;
            self.jobs.take(delivery, self.now, self.now);
            self.jobs.requeue(id, &mut self.out);
            return;
        }
        let since = delivery
            .age
            .and_then(|age| self.now.checked_sub(age))
            .unwrap_or(self.now);
        let admitted = self.admit(&delivery);
        let id = delivery.id;
        self.jobs.take(delivery, since, self.now);
        if let Err(refusal) = admitted {
            self.jobs.unhold(id);
            self.refuse(id, &refusal);
        }
        self.update_job_gauges();
    }

    /// Whether the job's producer may publish it now: a listed one within
    /// its rate, or another as `producers.unlisted` says. A job over its
    /// producer's rate is dead-lettered rather than held: held, it would
    /// hold every job behind it in its lane, other producers' too (a lane
    /// goes in order), and given back to the queue it would come straight
    /// back; the dead letter says why, and its producer publishes it again
    /// later. A redelivery is not counted again: its first delivery was.
    fn admit(&mut self, delivery: &Delivery) -> Result<(), Refusal> {
        let listed = self.settings.producers.admit(delivery.user_id.as_deref())?;
        match listed {
            Some(listed) if !delivery.redelivered => self.rates.take(listed, self.now),
            _ => Ok(()),
        }
    }

    /// Fans out held jobs, urgent lane first, each lane in order while its
    /// first may go: examined and without strangers, or with its probes
    /// answered; a lane's job fanning out (see [`Core::fan_out_slice`])
    /// goes before the jobs behind it. Then examines the jobs behind, so
    /// that their probes go out now rather than in turn.
    pub(super) fn advance_held(&mut self) {
        for lane in Lane::ALL {
            self.advance_lane(lane);
        }
        self.update_job_gauges();
    }

    fn advance_lane(&mut self, lane: Lane) {
        while self.fan_out_slice(lane) {
            let Some((id, turn)) = self.jobs.first_held(lane, self.now) else {
                break;
            };
            let probing = match turn {
                Turn::Wait => break,
                Turn::Examine => true,
                Turn::Run => false,
            };
            let (outcome, effects) = self.examine(id, probing);
            match outcome {
                JobOutcome::Probe { users } if probing => {
                    if users.is_empty() {
                        self.jobs.set_stage(id, Stage::Held(Hold::Examined));
                    } else {
                        self.probe_strangers(id, users);
                    }
                }
                // The same job from the other queue is going out: this
                // one waits for its report (and is then a duplicate).
                outcome if self.fanning_elsewhere(lane, &outcome) => {
                    self.jobs.set_stage(id, Stage::Held(Hold::Examined));
                    break;
                }
                outcome => {
                    self.jobs.pop_held(lane);
                    self.finish(id, outcome, effects);
                }
            }
        }
        let waiting_first = usize::from(!self.is_fanning_in(lane));
        for id in self.jobs.unexamined_behind(lane, waiting_first) {
            match self.examine(id, true).0 {
                JobOutcome::Probe { users } if !users.is_empty() => self.probe_strangers(id, users),
                // Run in its turn, against the presence of that moment.
                _ => self.jobs.set_stage(id, Stage::Held(Hold::Examined)),
            }
        }
    }

    /// The handler's verdict on a job; with `probing`, it may name
    /// strangers to probe first.
    fn examine(&mut self, id: JobId, probing: bool) -> (JobOutcome, Effects) {
        let mut effects = Effects::default();
        let Some(job) = self.jobs.get(id) else {
            return (JobOutcome::Probe { users: Vec::new() }, effects);
        };
        let settings = &self.settings;
        let wall_clock = job.wall_clock(self.now);
        let room = self.deferral_room();
        let mut ctx = handler_context!(self, &mut effects)
            .with_deferral_room(room)
            .for_redelivery(job.delivery.redelivered)
            .at_wall_clock(wall_clock)
            .published_by(settings.producers.listed(job.delivery.user_id.as_deref()));
        if probing {
            ctx = ctx.probing(StrangerTest {
                user_domains: &settings.user_domains,
                presence: &self.presence,
                strangers: &self.strangers,
                now: self.now,
            });
        }
        let outcome = self.handler.on_job(&mut ctx, &job.delivery.payload);
        (outcome, effects)
    }

    /// Probes `users` for held job `id`, which then waits for a barrier
    /// behind the probes.
    fn probe_strangers(&mut self, id: JobId, users: Vec<BareJid>) {
        self.metrics
            .probes
            .unknown_recipient
            .inc_by(users.len() as u64);
        tracing::debug!(users = users.len(), "probing unknown recipients");
        let ticket = self.jobs.probing(id);
        for user in users {
            let probe = stanzas::presence(PresenceType::Probe, &self.settings.contact, &user);
            self.out.push_back(Output::Stanza(probe.into()));
            self.strangers.probed(user, self.now, ticket);
        }
        self.barriers.push(Covered::Probes { ticket });
    }

    pub(super) fn finish(&mut self, id: JobId, outcome: JobOutcome, effects: Effects) {
        match outcome {
            JobOutcome::Probe { .. } => {
                // Only a handler that ignores `is_stranger` asks again once
                // its probes were answered; holding the job would loop.
                let reason = "the handler asked for probes of recipients already probed";
                self.dead_letter(id, reason.to_string());
            }
            JobOutcome::DeadLetter { reason } => self.dead_letter(id, reason),
            JobOutcome::Refused(refusal) => self.refuse(id, &refusal),
            JobOutcome::Fanning(slices) => {
                self.publish_events(effects.events);
                self.start_fanning(id, slices);
            }
            JobOutcome::Duplicate { report, key } => {
                self.metrics.jobs.duplicate.inc();
                // The earlier job's own report, if nobody published it yet:
                // should this publish be lost too, it is owed again.
                let owed = self.ledger.earlier(&key).is_some_and(|e| e.report_owed);
                self.ledger.reporting(&key);
                let Some(job) = self.jobs.get_mut(id) else {
                    return;
                };
                job.key = owed.then_some(key);
                job.report = report;
                // The earlier completion it answers from may not be
                // committed yet: the duplicate is reported (and so
                // acknowledged) only once everything written so far is.
                job.stage = Stage::Storing;
                self.store.after_commit(id);
            }
            JobOutcome::Done {
                report,
                names,
                deferral,
                tally,
                key,
            } => {
                self.count_recipients(tally);
                if let (Some(key), Some(report)) = (&key, &report) {
                    self.ledger.start(key.clone(), report.clone());
                }
                self.write_job(id, effects, key.as_deref());
                if let Some(job) = self.jobs.get_mut(id) {
                    job.key = key;
                    job.report = report;
                    job.names = names;
                    job.stage = Stage::Written;
                }
                self.jobs.set_deferral(id, deferral);
                self.barriers.push(Covered::Job(id));
            }
        }
    }

    /// A job its producer may not publish: dead-lettered, and counted by
    /// the kind of refusal.
    fn refuse(&mut self, id: JobId, refusal: &Refusal) {
        self.metrics.refusals.count(refusal);
        self.dead_letter(id, refusal.to_string());
    }

    fn dead_letter(&mut self, id: JobId, reason: String) {
        tracing::warn!(%reason, "job dead-lettered");
        self.metrics.jobs.dead_lettered.inc();
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        job.stage = Stage::Reporting;
        let payload = std::mem::take(&mut job.delivery.payload);
        let awaiting = Awaiting::settles(id, None);
        let destination = Destination::DeadLetter { job: id, reason };
        let publish = self.broker.settling(awaiting, destination, payload);
        self.out.push_back(Output::Publish(publish));
    }

    /// A job's stanzas, with a barrier after each checkpoint so that its
    /// progress is saved as the server reads it; then its events.
    pub(super) fn write_job(&mut self, id: JobId, effects: Effects, key: Option<&str>) {
        let Effects {
            stanzas,
            events,
            checkpoints,
        } = effects;
        let mut checkpoints = checkpoints.into_iter().peekable();
        let total = stanzas.len();
        for (sent, stanza) in stanzas.into_iter().enumerate() {
            while let Some((_, token)) = checkpoints.next_if(|(at, _)| *at <= sent) {
                self.checkpoint(id, key, token);
            }
            self.out.push_back(stanza.into());
        }
        for (_, token) in checkpoints.filter(|(at, _)| *at <= total) {
            self.checkpoint(id, key, token);
        }
        self.publish_events(events);
    }

    fn checkpoint(&mut self, job: JobId, key: Option<&str>, token: Vec<u8>) {
        let Some(key) = key else { return };
        self.barriers.push(Covered::Checkpoint {
            job,
            key: key.to_string(),
            token,
        });
        let id = self.barriers.ping_now(self.now, self.out.stanzas_queued());
        self.ping(id);
    }

    fn count_recipients(&self, tally: Tally) {
        let counters = &self.metrics.recipients;
        counters.sent.inc_by(tally.sent);
        counters.offline.inc_by(tally.offline);
        counters.unavailable.inc_by(tally.unavailable);
        counters.invalid.inc_by(tally.invalid);
        counters.expired.inc_by(tally.expired);
        counters.cancelled.inc_by(tally.cancelled);
        if tally.job_cancelled {
            self.metrics.jobs.cancelled.inc();
        }
    }
}
