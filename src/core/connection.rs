//! The connections coming and going: the XMPP stream (presence rebuilt
//! after each connect, unread jobs requeued after each loss), the broker
//! connection (its jobs leave Herald's hands when it is lost), and
//! shutdown.

use xmpp_parsers::presence::Type as PresenceType;

use super::jobs::Stage;
use super::{Core, Covered, Output, Phase, CLOSE_LIMIT, DRAIN_LIMIT};
use crate::handler::Handler;
use crate::user_text::UserKey;
use crate::xmpp::stanzas;

impl<H: Handler> Core<H> {
    /// A new stream knows nothing of the old one's presence: forget it and
    /// probe every subscriber, then wait for the server to answer the probes.
    pub(super) fn on_stream_up(&mut self) {
        if !matches!(self.phase, Phase::Down { .. }) {
            return;
        }
        // Kept across streams that broke before presence was rebuilt.
        self.online_before.extend(self.presence.users().cloned());
        self.forget_presence();
        self.strangers.clear();
        self.keepalive_at = self.now + self.settings.keepalive;
        let probes = self.probe_subscribers(|_| true);
        tracing::info!(probes, "probing subscribers");
    }

    /// Probes the subscribers among `users`, then asks for the barrier
    /// that settles presence; returns how many probes went.
    fn probe_subscribers(&mut self, users: impl Fn(&UserKey) -> bool) -> usize {
        self.phase = Phase::Probing;
        let mut probes = 0;
        for (user, contact) in self
            .presence
            .subscription_pairs()
            .filter(|(user, _)| users(user))
        {
            // Parsed again to build the stanza; it parsed when it was
            // subscribed, and its text is what parsing gives.
            let Ok(user) = user.to_bare() else {
                tracing::warn!(%user, "a subscriber's JID no longer parses; not probed");
                continue;
            };
            let probe = stanzas::presence(PresenceType::Probe, contact, &user);
            self.out.push_back(Output::Stanza(probe.into()));
            probes += 1;
        }
        self.metrics.probes.subscriber.inc_by(probes as u64);
        self.barriers.request_settle();
        probes
    }

    /// The probes' answers had their time. Users online on the last stream
    /// who stay silent are probed once more before jobs are taken: an
    /// ejabberd cluster that just lost the node Herald was attached to
    /// loses or delays answers from the other nodes while it moves
    /// Herald's route, and without a second probe such a user would count
    /// offline until their next presence change.
    pub(super) fn on_probes_settled(&mut self) {
        let mut silent = std::mem::take(&mut self.online_before);
        silent.retain(|user| self.presence.since(user).is_none());
        let probes = if silent.is_empty() {
            0
        } else {
            self.probe_subscribers(|user| silent.contains(user))
        };
        if probes == 0 {
            self.on_presence_rebuilt();
        } else {
            tracing::info!(
                probes,
                "probing again the users online before and silent since"
            );
        }
    }

    fn on_presence_rebuilt(&mut self) {
        self.phase = Phase::Ready;
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
    pub(super) fn on_stream_lost(&mut self) {
        let closing = matches!(self.phase, Phase::Draining { .. });
        self.phase = match self.phase {
            Phase::Down { was_ready } => Phase::Down { was_ready },
            Phase::Ready => Phase::Down { was_ready: true },
            Phase::Probing | Phase::Settling { .. } => Phase::Down { was_ready: false },
            phase @ Phase::Closing { .. } => phase,
            Phase::Draining { .. } => Phase::Closing {
                until: self.now + CLOSE_LIMIT,
            },
        };
        self.jobs.restart_held();
        self.metrics.presence_ready.set(0);
        self.metrics.update_ready();
        self.requeue_unread();
        if closing {
            tracing::info!("stream lost while draining");
        }
    }

    /// Every job whose stanzas are not proven read goes back to the queue.
    fn requeue_unread(&mut self) {
        let mut requeued = 0;
        for covered in self.barriers.abandon(self.out.stanzas_queued()) {
            let id = match covered {
                Covered::Job(id) => id,
                Covered::Deferred { slot, position } => {
                    self.on_deferred_unsent(slot, position);
                    continue;
                }
                Covered::Checkpoint { .. } | Covered::Probes { .. } => continue,
            };
            if self.jobs.stage(id) != Some(Stage::Written) {
                continue;
            }
            if let Some(job) = self.jobs.requeue(id, &mut self.out) {
                requeued += 1;
                self.metrics.jobs.requeued.inc();
                if let Some(key) = &job.key {
                    self.ledger.abandon(key);
                }
            }
        }
        requeued += self.requeue_fanning();
        if requeued > 0 {
            tracing::warn!(
                jobs = requeued,
                "requeueing jobs not confirmed by the server"
            );
        }
    }

    pub(super) fn on_broker_up(&mut self, generation: u64) {
        if !self.broker.is_new(generation) {
            return;
        }
        if let Some(live) = self.broker.live() {
            // A newer connection means the live one is gone.
            self.on_broker_lost(live);
        }
        let dropped = self.broker.up(generation);
        self.close_due_deferrals();
        if dropped > 0 {
            tracing::warn!(
                events = dropped,
                "events dropped while the broker was not connected"
            );
        }
    }

    /// The broker requeued every unacknowledged job of the lost connection,
    /// so they leave Herald's hands here. A job whose stanzas the server
    /// read is remembered as completed, and its report is owed to its
    /// redelivery; one that was written but not proven read stops counting
    /// as in progress, so that its redelivery is delivered again (after its
    /// last confirmed checkpoint) rather than answered as a duplicate of an
    /// attempt that can never report.
    pub(super) fn on_broker_lost(&mut self, generation: u64) {
        self.broker.lost(generation);
        self.on_adhoc_broker_lost(generation);
        self.on_final_broker_lost();
        self.forget_fanning_of(generation);
        for job in self.jobs.forget_generation(generation) {
            self.metrics.jobs.requeued.inc();
            let Some(key) = &job.key else { continue };
            match job.stage {
                // Not remembered as completed: the redelivery resumes from
                // the last checkpoint (a named job's last is at its end).
                Stage::Fanning | Stage::Written | Stage::Naming { .. } => self.ledger.abandon(key),
                Stage::Storing | Stage::Reporting => self.ledger.owe(key),
                Stage::Held(_) => {}
            }
        }
        self.update_job_gauges();
    }

    /// Stop taking jobs; held jobs wrote nothing and go back to the queue;
    /// the server gets a bounded time to confirm what was written.
    pub(super) fn on_shutdown(&mut self) {
        for id in self.jobs.drain_held() {
            if self.jobs.requeue(id, &mut self.out).is_some() {
                self.metrics.jobs.requeued.inc();
            }
        }
        self.phase = match self.phase {
            phase @ (Phase::Draining { .. } | Phase::Closing { .. }) => phase,
            Phase::Down { .. } => Phase::Closing {
                until: self.now + CLOSE_LIMIT,
            },
            _ => Phase::Draining {
                until: self.now + DRAIN_LIMIT,
            },
        };
        self.update_job_gauges();
    }

    /// Draining is over (all read, or out of time): what is not read goes
    /// back to the queue.
    pub(super) fn close_stream_work(&mut self) {
        self.requeue_unread();
        self.phase = Phase::Closing {
            until: self.now + CLOSE_LIMIT,
        };
    }
}
