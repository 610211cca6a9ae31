//! The core's view of the broker: which connection is live, and the
//! publishes that settle a job once confirmed. A publish the broker refuses
//! is kept and published again with backoff on the same connection; the
//! job stays unacknowledged meanwhile, so a refused report never makes
//! Herald send a job's messages twice. When the connection is lost its
//! publishes are forgotten: the broker requeued their jobs.

use std::time::{Duration, Instant};

use super::id_map::IdMap;
use super::io::{Destination, JobId, Publish};
use crate::backoff::Backoff;

/// A publish waiting for its confirm, and what it settles.
#[derive(Debug)]
pub struct Awaiting {
    pub job: JobId,
    /// A completed job's key: once its report is confirmed the store
    /// records that it went out.
    pub reported_key: Option<String>,
    /// A part naming the job's recipients: the job waits for all of them
    /// before it completes.
    pub names_part: bool,
}

impl Awaiting {
    /// The publish that settles `job` (its report or dead letter).
    pub fn settles(job: JobId, reported_key: Option<String>) -> Awaiting {
        Awaiting {
            job,
            reported_key,
            names_part: false,
        }
    }
}

#[derive(Debug)]
pub struct Broker {
    live: Option<u64>,
    /// The newest connection ever up: anything of an older one is stale.
    newest: u64,
    next_id: u64,
    awaiting: IdMap<u64, Awaiting>,
    refused: Vec<Publish>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Events that had no connection to go to since the last one was up.
    dropped_events: u64,
}

impl Broker {
    pub fn new(max_backoff: Duration) -> Self {
        Broker {
            live: None,
            newest: 0,
            next_id: 0,
            awaiting: IdMap::default(),
            refused: Vec::new(),
            retry_at: None,
            backoff: Backoff::new(max_backoff),
            dropped_events: 0,
        }
    }

    /// The live connection's generation.
    pub fn live(&self) -> Option<u64> {
        self.live
    }

    /// Whether `generation` is newer than any connection seen so far.
    pub fn is_new(&self, generation: u64) -> bool {
        generation > self.newest
    }

    /// Connection `generation` is up; returns how many events were dropped
    /// while none was.
    pub fn up(&mut self, generation: u64) -> u64 {
        self.live = Some(generation);
        self.newest = self.newest.max(generation);
        self.backoff.reset();
        std::mem::take(&mut self.dropped_events)
    }

    /// Connection `generation` is gone with its publishes.
    pub fn lost(&mut self, generation: u64) {
        if self.live == Some(generation) {
            self.live = None;
        }
        self.awaiting.retain(|_, a| a.job.generation != generation);
        self.refused.retain(|p| p.generation != generation);
        if self.refused.is_empty() {
            self.retry_at = None;
        }
    }

    /// A best-effort event for the live connection, if there is one.
    pub fn event(&mut self, routing_key: String, payload: Vec<u8>) -> Option<Publish> {
        let Some(generation) = self.live else {
            self.dropped_events += 1;
            return None;
        };
        Some(Publish {
            id: None,
            generation,
            destination: Destination::Events { routing_key },
            payload,
        })
    }

    /// A publish that settles `awaiting.job` once confirmed.
    pub fn settling(
        &mut self,
        awaiting: Awaiting,
        destination: Destination,
        payload: Vec<u8>,
    ) -> Publish {
        self.next_id += 1;
        let publish = Publish {
            id: Some(self.next_id),
            generation: awaiting.job.generation,
            destination,
            payload,
        };
        self.awaiting.insert(self.next_id, awaiting);
        publish
    }

    /// A publish whose confirm the caller waits for itself (it settles no
    /// job): never retried here.
    pub fn confirmable(
        &mut self,
        generation: u64,
        destination: Destination,
        payload: Vec<u8>,
    ) -> Publish {
        self.next_id += 1;
        Publish {
            id: Some(self.next_id),
            generation,
            destination,
            payload,
        }
    }

    /// Publish `id` is confirmed: what it settles, unless its connection
    /// was lost meanwhile.
    pub fn confirmed(&mut self, id: u64) -> Option<Awaiting> {
        if self.refused.is_empty() {
            self.backoff.reset();
        }
        self.awaiting.remove(&id)
    }

    /// `publish` was refused; it goes again at the returned time.
    pub fn refused(&mut self, publish: Publish, now: Instant) -> Option<Instant> {
        let id = publish.id?;
        if !self.awaiting.contains_key(&id) {
            return None;
        }
        self.refused.push(publish);
        let at = *self
            .retry_at
            .get_or_insert_with(|| now + self.backoff.next_steady());
        Some(at)
    }

    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The refused publishes, to go again now.
    pub fn retry(&mut self, now: Instant) -> Vec<Publish> {
        if self.retry_at.is_none_or(|at| now < at) {
            return Vec::new();
        }
        self.retry_at = None;
        std::mem::take(&mut self.refused)
    }
}
