//! What a soak published and what came back: every job with its audience
//! and publish time, every `job.report` with its arrival time, and the
//! stretches of time the swarm was logged in throughout. The checks at
//! the end compare them with what the users received.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use herald::broadcast::fanout::Report;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Connection;

use super::schedule::Audience;

pub struct Job {
    pub id: String,
    pub audience: Audience,
    /// Nanoseconds since the run's epoch.
    pub published_ns: u64,
}

/// One `job.report` as it arrived.
pub struct Seen {
    pub at_ns: u64,
    pub duplicate: bool,
    pub possible_duplicates: u64,
}

#[derive(Default)]
pub struct Ledger {
    /// Indexed by sequence number.
    pub jobs: Vec<Job>,
    pub reports: HashMap<String, Vec<Seen>>,
    pub unreadable_reports: u64,
    /// When the swarm was logged in and Herald had seen all of it, until a
    /// server restart began (None: to the end).
    pub steady: Vec<(u64, Option<u64>)>,
}

pub type Shared = Arc<Mutex<Ledger>>;

impl Ledger {
    /// Jobs without a report that is their own (not `duplicate`).
    pub fn unreported(&self) -> usize {
        self.jobs
            .iter()
            .filter(|job| self.own_report(&job.id).is_none())
            .count()
    }

    /// When a job's first own report arrived.
    pub fn own_report(&self, id: &str) -> Option<u64> {
        self.reports
            .get(id)?
            .iter()
            .find(|seen| !seen.duplicate)
            .map(|seen| seen.at_ns)
    }

    /// Whether a job's recipients are held to getting it: it was published
    /// and its own report arrived inside one steady stretch.
    pub fn held(&self, job: &Job) -> bool {
        let Some(reported) = self.own_report(&job.id) else {
            return false;
        };
        self.steady
            .iter()
            .any(|&(from, to)| from <= job.published_ns && to.is_none_or(|to| reported <= to))
    }
}

/// Binds a queue of its own to the events exchange and records every
/// report into `ledger`, stamped with `clock` (nanoseconds since the
/// run's epoch).
pub async fn record_reports(
    connection: &Connection,
    events: &str,
    queue: &str,
    ledger: Shared,
    clock: impl Fn() -> u64 + Send + 'static,
) -> Result<(), String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("reports channel: {e}"))?;
    let options = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .map_err(|e| format!("declare {queue}: {e}"))?;
    channel
        .queue_bind(
            queue.into(),
            events.into(),
            "job.report".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("bind {queue}: {e}"))?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "soak-reports".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consume {queue}: {e}"))?;
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let at_ns = clock();
            let mut ledger = ledger.lock().unwrap();
            match serde_json::from_slice::<Report>(&delivery.data) {
                Ok(report) => ledger.reports.entry(report.id).or_default().push(Seen {
                    at_ns,
                    duplicate: report.duplicate,
                    possible_duplicates: report.possible_duplicates as u64,
                }),
                Err(_) => ledger.unreadable_reports += 1,
            }
        }
    });
    Ok(())
}
