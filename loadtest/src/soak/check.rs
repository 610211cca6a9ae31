//! The soak's verdict: every job reported exactly once as its own, no
//! message lost to a user who stayed logged in, and no more recipients
//! reached more than once than the reports declared.
//!
//! `possible_duplicates` counts recipients, not copies (docs/jobs.md): a
//! job attempted three times without a checkpoint between can reach a
//! recipient three times, and its last attempt, the only one reported,
//! declares that recipient once. The tests and the simulation hold Herald
//! to the same rule.

use std::collections::HashMap;

use serde::Serialize;

use super::ledger::{Job, Ledger, Seen};

/// The figures a soak prints at its end.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    pub jobs: usize,
    /// Jobs published and reported inside one steady stretch: their
    /// recipients are held to getting them.
    pub held_jobs: usize,
    /// Messages the held jobs owe their recipients.
    pub held_messages: u64,
    /// Every message the swarm received from the soak.
    pub received: u64,
    /// Held messages that never arrived: must be 0.
    pub losses: u64,
    /// Messages of jobs not held (published or reported across a server
    /// restart) that did not arrive: the restart logged their users out.
    pub missed_across_restarts: u64,
    /// Arrivals beyond the first of a job at a user.
    pub duplicates: u64,
    /// (job, user) pairs with more than one arrival.
    pub recipients_reached_twice: u64,
    /// Each job's `possible_duplicates` (the largest of its reports), summed.
    pub declared_possible_duplicates: u64,
    /// Jobs that reached more recipients more than once than their reports
    /// declared.
    pub undeclared_duplicate_jobs: usize,
    /// Jobs with no own report, or with more than one.
    pub unreported_jobs: usize,
    pub jobs_reported_twice: usize,
    /// Reports marked `duplicate` (a repeated job id after a redelivery).
    pub duplicate_reports: usize,
    /// Reports of ids the soak never published, or unreadable.
    pub stray_reports: u64,
    /// Reports the broker delivered to the soak again after a broker kill
    /// (already recorded, not counted again).
    pub reports_read_again: u64,
    /// Reports Herald published again byte for byte after a lost confirm
    /// (not counted again).
    pub reports_published_again: u64,
    /// Messages at a user who was not a recipient of their job.
    pub stray_messages: u64,
    /// Each job with no own report, more than one, or more duplicates
    /// than declared: its reports and arrivals, to start a diagnosis from.
    #[serde(skip)]
    pub suspects: Vec<String>,
}

impl Figures {
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let mut fail = |bad: bool, what: String| {
            if bad {
                failures.push(what);
            }
        };
        fail(self.losses > 0, format!("{} messages lost", self.losses));
        fail(
            self.unreported_jobs > 0,
            format!("{} jobs have no own report", self.unreported_jobs),
        );
        fail(
            self.jobs_reported_twice > 0,
            format!(
                "{} jobs have more than one own report",
                self.jobs_reported_twice
            ),
        );
        fail(
            self.undeclared_duplicate_jobs > 0,
            format!(
                "{} jobs reached more recipients more than once than their reports' possible_duplicates allow",
                self.undeclared_duplicate_jobs
            ),
        );
        fail(
            self.stray_reports > 0,
            format!(
                "{} reports of unknown jobs or unreadable",
                self.stray_reports
            ),
        );
        fail(
            self.stray_messages > 0,
            format!(
                "{} messages reached a user who was not a recipient",
                self.stray_messages
            ),
        );
        failures
    }
}

/// `receipts[user]`: the sequence numbers of the messages that user got,
/// over every login.
pub fn check(ledger: &Ledger, receipts: &[Vec<u64>]) -> Figures {
    let swarm = receipts.len();
    // (job, user) -> arrivals.
    let mut arrivals: HashMap<(u64, usize), u64> = HashMap::new();
    let mut figures = Figures::default();
    for (user, seqs) in receipts.iter().enumerate() {
        for &seq in seqs {
            *arrivals.entry((seq, user)).or_default() += 1;
            figures.received += 1;
        }
    }
    figures.jobs = ledger.jobs.len();
    figures.reports_read_again = ledger.reports_read_again;
    figures.reports_published_again = ledger.reports_published_again;
    let mut counted = 0u64;
    for (seq, job) in ledger.jobs.iter().enumerate() {
        let seq = seq as u64;
        let reports = ledger.reports.get(&job.id).map_or(&[][..], Vec::as_slice);
        let own = reports.iter().filter(|seen| !seen.duplicate).count();
        figures.unreported_jobs += usize::from(own == 0);
        figures.jobs_reported_twice += usize::from(own > 1);
        figures.duplicate_reports += reports.len() - own;
        // A duplicate report repeats the counts of the job it repeats.
        let declared = reports
            .iter()
            .map(|seen| seen.possible_duplicates)
            .max()
            .unwrap_or(0);
        figures.declared_possible_duplicates += declared;
        let held = ledger.held(job);
        figures.held_jobs += usize::from(held);
        let mut twice = 0;
        for user in job.audience.users(swarm) {
            let got = arrivals.get(&(seq, user)).copied().unwrap_or(0);
            counted += got;
            figures.duplicates += got.saturating_sub(1);
            twice += u64::from(got > 1);
            match (got, held) {
                (0, true) => figures.losses += 1,
                (0, false) => figures.missed_across_restarts += 1,
                _ => {}
            }
            if held {
                figures.held_messages += 1;
            }
        }
        figures.recipients_reached_twice += twice;
        figures.undeclared_duplicate_jobs += usize::from(twice > declared);
        if own != 1 || twice > declared {
            figures.suspects.push(suspect(job, reports, twice));
        }
    }
    figures.stray_messages = figures.received - counted;
    let known = ledger
        .jobs
        .iter()
        .filter(|job| ledger.reports.contains_key(&job.id));
    figures.stray_reports =
        ledger.unreadable_reports + (ledger.reports.len() - known.count()) as u64;
    figures
}

/// One line on a job that failed a check: when it was published, its
/// reports in the order they came, and how many recipients it reached
/// more than once.
fn suspect(job: &Job, reports: &[Seen], twice: u64) -> String {
    let secs = |ns: u64| ns as f64 / 1e9;
    let reports: Vec<String> = reports
        .iter()
        .map(|seen| {
            let kind = if seen.duplicate { "duplicate" } else { "own" };
            format!(
                "{kind} at {:.1} s declaring {}",
                secs(seen.at_ns),
                seen.possible_duplicates
            )
        })
        .collect();
    format!(
        "{} ({} recipients, published at {:.1} s): {twice} reached more than once; reports: [{}]",
        job.id,
        job.audience.count,
        secs(job.published_ns),
        reports.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::super::schedule::Audience;
    use super::*;

    fn ledger(reports: &[(&str, bool, u64)]) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.steady.push((0, None));
        ledger.jobs.push(Job {
            id: "soak-0".into(),
            audience: Audience { first: 0, count: 2 },
            published_ns: 1,
        });
        for &(id, duplicate, possible_duplicates) in reports {
            ledger.reports.entry(id.into()).or_default().push(Seen {
                at_ns: 2,
                duplicate,
                possible_duplicates,
            });
        }
        ledger
    }

    #[test]
    fn a_clean_job_passes() {
        let figures = check(&ledger(&[("soak-0", false, 0)]), &[vec![0], vec![0]]);
        assert!(figures.failures().is_empty(), "{figures:?}");
    }

    #[test]
    fn a_missing_message_is_a_loss() {
        let figures = check(&ledger(&[("soak-0", false, 0)]), &[vec![0], vec![]]);
        assert_eq!(figures.losses, 1);
    }

    #[test]
    fn duplicates_must_be_declared() {
        let receipts = [vec![0, 0], vec![0]];
        let undeclared = check(&ledger(&[("soak-0", false, 0)]), &receipts);
        assert_eq!(undeclared.undeclared_duplicate_jobs, 1);
        assert_eq!(
            undeclared.suspects,
            ["soak-0 (2 recipients, published at 0.0 s): 1 reached more than once; reports: [own at 0.0 s declaring 0]"]
        );
        let declared = ledger(&[("soak-0", false, 0), ("soak-0", true, 1)]);
        let figures = check(&declared, &receipts);
        assert!(figures.failures().is_empty());
        assert!(figures.suspects.is_empty());
    }

    #[test]
    fn possible_duplicates_count_recipients_not_copies() {
        // Three attempts reached the first user three times; the last
        // declared that user once.
        let receipts = [vec![0, 0, 0], vec![0]];
        let figures = check(&ledger(&[("soak-0", false, 1)]), &receipts);
        assert!(figures.failures().is_empty(), "{figures:?}");
        assert_eq!(
            (figures.duplicates, figures.recipients_reached_twice),
            (2, 1)
        );
        // Both users reached twice, one declared.
        let receipts = [vec![0, 0], vec![0, 0]];
        let figures = check(&ledger(&[("soak-0", false, 1)]), &receipts);
        assert_eq!(figures.undeclared_duplicate_jobs, 1);
    }

    #[test]
    fn own_reports_are_counted_once_duplicates_aside() {
        let twice = check(
            &ledger(&[("soak-0", false, 0), ("soak-0", false, 0)]),
            &[vec![0], vec![0]],
        );
        assert_eq!(twice.jobs_reported_twice, 1);
        let none = check(&ledger(&[("soak-0", true, 0)]), &[vec![0], vec![0]]);
        assert_eq!(none.unreported_jobs, 1);
        let stray = check(
            &ledger(&[("soak-0", false, 0), ("other", false, 0)]),
            &[vec![0], vec![0]],
        );
        assert_eq!(stray.stray_reports, 1);
    }

    #[test]
    fn a_job_reported_after_a_restart_is_not_held() {
        let mut restarted = ledger(&[("soak-0", false, 0)]);
        restarted.steady = vec![(0, Some(1)), (3, None)];
        let figures = check(&restarted, &[vec![0], vec![]]);
        assert_eq!((figures.losses, figures.missed_across_restarts), (0, 1));
    }
}
