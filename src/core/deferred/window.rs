//! One job's window: who waits, who is being sent the message, who was
//! reached late, the receipts, and its final report's progress.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::handler::Event;
use crate::presence::{Policy, PresenceBook};
use crate::user_text::UserText;
use crate::xmpp::wire::{Addressee, MessageTemplate};

/// What a window is for: its job's key and message, who may be sent it,
/// until when, and whether its final report names them.
#[derive(Debug)]
pub struct Terms {
    pub key: String,
    pub template: Arc<MessageTemplate>,
    pub policy: Policy,
    pub until: Instant,
    /// `until` on the wall clock, for the report and the store.
    pub until_ms: u64,
    pub names: bool,
}

impl Terms {
    /// The wall clock at `now`, as `until` and `until_ms` tell it.
    pub fn wall_clock(&self, now: Instant) -> SystemTime {
        let until = UNIX_EPOCH + Duration::from_millis(self.until_ms);
        match self.until.checked_duration_since(now) {
            Some(before) => until.checked_sub(before).unwrap_or(UNIX_EPOCH),
            None => until + now.duration_since(self.until),
        }
    }
}

#[derive(Debug)]
pub struct Window {
    pub terms: Terms,
    /// Recipients it opened with.
    pub deferred: usize,
    pub(super) waiting: HashMap<u32, Arc<str>>,
    pub(super) sending: HashMap<u32, Arc<str>>,
    pub late: Vec<(u32, Arc<str>)>,
    /// Receipts counted, if the job asked for them.
    pub receipts: Option<Receipts>,
    /// Ended early by a cancellation of its job.
    pub cancelled: bool,
    /// Messages sent again after a stream was lost before the server
    /// proved it read them.
    pub possible_duplicates: usize,
    /// Its final report was made: nobody more is sent anything.
    pub(super) stopped: bool,
    /// Its job's report was confirmed: the final report may follow it.
    pub(super) reported: bool,
    /// Opened from the store at start, its job completed and stored.
    pub restored: bool,
    /// Its final report carries its job's report, which was owed: that
    /// publish's id, until the broker confirms it.
    pub owed_report: Option<u64>,
    /// The final report, once what it refers to is confirmed.
    pub final_report: Option<Event>,
    /// Its final report is out: the publish ids not yet confirmed.
    pub closing: Option<Vec<u64>>,
    /// Not before then is a refused final report published again.
    pub retry_at: Option<Instant>,
}

impl Window {
    /// The recipients still waiting, by position.
    pub fn missed(&self) -> Vec<(u32, &str)> {
        let mut missed: Vec<(u32, &str)> = (self.waiting.iter())
            .map(|(position, user)| (*position, &**user))
            .collect();
        missed.sort_unstable_by_key(|(position, _)| *position);
        missed
    }

    /// Its job's report was confirmed.
    pub fn is_reported(&self) -> bool {
        self.reported
    }

    /// Its final report is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.due_at(now).is_some_and(|at| at <= now)
    }

    /// When it falls due (`now` if it is), unless it waits for the
    /// server or the broker. A live window's job report goes first (it is
    /// confirmed before the window may close); a restored window's, if a
    /// restart left it owed, goes with the final report, whose job may
    /// have been acknowledged already and so never be redelivered.
    pub(super) fn due_at(&self, now: Instant) -> Option<Instant> {
        if self.closing.is_some() || !self.sending.is_empty() || !self.reported && !self.restored {
            return None;
        }
        // Nobody left to wait for, nor a receipt: due at once, or when a
        // retry may go.
        let receipts_due =
            (self.receipts.as_ref()).is_some_and(|r| r.got.len() < r.expected + self.late.len());
        let waits = (!self.waiting.is_empty() || receipts_due) && !self.stopped;
        let end = waits.then_some(self.terms.until);
        let at = [end, self.retry_at].into_iter().flatten().max();
        Some(at.unwrap_or(now))
    }
}

/// The delivery receipts of a window's messages.
#[derive(Debug, Default)]
pub struct Receipts {
    /// Messages sent at fan-out (those sent late are in `late`).
    pub expected: usize,
    /// Positions whose receipt came, each once.
    pub got: HashSet<u32>,
    /// Who sent each counted receipt (bare JIDs), in the order they came:
    /// kept only for a job whose final report names its recipients.
    pub senders: Option<Vec<(u32, Arc<str>)>>,
}

impl Receipts {
    /// Who sent a counted receipt, each once, in order of position.
    pub fn named(&self) -> Vec<&str> {
        let mut senders: Vec<(u32, &str)> = (self.senders.iter().flatten())
            .map(|(position, sender)| (*position, &**sender))
            .collect();
        senders.sort_unstable();
        let mut seen = HashSet::new();
        (senders.into_iter())
            .filter_map(|(_, sender)| seen.insert(sender).then_some(sender))
            .collect()
    }
}

impl Window {
    /// The message to `position`, who waits, if their presence meets the
    /// policy and the window is still open: they are then being sent it.
    pub(super) fn send(
        &mut self,
        position: u32,
        book: &PresenceBook,
        now: Instant,
    ) -> Option<Addressee> {
        if self.closing.is_some() || self.terms.until <= now {
            return None;
        }
        let user = self.waiting.get(&position)?;
        book.deliverable(UserText(user), self.terms.policy).ok()?;
        let user = self.waiting.remove(&position)?;
        self.sending.insert(position, Arc::clone(&user));
        Some(Addressee::own(user, position))
    }
}
