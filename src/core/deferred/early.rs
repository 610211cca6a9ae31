//! Receipts that come before their window opens: a client may answer a
//! message while the rest of its job is still going out (a large job, a
//! quick client), and the window opens only when the job completes. They
//! are held, a bounded number, oldest dropped first, and counted when the
//! window of their message's job opens (lost with a restart, as counted
//! receipts not yet stored are).

use std::collections::VecDeque;
use std::time::Instant;

/// Receipts held at most: a few megabytes, and room for the receipts of
/// a job to 100,000 users that all answer before it completes.
const HELD: usize = 100_000;

/// A receipt held: the id of the message it answers, its sender (a bare
/// JID) and when it came.
#[derive(Debug)]
pub struct Early {
    pub id: String,
    pub sender: String,
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct EarlyReceipts {
    held: VecDeque<Early>,
}

impl EarlyReceipts {
    pub fn hold(&mut self, id: &str, sender: &str, at: Instant) {
        if self.held.len() == HELD {
            self.held.pop_front();
        }
        self.held.push_back(Early {
            id: id.to_string(),
            sender: sender.to_string(),
            at,
        });
    }

    /// The receipts held for messages whose ids start with `prefix`, in
    /// the order they came; no longer held.
    pub fn take(&mut self, prefix: &str) -> Vec<Early> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let (taken, kept): (VecDeque<Early>, _) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|early| early.id.starts_with(prefix));
        self.held = kept;
        taken.into()
    }
}
