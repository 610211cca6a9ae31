//! Commits to the store's stream in order, one at a time, with a snapshot
//! between two when one is due; every batch handed over is answered, even
//! when the connection goes first.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use super::{StreamError, StreamStore};
use crate::core::Batch;
use crate::store::replica;

/// How a batch went.
#[derive(Debug)]
pub enum Answer {
    Committed(u64),
    /// Here it is back, to be committed again.
    Failed(Batch, String),
}

enum Outcome {
    Commit(Result<(), StreamError>),
    Snapshot(Result<u64, StreamError>),
}

type Op = Pin<Box<dyn Future<Output = (StreamStore, Outcome)> + Send>>;

pub struct Appender {
    /// `None` while an operation holds it.
    store: Option<StreamStore>,
    waiting: VecDeque<Batch>,
    /// The batch being appended, answered when its operation ends.
    appending: Option<Batch>,
    op: Option<Op>,
}

impl Appender {
    pub fn new(store: StreamStore) -> Appender {
        Appender {
            store: Some(store),
            waiting: VecDeque::new(),
            appending: None,
            op: None,
        }
    }

    pub fn commit(&mut self, batch: Batch) {
        self.waiting.push_back(batch);
        self.start();
    }

    /// Nothing handed over is unanswered.
    pub fn is_idle(&self) -> bool {
        self.op.is_none() && self.waiting.is_empty()
    }

    /// Starts a snapshot if one is due, else the next batch.
    fn start(&mut self) {
        if self.op.is_some() {
            return;
        }
        let Some(mut store) = self.store.take() else {
            return;
        };
        if store.snapshot_due() {
            self.op = Some(Box::pin(async move {
                let written = store.write_snapshot().await;
                (store, Outcome::Snapshot(written))
            }));
            return;
        }
        let Some(batch) = self.waiting.pop_front() else {
            self.store = Some(store);
            return;
        };
        let commit = replica::batch(&batch.changes);
        self.appending = Some(batch);
        self.op = Some(Box::pin(async move {
            let appended = store.append(commit).await;
            (store, Outcome::Commit(appended))
        }));
    }

    /// The next answer; pending while nothing is being appended. Dropping
    /// it loses nothing: the operation stays here.
    pub async fn next(&mut self) -> Answer {
        loop {
            let Some(op) = self.op.as_mut() else {
                return std::future::pending().await;
            };
            let (store, outcome) = op.await;
            self.op = None;
            let stream = store.queue().to_string();
            self.store = Some(store);
            let answer = match outcome {
                Outcome::Snapshot(Ok(bytes)) => {
                    tracing::info!(%stream, bytes, "store snapshot written to the stream");
                    None
                }
                Outcome::Snapshot(Err(e)) => {
                    tracing::warn!(%stream, error = %e, "store snapshot failed; the stream goes on growing");
                    None
                }
                Outcome::Commit(appended) => self.appending.take().map(|batch| match appended {
                    Ok(()) => Answer::Committed(batch.id),
                    Err(e) => Answer::Failed(batch, e.to_string()),
                }),
            };
            self.start();
            if let Some(answer) = answer {
                return answer;
            }
        }
    }

    /// Everything handed over and not answered, as failed: the connection
    /// is gone.
    pub fn abandon(self) -> impl Iterator<Item = Answer> {
        let lost = || "the broker connection was lost".to_string();
        (self.appending.into_iter())
            .chain(self.waiting)
            .map(move |batch| Answer::Failed(batch, lost()))
    }
}
