//! What one report says of its job, checked against the job: its deadline,
//! the groups it named that do not exist, and how many recipients it has.

use std::collections::BTreeSet;
use std::time::Instant;

use herald::broadcast::Report;

use super::checks::Job;
use super::groups::MISSING;
use super::server;

/// A report's word on expiry, against the job's deadline, checked when the
/// broker takes the report at `now`: expired only once the deadline has
/// passed; a job published after it sends nothing and counts every
/// recipient expired (the world's jobs have no unaddressable entries).
pub fn check_expiry(job: &Job, report: &Report, now: Instant) -> Result<(), String> {
    if report.duplicate {
        return Ok(());
    }
    if report.expired && job.deadline.is_none_or(|deadline| deadline > now) {
        return Err(format!(
            "job {} reported expired before its deadline: {report:?}",
            report.id
        ));
    }
    let published_late = job
        .deadline
        .is_some_and(|deadline| deadline <= job.published_at);
    // (Cancelled before it came up, it is reported cancelled instead.)
    let stopped = if report.cancelled {
        report.skipped.cancelled
    } else {
        report.skipped.expired
    };
    if published_late
        && !((report.expired || report.cancelled)
            && report.sent == 0
            && stopped == report.recipients)
    {
        return Err(format!(
            "job {} was published after its deadline and not reported expired: {report:?}",
            report.id
        ));
    }
    Ok(())
}

/// A report names the groups its job named that do not exist, and no other.
pub fn check_missing_groups(job: &Job, report: &[u8]) -> Result<(), String> {
    let report: serde_json::Value = serde_json::from_slice(report).unwrap_or_default();
    let missing: Vec<&str> = job
        .groups
        .iter()
        .copied()
        .filter(|g| *g == MISSING)
        .collect();
    let said: Vec<&str> = report["missing_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str())
        .collect();
    if said != missing {
        return Err(format!(
            "report of {} names missing groups {said:?}, the job named {:?}",
            job.id, job.groups
        ));
    }
    Ok(())
}

impl Job {
    /// Distinct entries of `to` and members of its groups, as the report
    /// counts them (each user once).
    pub fn recipient_count(&self) -> usize {
        let value: serde_json::Value = serde_json::from_slice(&self.payload).unwrap_or_default();
        let mut recipients: BTreeSet<String> = value["to"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        // `users` holds the group members too (and the users of `to`).
        recipients.extend(self.users.iter().map(|&u| server::user_jid(u).to_string()));
        recipients.len()
    }
}
