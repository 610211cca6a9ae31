//! A simulated store: batches are committed whole or not at all, one at a
//! time, and a crash loses whatever was not committed. What was committed
//! is what a restarted Herald finds.

use std::collections::{BTreeMap, BTreeSet};

use herald::core::{Batch, Restored};
use herald::store::{Change, CompletedJob, Subscription};
use xmpp_parsers::jid::BareJid;

#[derive(Default)]
pub struct Store {
    subscriptions: BTreeSet<(String, String)>,
    /// key -> (seq, reported, report)
    pub completed: BTreeMap<String, (u64, bool, Vec<u8>)>,
    progress: BTreeMap<String, Vec<u8>>,
    pub in_flight: Option<Batch>,
}

impl Store {
    pub fn subscribe(&mut self, user: &BareJid, contact: &BareJid) {
        self.subscriptions
            .insert((user.to_string(), contact.to_string()));
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
            self.apply(change);
        }
        Some(batch)
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Add(s) => {
                self.subscriptions
                    .insert((s.user.to_string(), s.contact.to_string()));
            }
            Change::Remove(s) => {
                self.subscriptions
                    .remove(&(s.user.to_string(), s.contact.to_string()));
            }
            Change::JobProgress { key, token } => {
                self.progress.insert(key.clone(), token.clone());
            }
            Change::JobDone(job) => {
                self.progress.remove(&job.key);
                self.completed
                    .insert(job.key.clone(), (job.seq, job.reported, job.report.clone()));
            }
            Change::JobReported(key) => {
                if let Some(row) = self.completed.get_mut(key) {
                    row.1 = true;
                }
            }
            Change::JobForgotten(key) => {
                self.completed.remove(key);
            }
        }
    }

    /// What a restarted Herald reads.
    pub fn restore(&self) -> Restored {
        let mut completed: Vec<CompletedJob> = self
            .completed
            .iter()
            .map(|(key, (seq, reported, report))| CompletedJob {
                key: key.clone(),
                seq: *seq,
                reported: *reported,
                report: report.clone(),
            })
            .collect();
        completed.sort_by_key(|job| job.seq);
        Restored {
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(user, contact)| Subscription {
                    user: BareJid::new(user).unwrap(),
                    contact: BareJid::new(contact).unwrap(),
                })
                .collect(),
            completed,
            progress: self
                .progress
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}
