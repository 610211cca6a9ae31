//! Jobs' windows: recipients a job could not reach under its policy when
//! it went out get its message as soon as their presence allows, until
//! the window ends; then the job's final report says who was reached late
//! and who was missed. A window opens when its job completes (in the same
//! store batch), each recipient reached is stored once the server proved
//! it read their message, and the window is forgotten once the broker
//! confirmed its final report: a restart in between resumes it, and whoever
//! was sent the message but not proven reached may get it again (with the
//! same id) and counts as a possible duplicate.

mod book;
mod closing;
mod early;
mod final_report;
mod window;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xmpp_parsers::jid::BareJid;

pub(super) use book::{Book, Slot};

use super::{Core, Covered, Output};
use crate::broadcast::receipt_event;
use crate::handler::{Deferral, Handler};
use crate::store::{Change, OpenedDeferral, Receipt, StoredDeferral};
use crate::xmpp::wire::{MessageTemplate, Outgoing};
use book::{Opening, Terms};

impl<H: Handler> Core<H> {
    /// Recipients more jobs may leave waiting: the bound less those
    /// waiting and those of jobs about to open their windows.
    pub(super) fn deferral_room(&self) -> usize {
        let opening: usize = self.jobs.deferred_waiting();
        self.settings
            .max_deferred
            .saturating_sub(self.deferred.waiting() + opening)
    }

    /// Opens the window of the completed job `key`; `wall_clock`: the
    /// wall clock now.
    pub(super) fn open_deferral(&mut self, key: &str, deferral: Deferral, wall_clock: SystemTime) {
        if self.deferred.is_open(key) {
            return;
        }
        let until_ms = millis_since_epoch(deferral.until);
        let opened = OpenedDeferral {
            key: key.to_string(),
            until_ms,
            policy: deferral.policy,
            names: deferral.names,
            template: deferral.template.to_record(),
            waiting: deferral.waiting.clone(),
            receipts: deferral.receipts.map(|n| n as u64),
        };
        self.store.write(Change::DeferralOpened(opened), self.now);
        let terms = Terms {
            key: key.to_string(),
            template: deferral.template,
            policy: deferral.policy,
            until: instant_of(deferral.until, (self.now, wall_clock)),
            until_ms,
            names: deferral.names,
        };
        let opening = Opening {
            terms,
            waiting: deferral.waiting,
            late: Vec::new(),
            receipts: deferral.receipts,
            receipted: Vec::new(),
            reported: false,
            restored: false,
        };
        self.open_window(opening);
    }

    /// Opens the windows an earlier run left open.
    pub(super) fn restore_deferrals(
        &mut self,
        stored: Vec<StoredDeferral>,
        wall_clock: SystemTime,
    ) {
        for StoredDeferral {
            opened,
            late,
            receipted,
        } in stored
        {
            let Some(template) = MessageTemplate::from_record(&opened.template) else {
                tracing::error!(job = %opened.key, "a stored window's message is unreadable: it is dropped");
                continue;
            };
            let until = UNIX_EPOCH + Duration::from_millis(opened.until_ms);
            let owed = (self.ledger.earlier(&opened.key)).is_some_and(|job| job.report_owed);
            let terms = Terms {
                key: opened.key,
                template: Arc::new(template),
                policy: opened.policy,
                until: instant_of(until, (self.now, wall_clock)),
                until_ms: opened.until_ms,
                names: opened.names,
            };
            let opening = Opening {
                terms,
                waiting: opened.waiting,
                late,
                receipts: opened.receipts.map(|n| n as usize),
                receipted,
                // A report still owed goes first: with the job's
                // redelivery, or else with the final report (see
                // `close_due_deferrals`).
                reported: !owed,
                restored: true,
            };
            let cancelled = self.ledger.is_cancelled(&opening.terms.key);
            let key = opening.terms.key.clone();
            self.open_window(opening);
            if cancelled {
                self.end_window(&key);
            }
        }
    }

    fn open_window(&mut self, opening: Opening) {
        let Some(slot) = self.deferred.open(opening) else {
            return;
        };
        // Answers to its messages that came while its job went out.
        for (position, early) in self.deferred.count_early(slot) {
            let receipt = (early.id.as_str(), early.sender.as_str());
            self.receipt_counted(slot, position, receipt, early.at);
        }
        // Presence changed while the job went out and was read: some may
        // be reachable already.
        if self.phase.has_stream() {
            let sends = self.deferred.reachable_in(slot, &self.presence, self.now);
            self.send_deferred(sends);
        }
        self.update_deferred_gauge();
    }

    /// `user`'s presence changed: their message goes out from each window
    /// whose policy they now meet.
    pub(super) fn deliver_deferred(&mut self, user: &BareJid) {
        if self.deferred.waiting() == 0 {
            return;
        }
        let sends = self.deferred.reachable(user, &self.presence, self.now);
        self.send_deferred(sends);
    }

    fn send_deferred(&mut self, sends: Vec<(Slot, crate::xmpp::wire::Addressee)>) {
        if sends.is_empty() {
            return;
        }
        for (slot, to) in sends {
            let Some(window) = self.deferred.get(slot) else {
                continue;
            };
            let position = to.position;
            let template = Arc::clone(&window.terms.template);
            self.out
                .push_back(Output::from(Outgoing::Message { template, to }));
            self.barriers.push(Covered::Deferred { slot, position });
        }
        self.update_deferred_gauge();
    }

    /// The server read these messages of windows.
    pub(super) fn on_deferred_read(&mut self, mut read: Vec<(Slot, u32)>) {
        read.sort_unstable();
        for slot_read in read.chunk_by(|a, b| a.0 == b.0) {
            let slot = slot_read[0].0;
            let positions: Vec<u32> = (slot_read.iter())
                .filter(|(slot, position)| self.deferred.reached(*slot, *position))
                .map(|(_, position)| *position)
                .collect();
            self.metrics.deferred_reached.inc_by(positions.len() as u64);
            if let (Some(window), false) = (self.deferred.get(slot), positions.is_empty()) {
                let key = window.terms.key.clone();
                self.store
                    .write(Change::DeferredReached { key, positions }, self.now);
            }
        }
        self.close_due_deferrals();
    }

    /// A delivery receipt (XEP-0184) from `sender` for the message with
    /// `id`: counted once for the open window whose message it answers,
    /// stored (with its sender, if the job names its recipients), and told
    /// in a `message.receipt` event if those are on.
    pub(super) fn on_receipt(&mut self, id: &str, sender: &BareJid) {
        let Some((slot, position)) = self.deferred.receipt(id, sender.as_str(), self.now) else {
            tracing::debug!(id, "a receipt for no open window, or a repeat");
            return;
        };
        self.receipt_counted(slot, position, (id, sender.as_str()), self.now);
        self.close_due_deferrals();
    }

    /// The receipt `(id, sender)` that came at `at` was counted for the
    /// message to `position` of `slot`.
    fn receipt_counted(
        &mut self,
        slot: Slot,
        position: u32,
        (id, sender): (&str, &str),
        at: Instant,
    ) {
        self.metrics.receipts.inc();
        let Some(window) = self.deferred.get(slot) else {
            return;
        };
        let receipt = Receipt {
            position,
            sender: window.terms.names.then(|| sender.to_string()),
        };
        let change = Change::DeferredReceipts {
            key: window.terms.key.clone(),
            receipts: vec![receipt],
        };
        let event = self.settings.receipt_events.then(|| {
            let at = window.terms.wall_clock(at);
            receipt_event(&window.terms.key, sender, id, at)
        });
        self.store.write(change, self.now);
        self.publish_events(event.into_iter().collect());
    }

    /// The report of the job `key` was confirmed: its window's final
    /// report, which must come after it, may go.
    pub(super) fn on_job_reported(&mut self, key: &str) {
        // Every job's report passes here; most jobs have no window.
        if self.deferred.is_open(key) {
            self.deferred.reported(key);
            self.close_due_deferrals();
        }
    }

    /// The stream was lost before the server proved it read this message:
    /// its recipient waits again.
    pub(super) fn on_deferred_unsent(&mut self, slot: Slot, position: u32) {
        self.deferred.unsent(slot, position);
        self.update_deferred_gauge();
    }

    pub(super) fn update_deferred_gauge(&self) {
        self.metrics
            .deferred_waiting
            .set(i64::try_from(self.deferred.waiting()).unwrap_or(i64::MAX));
    }
}

/// `at` on the core's clock, which reads `now` when the wall clock reads
/// `wall_clock`; in the past, too: a window whose job completed after its
/// end ended then, and receipts that came before it still count.
fn instant_of(at: SystemTime, (now, wall_clock): (Instant, SystemTime)) -> Instant {
    match at.duration_since(wall_clock) {
        Ok(ahead) => now + ahead,
        Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
    }
}

fn millis_since_epoch(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
