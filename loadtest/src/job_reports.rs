//! The components' `job.report` events, tallied: which jobs were reported,
//! how many messages the reports say were sent, and which reports are
//! wrong.

use std::collections::HashSet;

use serde::Deserialize;

/// The fields of a report the tally checks (Herald's `Report`, which the
/// baseline mirrors).
#[derive(Deserialize)]
struct Report {
    id: String,
    recipients: u64,
    sent: u64,
    skipped: Skipped,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct Skipped {
    offline: u64,
    unavailable: u64,
    invalid: u64,
}

impl Report {
    fn adds_up(&self) -> bool {
        self.sent + self.skipped.offline + self.skipped.unavailable + self.skipped.invalid
            == self.recipients
    }
}

/// What the reports so far say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportCounts {
    /// Distinct job ids reported.
    pub jobs: u64,
    /// `sent` summed over the first report of each job.
    pub sent: u64,
    /// Reports that are unreadable, whose counts do not add up to
    /// `recipients`, that say `duplicate`, or that repeat a job's id.
    pub incomplete: u64,
}

#[derive(Debug, Default)]
pub struct ReportTally {
    ids: HashSet<String>,
    counts: ReportCounts,
}

impl ReportTally {
    /// Counts one report, as it came off the queue.
    pub fn add(&mut self, body: &[u8]) {
        let Ok(report) = serde_json::from_slice::<Report>(body) else {
            self.counts.incomplete += 1;
            return;
        };
        if !report.adds_up() || report.duplicate {
            self.counts.incomplete += 1;
        }
        // A repeated report is not added again: its job was sent once.
        if !self.ids.insert(report.id) {
            self.counts.incomplete += 1;
            return;
        }
        self.counts.jobs += 1;
        self.counts.sent += report.sent;
    }

    pub fn counts(&self) -> ReportCounts {
        self.counts
    }

    /// Whether the job with this id has a report.
    pub fn reported(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, recipients: u64, sent: u64, offline: u64) -> Vec<u8> {
        format!(
            r#"{{"id":"{id}","recipients":{recipients},"sent":{sent},
                "skipped":{{"offline":{offline},"unavailable":0,"invalid":0}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn counts_distinct_jobs_and_their_sent_messages() {
        let mut tally = ReportTally::default();
        tally.add(&report("a", 3, 2, 1));
        tally.add(&report("b", 1, 1, 0));
        assert_eq!(
            tally.counts(),
            ReportCounts {
                jobs: 2,
                sent: 3,
                incomplete: 0
            }
        );
    }

    #[test]
    fn a_job_is_reported_once_its_report_came() {
        let mut tally = ReportTally::default();
        tally.add(&report("big-1", 3, 3, 0));
        assert!(tally.reported("big-1"));
        assert!(!tally.reported("small-1"));
    }

    #[test]
    fn a_repeated_job_counts_once_and_as_incomplete() {
        let mut tally = ReportTally::default();
        tally.add(&report("a", 2, 2, 0));
        tally.add(&report("a", 2, 2, 0));
        assert_eq!(
            tally.counts(),
            ReportCounts {
                jobs: 1,
                sent: 2,
                incomplete: 1
            }
        );
    }

    #[test]
    fn counts_that_do_not_add_up_are_incomplete() {
        let mut tally = ReportTally::default();
        tally.add(&report("a", 5, 2, 1));
        assert_eq!(
            tally.counts(),
            ReportCounts {
                jobs: 1,
                sent: 2,
                incomplete: 1
            }
        );
    }

    #[test]
    fn duplicate_flags_and_unreadable_reports_are_incomplete() {
        let mut tally = ReportTally::default();
        tally.add(
            br#"{"id":"a","recipients":1,"sent":1,"duplicate":true,
                 "skipped":{"offline":0,"unavailable":0,"invalid":0}}"#,
        );
        tally.add(b"{\"id\":\"b\"}");
        tally.add(b"not json");
        assert_eq!(
            tally.counts(),
            ReportCounts {
                jobs: 1,
                sent: 1,
                incomplete: 3
            }
        );
    }

    #[test]
    fn herald_optional_fields_are_accepted() {
        let mut tally = ReportTally::default();
        tally.add(
            br#"{"id":"a","recipients":2,"sent":2,"possible_duplicates":1,
                 "skipped":{"offline":0,"unavailable":0,"invalid":0}}"#,
        );
        assert_eq!(tally.counts().incomplete, 0);
    }
}
