//! Cancellations in the simulated world: now and then the application
//! cancels a job by id (one published, one it will publish, or one it
//! never does), from a random stream of its own so that each seed's jobs
//! and faults stay as they were. Checked against what the broker took:
//!
//! - a report says `cancelled` only for an id the application cancelled;
//! - once a cancellation is answered `pending` or `in_progress` (so the
//!   store has it), every own report of that job says `cancelled`.
//!
//! That every recipient is counted once (`skipped.cancelled` included),
//! and that each job gets one own report, is checked with the rest
//! (`checks.rs`).

use std::collections::BTreeSet;

use herald::broadcast::Report;
use herald::control::{CancelResult, CancelState, Reply};
use herald::core::{Destination, Publish};
use serde_json::json;

use herald_testkit::draw::Draw;

/// Ids cancelled are drawn among this many (the world publishes fewer).
const IDS: u64 = 16;

pub struct Cancels {
    rng: Draw,
    asked: BTreeSet<String>,
    /// Answered pending or in progress: the job is to be reported cancelled.
    promised: BTreeSet<String>,
    /// Jobs with an own report that did not say cancelled.
    reported_uncancelled: BTreeSet<String>,
}

impl Cancels {
    pub fn new(seed: u64) -> Cancels {
        Cancels {
            rng: Draw::new(seed ^ 0xCA_4C_E1_1E),
            asked: BTreeSet::new(),
            promised: BTreeSet::new(),
            reported_uncancelled: BTreeSet::new(),
        }
    }

    /// About one step in fifty, a cancel request's body.
    pub fn request(&mut self) -> Option<Vec<u8>> {
        if !self.rng.chance(20) {
            return None;
        }
        let id = format!("j{}", self.rng.below(IDS));
        self.asked.insert(id.clone());
        Some(json!({"op": "cancel", "id": id}).to_string().into_bytes())
    }

    /// The broker took `publish`.
    pub fn on_publish_taken(&mut self, publish: &Publish) -> Result<(), String> {
        match &publish.destination {
            Destination::Events { routing_key } if routing_key == "job.report" => {
                let Ok(report) = serde_json::from_slice::<Report>(&publish.payload) else {
                    return Ok(());
                };
                if report.cancelled && !self.asked.contains(&report.id) {
                    return Err(format!("job {} reported cancelled unasked", report.id));
                }
                if !report.duplicate && !report.cancelled {
                    self.reported_uncancelled.insert(report.id);
                }
                Ok(())
            }
            Destination::Reply { .. } => {
                let reply: Option<CancelResult> = serde_json::from_slice::<Reply>(&publish.payload)
                    .ok()
                    .and_then(|reply| reply.result)
                    .and_then(|result| serde_json::from_value(result).ok());
                if let Some(result) = reply.filter(|r| r.state != CancelState::Completed) {
                    self.promised.insert(result.id);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// At the end: no job promised cancelled got an own report that was not.
    pub fn check_end(&self) -> Result<(), String> {
        match self
            .promised
            .intersection(&self.reported_uncancelled)
            .next()
        {
            Some(id) => Err(format!(
                "job {id} was answered cancelled and got an own report that is not"
            )),
            None => Ok(()),
        }
    }
}
