//! Embedded persistence: who has one of Herald's JIDs on their roster, so
//! that after a restart Herald can probe them and rebuild its presence book
//! without users doing anything; which jobs are done, with their
//! reports, so that a job published twice is delivered once; and the
//! groups jobs address. One file of
//! Herald's own ([`log`]): records appended in batches, one fsync a batch;
//! no external database.
//!
//! Syncing a file blocks, so it never runs on the event loop: the core cuts
//! changes into batches and the shell hands them to a writer thread
//! ([`Writer`]) that appends them in order and answers each.

mod contents;
mod log;
pub mod replica;

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use xmpp_parsers::jid::BareJid;

pub use contents::Contents;

/// How many cancelled job ids are remembered: as many as completed jobs
/// (`store.remember_jobs`), and never so few that a cancellation answered
/// `pending` is forgotten before its job comes up in the usual course
/// (`remember_jobs = 0` remembers no completed job, but cancellations).
pub fn cancelled_window(remember_jobs: usize) -> usize {
    remember_jobs.max(1_000)
}
use log::Log;

use crate::core::{Batch, Restored};
use crate::groups::GroupChange;
use crate::presence::Policy;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a Herald store file{}",
        if *redb { " (it is a redb file, which this Herald does not read: move it aside; \
        Herald learns its subscribers again from their presence and by probing job recipients)" } else { "" }
    )]
    Unrecognized { path: PathBuf, redb: bool },
    #[error("store {path} is in use by another Herald")]
    Locked { path: PathBuf },
    /// The store's stream on the broker cannot be read.
    #[error("store stream: {0}")]
    Stream(String),
}

/// A user with `contact` (a JID on Herald's domain) on their roster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subscription {
    pub user: BareJid,
    pub contact: BareJid,
}

/// A job that is done, and the report it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedJob {
    pub key: String,
    pub seq: u64,
    /// The broker confirmed the report. A job stored as completed whose
    /// report was never confirmed still owes its report.
    pub reported: bool,
    pub report: Vec<u8>,
}

/// A job's window for recipients it could not reach at once (see
/// [`crate::handler::Deferral`]), as opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedDeferral {
    pub key: String,
    /// When the window ends: milliseconds since the Unix epoch.
    pub until_ms: u64,
    pub policy: Policy,
    pub names: bool,
    /// The message, as [`crate::xmpp::wire::MessageTemplate::to_record`]
    /// writes it.
    pub template: Vec<u8>,
    /// Each waiting recipient's position and user, in position order.
    pub waiting: Vec<(u32, String)>,
    /// Messages sent at fan-out whose delivery receipts are counted, if
    /// the job asked for them.
    pub receipts: Option<u64>,
}

/// An open window as the store left it: those reached since it opened are
/// `late`, no longer waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeferral {
    pub opened: OpenedDeferral,
    pub late: Vec<(u32, String)>,
    /// The delivery receipts that came.
    pub receipted: Vec<Receipt>,
}

/// A delivery receipt counted for a window's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The recipient's place in the job.
    pub position: u32,
    /// Who sent it (a bare JID), kept only for a job whose final report
    /// names its recipients.
    pub sender: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add(Subscription),
    Remove(Subscription),
    /// The server read a job's stanzas up to a checkpoint.
    JobProgress {
        key: String,
        token: Vec<u8>,
    },
    /// The job completed (its progress is no longer needed). The oldest
    /// completed job beyond `store.remember_jobs` is forgotten.
    JobDone(CompletedJob),
    /// The broker confirmed the report of a completed job.
    JobReported(String),
    /// A group changed (the members that really joined or left).
    Group(GroupChange),
    /// The job with this key was cancelled (the control operation
    /// `cancel`). The oldest beyond `store.remember_jobs` is forgotten.
    JobCancelled(String),
    /// A job's window opened.
    DeferralOpened(OpenedDeferral),
    /// More of an opened window's waiting recipients (a large window is
    /// several records).
    DeferralWaiting {
        key: String,
        waiting: Vec<(u32, String)>,
    },
    /// The server read the job's message to the recipients at these
    /// positions, who were waiting.
    DeferredReached {
        key: String,
        positions: Vec<u32>,
    },
    /// Delivery receipts came for the window's messages.
    DeferredReceipts {
        key: String,
        receipts: Vec<Receipt>,
    },
    /// The window's final report was confirmed: it is forgotten.
    DeferralClosed(String),
}

pub struct Store {
    log: Log,
}

impl Store {
    /// Opens the store at `path` (creating it if there is none), with what
    /// it holds for a starting core.
    pub fn open(path: &Path, remember_jobs: usize) -> Result<(Store, Restored), StoreError> {
        let (log, contents) = Log::open(path, remember_jobs)?;
        Ok((Store { log }, contents.into_restored()))
    }

    /// Starts the writer thread: one batch at a time, in order.
    pub fn spawn_writer(self) -> Writer {
        let (batches, incoming) = std::sync::mpsc::channel::<Batch>();
        let (answers, results) = mpsc::unbounded_channel();
        let mut log = self.log;
        let thread = std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || {
                for batch in incoming {
                    let answer = match log.append(&batch.changes) {
                        Ok(()) => Commit::Done(batch.id),
                        Err(e) => Commit::Failed(batch, e.to_string()),
                    };
                    if answers.send(answer).is_err() {
                        return;
                    }
                    log.compact_if_grown();
                }
            })
            .expect("spawning the store thread");
        Writer {
            batches,
            results,
            thread,
        }
    }
}

/// How a batch went.
#[derive(Debug)]
pub enum Commit {
    Done(u64),
    /// Nothing of it was written; here it is back.
    Failed(Batch, String),
}

/// The event loop's handle on the writer thread.
pub struct Writer {
    batches: std::sync::mpsc::Sender<Batch>,
    pub results: mpsc::UnboundedReceiver<Commit>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    pub fn commit(&self, batch: Batch) {
        // Fails only if the thread died; the batch's jobs then stay unacknowledged.
        let _ = self.batches.send(batch);
    }

    /// Commits `last` after everything queued, then ends the thread.
    pub fn finish(self, last: Vec<Change>) {
        let Writer {
            batches, thread, ..
        } = self;
        if !last.is_empty() {
            let _ = batches.send(Batch {
                id: 0,
                changes: last,
            });
        }
        drop(batches);
        if thread.join().is_err() {
            tracing::error!("store writer failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sub(user: &str) -> Subscription {
        Subscription {
            user: BareJid::new(user).unwrap(),
            contact: BareJid::new("herald@broadcast.localhost").unwrap(),
        }
    }

    /// The subscriptions a store reopened at `path` holds, sorted.
    pub(super) fn stored_subscriptions(path: &Path) -> Vec<Subscription> {
        let (_, restored) = Store::open(path, 10).unwrap();
        let mut all = restored.subscriptions;
        all.sort();
        all
    }

    #[tokio::test]
    async fn the_writer_answers_each_batch_and_commits_the_last_changes_before_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.store");
        let (store, _) = Store::open(&path, 10).unwrap();
        let mut writer = store.spawn_writer();
        writer.commit(Batch {
            id: 1,
            changes: vec![Change::Add(sub("a@localhost"))],
        });
        assert!(matches!(writer.results.recv().await, Some(Commit::Done(1))));
        writer.finish(vec![Change::Add(sub("b@localhost"))]);
        assert_eq!(
            stored_subscriptions(&path),
            vec![sub("a@localhost"), sub("b@localhost")]
        );
    }

    #[test]
    fn a_redb_file_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        std::fs::write(&path, b"redb\x1a\x0a\xa9\x0d\x0a and then pages").unwrap();
        let error = Store::open(&path, 10).err().unwrap();
        assert!(matches!(error, StoreError::Unrecognized { redb: true, .. }));
        assert!(error.to_string().contains("move it aside"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap().len(), 24, "left as it was");
    }
}
