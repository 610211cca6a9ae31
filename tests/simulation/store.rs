//! A simulated store: batches are committed whole or not at all, one at a
//! time, and a crash loses whatever was not committed. What was committed
//! (Herald's own [`Contents`], as its log would replay it) is what a
//! restarted Herald finds.

use herald::core::{Batch, Restored};
use herald::store::{Change, Contents, Subscription};
use xmpp_parsers::jid::BareJid;

pub struct Store {
    pub contents: Contents,
    pub in_flight: Option<Batch>,
}

impl Store {
    pub fn new(remember_jobs: usize) -> Self {
        Store {
            contents: Contents::new(remember_jobs),
            in_flight: None,
        }
    }

    pub fn subscribe(&mut self, user: &BareJid, contact: &BareJid) {
        self.apply(Change::Add(Subscription {
            user: user.clone(),
            contact: contact.clone(),
        }));
    }

    /// What an earlier Herald committed.
    pub fn apply(&mut self, change: Change) {
        self.contents.apply(change);
    }

    pub fn begin(&mut self, batch: Batch) -> Result<(), String> {
        if self.in_flight.is_some() {
            return Err("a second store batch while one is being committed".into());
        }
        self.in_flight = Some(batch);
        Ok(())
    }

    /// Commits the batch in flight; returns it.
    pub fn commit(&mut self) -> Option<Batch> {
        let batch = self.in_flight.take()?;
        for change in &batch.changes {
            self.contents.apply(change.clone());
        }
        Some(batch)
    }

    /// Whether a job's completion is committed, and its report recorded as
    /// confirmed.
    pub fn completed(&self, key: &str) -> Option<bool> {
        self.contents.completed(key).map(|job| job.reported)
    }

    /// What a restarted Herald reads.
    pub fn restore(&self) -> Restored {
        self.contents.clone().into_restored()
    }
}
