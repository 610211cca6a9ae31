//! What is to be written to the store, and which jobs wait for it. Changes
//! collect while one batch is being committed and go as the next batch, so
//! commits group by themselves under load. A batch that fails comes back
//! and is retried, with backoff, before anything after it: a job waiting
//! for its completion to be remembered stays waiting (and is never
//! acknowledged) until the store has it.
//!
//! A control request that changes a group waits the same way: its reply
//! goes once the change is committed. A batch that fails answers them at
//! once with an error (a requester is waiting, and the retry may take
//! long); the change itself stays in the batch and is retried.
//!
//! Changes no job waits for (a subscription, a checkpoint, a report
//! confirmed) do not start a batch of their own: they go with the next one
//! a job waits for, or after [`UNAWAITED_DELAY`] at the latest. Each batch
//! costs a sync of the file, and under a flood of small jobs these changes
//! would otherwise double the syncs. A crash loses at most that much of
//! them, and each is safe to lose: a subscriber is learned again from
//! presence, a job resumes from its previous checkpoint (its report counts
//! the difference in `possible_duplicates`), and a report whose
//! confirmation was lost is published again as the job's own.

use std::time::{Duration, Instant};

use super::io::{Batch, JobId, Publish};
use crate::backoff::Backoff;
use crate::store::Change;

/// How long a change no job waits for may wait for a batch.
pub const UNAWAITED_DELAY: Duration = Duration::from_secs(1);

/// What waits for a batch to be committed.
#[derive(Debug, Default, PartialEq)]
pub struct Waiting {
    pub jobs: Vec<JobId>,
    /// Replies to send once it is committed.
    pub replies: Vec<Publish>,
}

#[derive(Debug)]
pub struct StoreLog {
    pending: Vec<Change>,
    /// When the changes in `pending` must go even if no job waits for them:
    /// [`UNAWAITED_DELAY`] after the oldest was written.
    pending_deadline: Option<Instant>,
    /// Jobs whose completion is in `pending`.
    pending_jobs: Vec<JobId>,
    /// Replies to requests whose changes are in `pending`.
    pending_replies: Vec<Publish>,
    /// The batch being committed: its id and what waits for it.
    committing: Option<(u64, Waiting)>,
    /// A batch that failed, to commit again at `retry_at`.
    failed: Option<Batch>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// A commit failed and none has succeeded since.
    failing: bool,
    next_id: u64,
}

impl StoreLog {
    pub fn new(max_backoff: Duration) -> Self {
        StoreLog {
            pending: Vec::new(),
            pending_deadline: None,
            pending_jobs: Vec::new(),
            pending_replies: Vec::new(),
            committing: None,
            failed: None,
            retry_at: None,
            backoff: Backoff::new(max_backoff),
            failing: false,
            next_id: 0,
        }
    }

    pub fn write(&mut self, change: Change, now: Instant) {
        self.pending_deadline.get_or_insert(now + UNAWAITED_DELAY);
        self.pending.push(change);
    }

    /// `job` may go on once the changes written so far are committed.
    pub fn after_commit(&mut self, job: JobId) {
        self.pending_jobs.push(job);
    }

    /// `reply` is to go once the changes written so far are committed.
    pub fn reply_after_commit(&mut self, reply: Publish) {
        self.pending_replies.push(reply);
    }

    /// The next batch to commit, if none is being committed.
    pub fn next_batch(&mut self, now: Instant) -> Option<Batch> {
        if self.failed.is_some() {
            // The jobs stay attached to the batch being committed.
            if self.retry_at.is_some_and(|at| now < at) {
                return None;
            }
            self.retry_at = None;
            return self.failed.take();
        }
        let unawaited_due = self.pending_deadline.is_some_and(|at| at <= now);
        let awaited = !self.pending_jobs.is_empty() || !self.pending_replies.is_empty();
        if self.committing.is_some() || !awaited && !unawaited_due {
            return None;
        }
        self.pending_deadline = None;
        self.next_id += 1;
        let waiting = Waiting {
            jobs: std::mem::take(&mut self.pending_jobs),
            replies: std::mem::take(&mut self.pending_replies),
        };
        self.committing = Some((self.next_id, waiting));
        Some(Batch {
            id: self.next_id,
            changes: std::mem::take(&mut self.pending),
        })
    }

    /// Batch `id` is committed; returns what waited for it.
    pub fn committed(&mut self, id: u64) -> Waiting {
        match self.committing.take() {
            Some((committing, waiting)) if committing == id => {
                self.backoff.reset();
                self.failing = false;
                waiting
            }
            other => {
                self.committing = other;
                Waiting::default()
            }
        }
    }

    /// Batch `batch` was not committed: it is tried again later, before
    /// anything written since. Returns when, and the replies that waited
    /// for it (to be answered with the failure now; its jobs wait on).
    pub fn failed(&mut self, batch: Batch, now: Instant) -> Option<(Instant, Vec<Publish>)> {
        let (committing, waiting) = self.committing.as_mut()?;
        if *committing != batch.id {
            return None;
        }
        let replies = std::mem::take(&mut waiting.replies);
        let at = now + self.backoff.next_steady();
        self.failed = Some(batch);
        self.failing = true;
        self.retry_at = Some(at);
        Some((at, replies))
    }

    /// When [`StoreLog::next_batch`] may have a batch it has not now: a
    /// retry, or changes no job waits for.
    pub fn due_at(&self) -> Option<Instant> {
        let unawaited = self
            .pending_deadline
            .filter(|_| self.committing.is_none() && self.failed.is_none());
        self.retry_at.into_iter().chain(unawaited).min()
    }

    /// A commit failed and has not succeeded since.
    pub fn is_failing(&self) -> bool {
        self.failing
    }

    /// Nothing being committed and no job or reply waiting for a commit
    /// (changes nothing waits for are left to [`StoreLog::take_unwritten`]).
    pub fn is_idle(&self) -> bool {
        self.committing.is_none()
            && self.failed.is_none()
            && self.pending_jobs.is_empty()
            && self.pending_replies.is_empty()
    }

    /// What is not committed yet, failed batch first (at shutdown, for a
    /// last attempt by the shell).
    pub fn take_unwritten(&mut self) -> Vec<Change> {
        let mut changes = self.failed.take().map(|b| b.changes).unwrap_or_default();
        changes.append(&mut self.pending);
        self.pending_deadline = None;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str) -> Change {
        Change::JobReported(key.into())
    }

    fn job(tag: u64) -> JobId {
        JobId {
            generation: 1,
            lane: crate::core::Lane::Normal,
            tag,
        }
    }

    #[test]
    fn changes_made_while_a_batch_commits_go_in_the_next_one() {
        let mut log = StoreLog::new(Duration::from_secs(30));
        let now = Instant::now();
        log.write(change("a"), now);
        log.after_commit(job(1));
        let first = log.next_batch(now).unwrap();
        log.write(change("b"), now);
        log.after_commit(job(2));
        assert!(log.next_batch(now).is_none(), "one batch at a time");
        assert_eq!(log.committed(first.id).jobs, vec![job(1)]);
        let second = log.next_batch(now).unwrap();
        assert_eq!(second.changes, vec![change("b")]);
        assert_eq!(log.committed(second.id).jobs, vec![job(2)]);
        assert!(log.is_idle());
    }

    #[test]
    fn a_failed_batch_is_retried_first_and_its_jobs_wait_for_it() {
        let mut log = StoreLog::new(Duration::from_secs(30));
        let now = Instant::now();
        log.write(change("a"), now);
        log.after_commit(job(1));
        let batch = log.next_batch(now).unwrap();
        let (retry, _) = log.failed(batch.clone(), now).unwrap();
        assert!(log.is_failing());
        log.write(change("b"), now);
        log.after_commit(job(2));
        assert!(log.next_batch(now).is_none(), "not before the retry");
        let again = log.next_batch(retry).unwrap();
        assert_eq!(again, batch);
        assert_eq!(log.committed(again.id).jobs, vec![job(1)]);
        assert!(!log.is_failing());
        assert_eq!(log.next_batch(retry).unwrap().changes, vec![change("b")]);
    }

    #[test]
    fn a_stray_answer_changes_nothing() {
        let mut log = StoreLog::new(Duration::from_secs(30));
        let now = Instant::now();
        log.after_commit(job(1));
        let batch = log.next_batch(now).unwrap();
        assert_eq!(log.committed(batch.id + 1), Waiting::default());
        assert_eq!(log.committed(batch.id).jobs, vec![job(1)]);
    }

    #[test]
    fn a_change_no_job_waits_for_goes_with_the_next_awaited_batch_or_after_the_delay() {
        let mut log = StoreLog::new(Duration::from_secs(30));
        let now = Instant::now();
        log.write(change("a"), now);
        assert!(log.next_batch(now).is_none(), "no sync for it alone yet");
        assert!(log.is_idle());
        assert_eq!(log.due_at(), Some(now + UNAWAITED_DELAY));
        log.after_commit(job(1));
        let batch = log.next_batch(now).unwrap();
        assert_eq!(batch.changes, vec![change("a")], "it rides along");
        assert_eq!(log.committed(batch.id).jobs, vec![job(1)]);

        log.write(change("b"), now);
        assert!(log.next_batch(now + UNAWAITED_DELAY / 2).is_none());
        let late = log.next_batch(now + UNAWAITED_DELAY).unwrap();
        assert_eq!(late.changes, vec![change("b")], "but not forever");
        assert_eq!(log.due_at(), None, "nothing else to do");
    }

    fn reply(tag: u64) -> Publish {
        Publish {
            id: None,
            generation: 1,
            destination: super::super::io::Destination::Events {
                routing_key: format!("reply {tag}"),
            },
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_reply_starts_a_batch_goes_once_it_is_committed_and_is_handed_back_if_it_fails() {
        let mut log = StoreLog::new(Duration::from_secs(30));
        let now = Instant::now();
        log.write(change("a"), now);
        log.reply_after_commit(reply(1));
        assert!(!log.is_idle(), "a reply waits");
        let batch = log.next_batch(now).unwrap();
        assert_eq!(log.committed(batch.id).replies, vec![reply(1)]);

        log.write(change("b"), now);
        log.after_commit(job(2));
        log.reply_after_commit(reply(2));
        let batch = log.next_batch(now).unwrap();
        let (retry, replies) = log.failed(batch.clone(), now).unwrap();
        assert_eq!(replies, vec![reply(2)], "answered now, not after the retry");
        let again = log.next_batch(retry).unwrap();
        let waiting = log.committed(again.id);
        assert_eq!((waiting.jobs, waiting.replies), (vec![job(2)], vec![]));
    }
}
