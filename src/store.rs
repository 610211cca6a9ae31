//! Embedded persistence: who has one of Herald's JIDs on their roster, so
//! that after a restart Herald can probe them and rebuild its presence book
//! without users doing anything; and which jobs are done, with their
//! reports, so that a job published twice is delivered once. One redb file;
//! no external database.
//!
//! redb writes are synchronous and fsync, so they never run on the event
//! loop: the core cuts changes into batches and the shell hands them to a
//! writer thread ([`Writer`]) that commits them in order and answers each.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;
use xmpp_parsers::jid::BareJid;

use crate::core::Batch;

/// (user's bare JID, Herald's JID they subscribed to) -> ()
const SUBSCRIPTIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("subscriptions");
/// job key -> checkpoint token of a job not completed yet
const JOB_PROGRESS: TableDefinition<&str, &[u8]> = TableDefinition::new("job_progress");
/// job key -> (completion sequence number, report confirmed by the broker, report payload)
const COMPLETED_JOBS: TableDefinition<&str, (u64, bool, &[u8])> =
    TableDefinition::new("completed_jobs");

#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(#[from] redb::Error);

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add(Subscription),
    Remove(Subscription),
    /// The server read a job's stanzas up to a checkpoint.
    JobProgress {
        key: String,
        token: Vec<u8>,
    },
    /// The job completed (its progress is no longer needed).
    JobDone(CompletedJob),
    /// The broker confirmed the report of a completed job.
    JobReported(String),
    /// Forget a completed job (it fell out of the remembered window).
    JobForgotten(String),
}

pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(redb::Error::from)?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(SUBSCRIPTIONS).map_err(redb::Error::from)?;
        txn.open_table(COMPLETED_JOBS).map_err(redb::Error::from)?;
        txn.open_table(JOB_PROGRESS).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Store { db })
    }

    /// Checkpoint tokens of jobs that did not complete.
    pub fn job_progress(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(JOB_PROGRESS).map_err(redb::Error::from)?;
        let mut all = Vec::new();
        for row in table.iter().map_err(redb::Error::from)? {
            let (key, token) = row.map_err(redb::Error::from)?;
            all.push((key.value().to_string(), token.value().to_vec()));
        }
        Ok(all)
    }

    /// Completed jobs, oldest first.
    pub fn completed_jobs(&self) -> Result<Vec<CompletedJob>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(COMPLETED_JOBS).map_err(redb::Error::from)?;
        let mut all = Vec::new();
        for row in table.iter().map_err(redb::Error::from)? {
            let (key, value) = row.map_err(redb::Error::from)?;
            let (seq, reported, report) = value.value();
            all.push(CompletedJob {
                key: key.value().to_string(),
                seq,
                reported,
                report: report.to_vec(),
            });
        }
        all.sort_by_key(|job| job.seq);
        Ok(all)
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(SUBSCRIPTIONS).map_err(redb::Error::from)?;
        let mut all = Vec::new();
        for row in table.iter().map_err(redb::Error::from)? {
            let (key, _) = row.map_err(redb::Error::from)?;
            let (user, contact) = key.value();
            // Rows are written from parsed JIDs; one that no longer parses is skipped.
            if let (Ok(user), Ok(contact)) = (BareJid::new(user), BareJid::new(contact)) {
                all.push(Subscription { user, contact });
            }
        }
        Ok(all)
    }

    pub fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut table = txn.open_table(SUBSCRIPTIONS).map_err(redb::Error::from)?;
            let mut jobs = txn.open_table(COMPLETED_JOBS).map_err(redb::Error::from)?;
            let mut progress = txn.open_table(JOB_PROGRESS).map_err(redb::Error::from)?;
            for change in changes {
                match change {
                    Change::Add(s) => {
                        let (user, contact) = (s.user.to_string(), s.contact.to_string());
                        table
                            .insert((user.as_str(), contact.as_str()), ())
                            .map_err(redb::Error::from)?;
                    }
                    Change::Remove(s) => {
                        let (user, contact) = (s.user.to_string(), s.contact.to_string());
                        table
                            .remove((user.as_str(), contact.as_str()))
                            .map_err(redb::Error::from)?;
                    }
                    Change::JobProgress { key, token } => {
                        progress
                            .insert(key.as_str(), token.as_slice())
                            .map_err(redb::Error::from)?;
                    }
                    Change::JobDone(job) => {
                        progress
                            .remove(job.key.as_str())
                            .map_err(redb::Error::from)?;
                        let row = (job.seq, job.reported, job.report.as_slice());
                        jobs.insert(job.key.as_str(), row)
                            .map_err(redb::Error::from)?;
                    }
                    Change::JobReported(key) => {
                        let row = jobs.get(key.as_str()).map_err(redb::Error::from)?;
                        let updated = row.map(|row| {
                            let (seq, _, report) = row.value();
                            (seq, report.to_vec())
                        });
                        if let Some((seq, report)) = updated {
                            jobs.insert(key.as_str(), (seq, true, report.as_slice()))
                                .map_err(redb::Error::from)?;
                        }
                    }
                    Change::JobForgotten(key) => {
                        jobs.remove(key.as_str()).map_err(redb::Error::from)?;
                    }
                }
            }
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// Starts the writer thread. redb commits are synchronous and fsync,
    /// so they never run on the event loop; one batch at a time, in order.
    /// After a failed commit redb refuses every later one on the same
    /// handle, so the thread reopens the file (at `path`) before the next.
    pub fn spawn_writer(self, path: PathBuf) -> Writer {
        let (batches, incoming) = std::sync::mpsc::channel::<Batch>();
        let (answers, results) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || {
                let mut store = Some(self);
                for batch in incoming {
                    let open = match store.take() {
                        Some(open) => Ok(open),
                        None => Store::open(&path),
                    };
                    let answer = match open.and_then(|open| {
                        let applied = open.apply(&batch.changes);
                        applied.map(|()| open)
                    }) {
                        Ok(open) => {
                            store = Some(open);
                            Commit::Done(batch.id)
                        }
                        Err(e) => Commit::Failed(batch, e.to_string()),
                    };
                    if answers.send(answer).is_err() {
                        return;
                    }
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

    fn sub(user: &str) -> Subscription {
        Subscription {
            user: BareJid::new(user).unwrap(),
            contact: BareJid::new("herald@broadcast.localhost").unwrap(),
        }
    }

    #[test]
    fn subscriptions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .apply(&[
                    Change::Add(sub("a@localhost")),
                    Change::Add(sub("b@localhost")),
                    Change::Add(sub("c@localhost")),
                    Change::Remove(sub("b@localhost")),
                ])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let mut all = store.subscriptions().unwrap();
        all.sort();
        assert_eq!(all, vec![sub("a@localhost"), sub("c@localhost")]);
    }

    #[tokio::test]
    async fn the_writer_answers_each_batch_and_commits_the_last_changes_before_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let mut writer = Store::open(&path).unwrap().spawn_writer(path.clone());
        writer.commit(Batch {
            id: 1,
            changes: vec![Change::Add(sub("a@localhost"))],
        });
        assert!(matches!(writer.results.recv().await, Some(Commit::Done(1))));
        writer.finish(vec![Change::Add(sub("b@localhost"))]);
        let mut all = Store::open(&path).unwrap().subscriptions().unwrap();
        all.sort();
        assert_eq!(all, vec![sub("a@localhost"), sub("b@localhost")]);
    }

    #[test]
    fn completed_jobs_come_back_in_order_with_their_progress_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.redb");
        let store = Store::open(&path).unwrap();
        let job = |key: &str, seq, reported| CompletedJob {
            key: key.into(),
            seq,
            reported,
            report: format!("{{\"id\":\"{key}\"}}").into_bytes(),
        };
        let mut changes = Vec::new();
        for (key, seq) in [("b", 2), ("a", 1), ("c", 3)] {
            changes.push(Change::JobDone(job(key, seq, false)));
        }
        changes.push(Change::JobReported("c".into()));
        for (key, token) in [("c", "half"), ("d", "half"), ("d", "most")] {
            changes.push(Change::JobProgress {
                key: key.into(),
                token: token.into(),
            });
        }
        // "c" completes again: its progress goes.
        changes.push(Change::JobDone(job("c", 3, true)));
        changes.push(Change::JobForgotten("b".into()));
        store.apply(&changes).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let all = store.completed_jobs().unwrap();
        assert_eq!(all, vec![job("a", 1, false), job("c", 3, true)]);
        assert_eq!(
            store.job_progress().unwrap(),
            vec![("d".to_string(), b"most".to_vec())]
        );
    }
}
