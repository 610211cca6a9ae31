//! What a soak published and what came back: every job with its audience
//! and publish time, every `job.report` with its arrival time, and the
//! stretches of time the swarm was logged in throughout. The checks at
//! the end compare them with what the users received.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use herald::broadcast::fanout::Report;

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
    /// Reports the broker delivered again after a broker kill, already
    /// recorded (see [`Ledger::record_report`]).
    pub reports_read_again: u64,
    /// Reports Herald published again, byte for byte, because the broker's
    /// confirm of the first copy was lost (see [`Ledger::record_report`]).
    pub reports_published_again: u64,
    /// The bytes of every report recorded, to know a copy of one.
    report_bytes: HashSet<Vec<u8>>,
    /// When the swarm was logged in and Herald had seen all of it, until a
    /// server restart began (None: to the end).
    pub steady: Vec<(u64, Option<u64>)>,
}

pub type Shared = Arc<Mutex<Ledger>>;

impl Ledger {
    /// Records a report as it came, unless the same bytes were recorded
    /// already: a copy, which an application reading reports by id (as
    /// docs/jobs.md asks) takes once. Copies come two ways after a broker
    /// kill: the broker delivers again one the reader had recorded but not
    /// acknowledged (`redelivered`), or Herald publishes again one whose
    /// confirm was lost although the first copy was routed (not marked).
    /// Reports of one job that differ all count, so a second attempt's own
    /// report still fails the check.
    pub fn record_report(&mut self, data: &[u8], redelivered: bool, at_ns: u64) {
        if self.report_bytes.contains(data) {
            if redelivered {
                self.reports_read_again += 1;
            } else {
                self.reports_published_again += 1;
            }
            return;
        }
        match serde_json::from_slice::<Report>(data) {
            Ok(report) => self.reports.entry(report.id).or_default().push(Seen {
                at_ns,
                duplicate: report.duplicate,
                possible_duplicates: report.possible_duplicates as u64,
            }),
            Err(_) => self.unreadable_reports += 1,
        }
        self.report_bytes.insert(data.to_vec());
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &[u8] = br#"{"id":"soak-0","recipients":1,"sent":1,"skipped":{"offline":0,"unavailable":0,"invalid":0}}"#;

    #[test]
    fn a_report_delivered_again_after_a_broker_kill_counts_once() {
        let mut ledger = Ledger::default();
        ledger.record_report(REPORT, false, 1);
        ledger.record_report(REPORT, true, 2);
        assert_eq!(ledger.reports["soak-0"].len(), 1);
        assert_eq!(ledger.reports_read_again, 1);
    }

    #[test]
    fn a_report_published_again_byte_for_byte_counts_once() {
        let mut ledger = Ledger::default();
        ledger.record_report(REPORT, false, 1);
        ledger.record_report(REPORT, false, 2);
        assert_eq!(ledger.reports["soak-0"].len(), 1);
        assert_eq!(ledger.reports_published_again, 1);
        // First seen as a redelivery: its first delivery never got here.
        let mut ledger = Ledger::default();
        ledger.record_report(REPORT, true, 1);
        assert_eq!(ledger.reports["soak-0"].len(), 1);
        assert_eq!(ledger.reports_read_again, 0);
    }

    #[test]
    fn own_reports_of_one_job_that_differ_both_count() {
        let other = br#"{"id":"soak-0","recipients":1,"sent":0,"skipped":{"offline":1,"unavailable":0,"invalid":0}}"#;
        let mut ledger = Ledger::default();
        ledger.record_report(REPORT, false, 1);
        ledger.record_report(other, false, 2);
        assert_eq!(ledger.reports["soak-0"].len(), 2);
    }
}
