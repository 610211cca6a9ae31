//! A window's final report going out. Whatever it refers to goes first and
//! is confirmed before it: the job's own report if a restart left it owed,
//! and the parts naming who was reached late and who was missed; then the
//! final report. A refused publish or a lost broker connection starts the
//! whole over after a pause; the window is forgotten once the final report
//! is confirmed.

use std::time::Duration;

use super::final_report;
use super::Slot;
use crate::core::{Core, Destination, Output};
use crate::handler::{Event, Handler};
use crate::store::Change;

/// How long a final report waits before it is tried again.
const FINAL_RETRY: Duration = Duration::from_secs(1);

impl<H: Handler> Core<H> {
    /// Publishes the final reports due now (with a broker to take them).
    pub(in crate::core) fn close_due_deferrals(&mut self) {
        if self.broker.live().is_none() {
            return;
        }
        for slot in self.deferred.due(self.now) {
            if self.window_job_in_flight(slot) {
                // A redelivery of its job: its report goes first.
                if let Some(window) = self.deferred.get_mut(slot) {
                    window.retry_at = Some(self.now + FINAL_RETRY);
                }
                continue;
            }
            self.deferred.stop_waiting(slot);
            let Some(window) = self.deferred.get(slot) else {
                continue;
            };
            let mut events = final_report::events(
                window,
                window.terms.until_ms,
                self.settings.names_part_bytes,
            );
            let last = events.pop();
            // The job's report, if a restart left it owed (the window is
            // stored, so its job's completion is): the final report never
            // comes without it.
            let key = window.terms.key.clone();
            let restored = window.restored;
            let owed = (self.ledger.earlier(&key)).filter(|job| job.report_owed && restored);
            let owed = owed.map(|job| job.report.clone());
            let owes_report = owed.is_some();
            if let Some(report) = owed {
                self.ledger.reporting(&key);
                events.insert(0, report);
            }
            let ids = self.publish_all(events);
            if let Some(window) = self.deferred.get_mut(slot) {
                window.owed_report = ids.first().copied().filter(|_| owes_report);
                window.final_report = last;
                window.closing = Some(ids);
            }
            self.publish_final_if_ready(slot);
        }
        self.update_deferred_gauge();
    }

    /// The window of the job `key`, if one is open, ends now (the job was
    /// cancelled): whoever still waits is missed, and its final report
    /// says it was cancelled.
    pub(in crate::core) fn end_window(&mut self, key: &str) {
        if let Some(window) = self.deferred.by_key_mut(key) {
            window.terms.until = window.terms.until.min(self.now);
            window.cancelled = true;
            tracing::info!(job = key, "window ended by a cancellation");
        }
        self.close_due_deferrals();
    }

    /// Whether a job with the window's key is in flight in the core.
    fn window_job_in_flight(&self, slot: Slot) -> bool {
        let Some(window) = self.deferred.get(slot) else {
            return false;
        };
        let key = window.terms.key.as_str();
        !window.is_reported()
            && !(self.jobs)
                .ids_where(|job| job.key.as_deref() == Some(key))
                .is_empty()
    }

    /// Publishes `events` on the live connection: their publish ids.
    fn publish_all(&mut self, events: Vec<Event>) -> Vec<u64> {
        let Some(generation) = self.broker.live() else {
            return Vec::new();
        };
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            let destination = Destination::Events {
                routing_key: event.routing_key,
            };
            let publish = self
                .broker
                .confirmable(generation, destination, event.payload);
            ids.extend(publish.id);
            self.out.push_back(Output::Publish(publish));
        }
        ids
    }

    /// Once everything before it is confirmed, the final report goes.
    fn publish_final_if_ready(&mut self, slot: Slot) {
        let Some(window) = self.deferred.get_mut(slot) else {
            return;
        };
        if window.closing.as_ref().is_some_and(|ids| ids.is_empty()) {
            if let Some(last) = window.final_report.take() {
                let ids = self.publish_all(vec![last]);
                if let Some(window) = self.deferred.get_mut(slot) {
                    window.closing = Some(ids);
                }
            }
        }
    }

    /// The broker confirmed publish `id`: true if it was part of a final
    /// report. Once the final report itself is, the window is forgotten.
    pub(in crate::core) fn on_final_confirmed(&mut self, id: u64) -> bool {
        let Some(slot) = self.deferred.closing_with(id) else {
            return false;
        };
        let Some(window) = self.deferred.get_mut(slot) else {
            return false;
        };
        if window.owed_report == Some(id) {
            // No longer owed by anyone.
            window.owed_report = None;
            let key = window.terms.key.clone();
            self.store.write(Change::JobReported(key), self.now);
        }
        let Some(window) = self.deferred.get_mut(slot) else {
            return true;
        };
        let Some(ids) = &mut window.closing else {
            return true;
        };
        ids.retain(|waiting| *waiting != id);
        if !ids.is_empty() {
            return true;
        }
        if window.final_report.is_some() {
            self.publish_final_if_ready(slot);
        } else {
            let key = window.terms.key.clone();
            self.deferred.remove(slot);
            self.store.write(Change::DeferralClosed(key), self.now);
        }
        true
    }

    /// The broker refused publish `id`: if it was part of a final report,
    /// the whole goes again after a pause.
    pub(in crate::core) fn on_final_refused(&mut self, id: Option<u64>) -> bool {
        let Some(slot) = id.and_then(|id| self.deferred.closing_with(id)) else {
            return false;
        };
        self.start_closing_over(slot);
        true
    }

    /// The broker connection was lost: final reports it did not confirm
    /// go again on the next.
    pub(in crate::core) fn on_final_broker_lost(&mut self) {
        for slot in self.deferred.closing_slots() {
            self.start_closing_over(slot);
        }
    }

    fn start_closing_over(&mut self, slot: Slot) {
        let Some(window) = self.deferred.get_mut(slot) else {
            return;
        };
        window.closing = None;
        window.final_report = None;
        window.retry_at = Some(self.now + FINAL_RETRY);
        if window.owed_report.take().is_some() {
            self.ledger.owe(&window.terms.key);
        }
    }
}
