//! What the store holds, as the changes written so far leave it: the
//! subscribers, the checkpoints of jobs not completed, a window of
//! completed jobs, a window of cancelled jobs, and the groups. Pure data: the log replays its records into it, the
//! simulation applies committed batches to it, and both hand what it holds
//! to a starting core.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{Change, CompletedJob, OpenedDeferral, Receipt, StoredDeferral, Subscription};
use crate::core::Restored;
use crate::groups::{GroupChange, Groups};

#[derive(Debug, Default, Clone)]
pub struct Contents {
    subscriptions: Subscriptions,
    progress: HashMap<String, Vec<u8>>,
    completed: HashMap<String, CompletedJob>,
    /// Completion sequence number -> key, so the oldest is forgotten first.
    completed_order: BTreeMap<u64, String>,
    /// How many completed jobs are remembered (`store.remember_jobs`).
    remember_jobs: usize,
    groups: Groups,
    /// Cancelled keys, oldest first, at most [`super::cancelled_window`].
    cancelled: VecDeque<String>,
    /// Open windows by job key.
    deferrals: HashMap<String, Window>,
}

/// The subscriptions in the order they were added, removals applied when
/// they are read. Opening a store of a million subscribers once hashed
/// each pair of JIDs into a set, only for the core to hash each user into
/// its own table: a third of the time to open. Nearly every record is a
/// subscription added, and Herald writes one only for a pair it did not
/// have, so only removals are hashed here.
#[derive(Debug, Default, Clone)]
struct Subscriptions {
    added: Vec<Subscription>,
    /// Each subscription removed, and how many were added before its last
    /// removal: its adds among those no longer count.
    removed: HashMap<Subscription, usize>,
}

impl Subscriptions {
    fn add(&mut self, subscription: Subscription) {
        self.added.push(subscription);
    }

    fn remove(&mut self, subscription: Subscription) {
        self.removed.insert(subscription, self.added.len());
    }

    fn is_live(&self, at: usize, subscription: &Subscription) -> bool {
        self.removed.is_empty()
            || self
                .removed
                .get(subscription)
                .is_none_or(|&before| at >= before)
    }

    fn live(&self) -> impl Iterator<Item = &Subscription> {
        (self.added.iter().enumerate())
            .filter(|(at, subscription)| self.is_live(*at, subscription))
            .map(|(_, subscription)| subscription)
    }

    fn into_live(self) -> Vec<Subscription> {
        if self.removed.is_empty() {
            return self.added;
        }
        self.live().cloned().collect()
    }
}

/// An open window: its recipients still waiting and those reached late,
/// by position.
#[derive(Debug, Clone)]
struct Window {
    opened: OpenedDeferral,
    waiting: BTreeMap<u32, String>,
    late: BTreeMap<u32, String>,
    /// Receipts by position, with their senders if kept.
    receipted: BTreeMap<u32, Option<String>>,
}

impl Contents {
    pub fn new(remember_jobs: usize) -> Self {
        Contents {
            remember_jobs,
            ..Contents::default()
        }
    }

    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Add(subscription) => self.subscriptions.add(subscription),
            Change::Remove(subscription) => self.subscriptions.remove(subscription),
            Change::JobProgress { key, token } => {
                if !self.completed.contains_key(&key) {
                    self.progress.insert(key, token);
                }
            }
            Change::JobDone(job) => {
                self.progress.remove(&job.key);
                if let Some(earlier) = self.completed.get(&job.key) {
                    self.completed_order.remove(&earlier.seq);
                }
                self.completed_order.insert(job.seq, job.key.clone());
                self.completed.insert(job.key.clone(), job);
                // A completed job falls out of the window by itself: no
                // record is written to forget it.
                while self.completed.len() > self.remember_jobs {
                    let Some((_, oldest)) = self.completed_order.pop_first() else {
                        break;
                    };
                    self.completed.remove(&oldest);
                }
            }
            Change::JobReported(key) => {
                if let Some(job) = self.completed.get_mut(&key) {
                    job.reported = true;
                }
            }
            Change::Group(change) => self.groups.apply(change),
            Change::DeferralOpened(mut opened) => {
                let waiting = std::mem::take(&mut opened.waiting).into_iter().collect();
                let window = Window {
                    opened,
                    waiting,
                    late: BTreeMap::new(),
                    receipted: BTreeMap::new(),
                };
                self.deferrals.insert(window.opened.key.clone(), window);
            }
            Change::DeferralWaiting { key, waiting } => {
                if let Some(window) = self.deferrals.get_mut(&key) {
                    window.waiting.extend(waiting);
                }
            }
            Change::DeferredReached { key, positions } => {
                if let Some(window) = self.deferrals.get_mut(&key) {
                    for position in positions {
                        if let Some(user) = window.waiting.remove(&position) {
                            window.late.insert(position, user);
                        }
                    }
                }
            }
            Change::DeferredReceipts { key, receipts } => {
                if let Some(window) = self.deferrals.get_mut(&key) {
                    for Receipt { position, sender } in receipts {
                        window.receipted.entry(position).or_insert(sender);
                    }
                }
            }
            Change::DeferralClosed(key) => {
                self.deferrals.remove(&key);
            }
            Change::JobCancelled(key) => {
                // Cancelled keys are few: a scan keeps them unique.
                if !self.cancelled.contains(&key) {
                    self.cancelled.push_back(key);
                }
                while self.cancelled.len() > super::cancelled_window(self.remember_jobs) {
                    self.cancelled.pop_front();
                }
            }
        }
    }

    pub fn completed(&self, key: &str) -> Option<&CompletedJob> {
        self.completed.get(key)
    }

    /// Everything held, as changes that rebuild it (for a compacted log).
    pub fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        let subscriptions = self.subscriptions.live().cloned().map(Change::Add);
        let progress = self
            .progress
            .iter()
            .map(|(key, token)| Change::JobProgress {
                key: key.clone(),
                token: token.clone(),
            });
        let completed = self
            .completed_order
            .values()
            .filter_map(|key| self.completed.get(key))
            .cloned()
            .map(Change::JobDone);
        let groups = self.groups.iter().map(|(name, members)| {
            Change::Group(GroupChange::Put {
                name: name.to_string(),
                members: members.iter().cloned().collect(),
            })
        });
        let cancelled = self.cancelled.iter().cloned().map(Change::JobCancelled);
        // A window as opened with everyone, then those reached: its late
        // recipients stay named.
        let deferrals = self.deferrals.values().flat_map(|window| {
            let mut everyone: Vec<(u32, String)> = (window.waiting.iter())
                .chain(&window.late)
                .map(|(position, user)| (*position, user.clone()))
                .collect();
            everyone.sort_unstable_by_key(|(position, _)| *position);
            let opened = Change::DeferralOpened(OpenedDeferral {
                waiting: everyone,
                ..window.opened.clone()
            });
            let reached = (!window.late.is_empty()).then(|| Change::DeferredReached {
                key: window.opened.key.clone(),
                positions: window.late.keys().copied().collect(),
            });
            let receipts = (!window.receipted.is_empty()).then(|| Change::DeferredReceipts {
                key: window.opened.key.clone(),
                receipts: receipts(&window.receipted),
            });
            std::iter::once(opened).chain(reached).chain(receipts)
        });
        subscriptions
            .chain(progress)
            .chain(completed)
            .chain(groups)
            .chain(cancelled)
            .chain(deferrals)
    }

    /// What a starting core is given.
    pub fn into_restored(self) -> Restored {
        let Contents {
            subscriptions,
            progress,
            mut completed,
            completed_order,
            groups,
            cancelled,
            deferrals,
            ..
        } = self;
        Restored {
            subscriptions: subscriptions.into_live(),
            completed: completed_order
                .values()
                .filter_map(|key| completed.remove(key))
                .collect(),
            progress: progress.into_iter().collect(),
            groups,
            cancelled: cancelled.into(),
            deferrals: deferrals
                .into_values()
                .map(|window| StoredDeferral {
                    opened: OpenedDeferral {
                        waiting: window.waiting.into_iter().collect(),
                        ..window.opened
                    },
                    late: window.late.into_iter().collect(),
                    receipted: receipts(&window.receipted),
                })
                .collect(),
        }
    }
}

fn receipts(receipted: &BTreeMap<u32, Option<String>>) -> Vec<Receipt> {
    (receipted.iter())
        .map(|(position, sender)| Receipt {
            position: *position,
            sender: sender.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(key: &str, seq: u64) -> Change {
        Change::JobDone(CompletedJob {
            key: key.into(),
            seq,
            reported: false,
            report: Vec::new(),
        })
    }

    #[test]
    fn a_subscription_counts_as_its_last_add_or_removal_left_it() {
        let sub = |user: &str| Subscription {
            user: xmpp_parsers::jid::BareJid::new(user).unwrap(),
            contact: xmpp_parsers::jid::BareJid::new("herald@broadcast.localhost").unwrap(),
        };
        let (a, b, c) = (sub("a@localhost"), sub("b@localhost"), sub("c@localhost"));
        let mut contents = Contents::new(2);
        for change in [
            Change::Add(a.clone()),
            Change::Add(b.clone()),
            Change::Remove(a.clone()),
            Change::Remove(c.clone()),
            Change::Add(c.clone()),
            Change::Add(a.clone()),
            Change::Remove(b.clone()),
        ] {
            contents.apply(change);
        }
        let mut compacted = Contents::new(2);
        for change in contents.changes() {
            compacted.apply(change);
        }
        assert_eq!(
            compacted.into_restored().subscriptions,
            [c.clone(), a.clone()]
        );
        assert_eq!(contents.into_restored().subscriptions, [c, a]);
    }

    #[test]
    fn the_lowest_sequence_number_is_forgotten_first_and_a_repeat_replaces() {
        let mut contents = Contents::new(2);
        contents.apply(done("b", 2));
        contents.apply(done("a", 1));
        contents.apply(done("a", 3));
        contents.apply(done("c", 4));
        let keys: Vec<_> = contents
            .into_restored()
            .completed
            .into_iter()
            .map(|j| j.key)
            .collect();
        assert_eq!(keys, ["a", "c"]);
    }

    #[test]
    fn cancelled_keys_are_kept_once_in_a_window_and_rebuilt_by_the_changes() {
        let window = super::super::cancelled_window(0);
        let mut contents = Contents::new(0);
        let keys = (0..=window).map(|n| n.to_string());
        for key in ["0", "1"].into_iter().map(String::from).chain(keys) {
            contents.apply(Change::JobCancelled(key));
        }
        let mut compacted = Contents::new(0);
        for change in contents.changes() {
            compacted.apply(change);
        }
        let cancelled = compacted.into_restored().cancelled;
        assert_eq!(cancelled.len(), window, "the oldest is forgotten");
        assert_eq!(cancelled[0], "1", "a repeat is kept once, where it was");
    }

    #[test]
    fn progress_of_a_completed_job_is_not_kept() {
        let mut contents = Contents::new(2);
        let progress = |key: &str| Change::JobProgress {
            key: key.into(),
            token: b"t".to_vec(),
        };
        contents.apply(progress("a"));
        contents.apply(progress("b"));
        contents.apply(done("a", 1));
        contents.apply(progress("a"));
        let restored = contents.into_restored();
        assert_eq!(restored.progress, vec![("b".to_string(), b"t".to_vec())]);
    }
}
