//! Jobs from the server's proof of reading to their acknowledgement. A job
//! whose stanzas were read is remembered as completed; once the store has
//! committed that, its report is published; once the broker confirmed the
//! report, the job is acknowledged. So an acknowledged job is a job
//! remembered, and its redelivery or republication is a duplicate, never a
//! resend.

use super::broker::Awaiting;
use super::jobs::Stage;
use super::{Batch, Core, Covered, Destination, JobId, Output, Phase};
use crate::handler::{Event, Handler};
use crate::store::{Change, CompletedJob};

impl<H: Handler> Core<H> {
    /// The server answered barrier ping `id` (a result or an error: either
    /// proves it read everything before). False if `id` is not ours.
    pub(super) fn on_barrier_answered(&mut self, id: &str) -> bool {
        let Some(released) = self.barriers.answered(id, self.now) else {
            return false;
        };
        self.metrics
            .server_roundtrip
            .observe(released.roundtrip.as_secs_f64());
        self.read_window
            .answered(released.ahead, released.roundtrip, self.now);
        let size = self.read_window.size(self.now, false);
        self.metrics
            .read_window
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        let mut deferred_read = Vec::new();
        for covered in released.work {
            match covered {
                Covered::Deferred { slot, position } => deferred_read.push((slot, position)),
                Covered::Checkpoint { job, key, token } => {
                    if matches!(self.jobs.stage(job), Some(Stage::Fanning | Stage::Written)) {
                        self.ledger.advance(key.clone(), token.clone());
                        self.store
                            .write(Change::JobProgress { key, token }, self.now);
                    }
                }
                // Some servers (ejabberd) answer a probe from the user's
                // session, after the ping: allow for late answers.
                Covered::Probes { ticket } => {
                    self.strangers.answered(ticket);
                    self.jobs
                        .probes_answered(ticket, self.now + self.settings.probe_settle);
                }
                Covered::Job(id) => self.on_read(id),
            }
        }
        if !deferred_read.is_empty() {
            self.on_deferred_read(deferred_read);
        }
        if released.presence_settled && self.phase == Phase::Probing {
            self.phase = Phase::Settling {
                until: self.now + self.settings.probe_settle,
            };
        }
        true
    }

    /// The server read the job's stanzas.
    fn on_read(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            // Its broker connection was lost: the redelivery reports it.
            return;
        };
        if job.stage != Stage::Written {
            return;
        }
        let duration = self.now.saturating_duration_since(job.since);
        self.metrics.jobs.delivered.inc();
        self.metrics.job_duration.observe(duration.as_secs_f64());
        if job.names.is_empty() {
            self.complete(id);
            return;
        }
        let names = std::mem::take(&mut job.names);
        job.stage = Stage::Naming {
            unconfirmed: names.len(),
        };
        for part in names {
            let awaiting = Awaiting {
                names_part: true,
                ..Awaiting::settles(id, None)
            };
            let destination = Destination::Events {
                routing_key: part.routing_key,
            };
            let publish = self.broker.settling(awaiting, destination, part.payload);
            self.out.push_back(Output::Publish(publish));
        }
    }

    /// The broker confirmed a part naming the job's recipients.
    fn on_names_part_confirmed(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let Stage::Naming { unconfirmed } = &mut job.stage else {
            return;
        };
        *unconfirmed -= 1;
        if *unconfirmed == 0 {
            self.complete(id);
        }
    }

    /// The job's messages were read (and its names published): it is
    /// remembered as completed, then reported.
    fn complete(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        match (&job.key, &job.report) {
            (Some(key), Some(report)) => {
                let (key, report) = (key.clone(), report.clone());
                job.stage = Stage::Storing;
                let wall_clock = job.wall_clock(self.now);
                let deferral = self.jobs.take_deferral(id);
                // Opened in the batch that remembers the job as completed:
                // a report saying who waits is never ahead of the store.
                if let Some(deferral) = deferral {
                    self.open_deferral(&key, deferral, wall_clock);
                }
                self.remember_completed(&key, report);
                self.store.after_commit(id);
            }
            (_, Some(_)) => {
                let (key, report) = (job.key.clone(), job.report.take());
                if let Some(report) = report {
                    self.report(id, key, report);
                }
            }
            (_, None) => self.settle(id),
        }
    }

    fn remember_completed(&mut self, key: &str, report: Event) {
        let seq = self.ledger.complete(key, report.clone());
        let done = Change::JobDone(CompletedJob {
            key: key.to_string(),
            seq,
            reported: false,
            report: report.payload,
        });
        self.store.write(done, self.now);
        self.update_job_gauges();
    }

    pub(super) fn on_committed(&mut self, batch: u64) {
        let waiting = self.store.committed(batch);
        self.update_store_gauge();
        self.send_committed_replies(waiting.replies, None);
        for id in waiting.jobs {
            let Some(job) = self.jobs.get_mut(id) else {
                continue;
            };
            if job.stage != Stage::Storing {
                continue;
            }
            let (key, report) = (job.key.clone(), job.report.take());
            match report {
                Some(report) => self.report(id, key, report),
                None => self.settle(id),
            }
        }
    }

    pub(super) fn on_commit_failed(&mut self, batch: Batch, error: &str) {
        self.metrics.store_errors.inc();
        if let Some((retry_at, replies)) = self.store.failed(batch, self.now) {
            let retry_in = retry_at.saturating_duration_since(self.now);
            tracing::error!(
                error,
                ?retry_in,
                "store commit failed; jobs wait until it succeeds"
            );
            self.send_committed_replies(replies, Some(error));
        }
        self.update_store_gauge();
    }

    /// Herald is unready while the store fails to commit.
    fn update_store_gauge(&mut self) {
        let failing = i64::from(self.store.is_failing());
        if self.metrics.store_failing.get() != failing {
            self.metrics.store_failing.set(failing);
            self.metrics.update_ready();
        }
    }

    /// Publishes the job's report; the job is acknowledged once the broker
    /// confirmed it.
    pub(super) fn report(&mut self, id: JobId, key: Option<String>, report: Event) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        job.stage = Stage::Reporting;
        let awaiting = Awaiting::settles(id, key);
        let destination = Destination::Events {
            routing_key: report.routing_key,
        };
        let publish = self.broker.settling(awaiting, destination, report.payload);
        self.out.push_back(Output::Publish(publish));
    }

    pub(super) fn on_published(&mut self, id: u64) {
        self.metrics.events_confirmed.inc();
        let Some(awaiting) = self.broker.confirmed(id) else {
            if !self.on_final_confirmed(id) {
                self.on_adhoc_confirmed(id);
            }
            return;
        };
        if awaiting.names_part {
            self.on_names_part_confirmed(awaiting.job);
            return;
        }
        if let Some(key) = awaiting.reported_key {
            // A completed job whose report never went out still owes it
            // after a restart; this one no longer does.
            self.store.write(Change::JobReported(key.clone()), self.now);
            self.on_job_reported(&key);
        }
        self.settle(awaiting.job);
    }

    /// The job is done with: acknowledged in delivery order.
    pub(super) fn settle(&mut self, id: JobId) {
        if let Some(job) = self.jobs.ack(id, &mut self.out) {
            self.window.settled(job.taken, self.now);
            let size = self.window.size(self.now);
            self.metrics
                .job_window
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
    }
}
