//! A job's window (`deliver_within_secs`): the recipients its walk found
//! offline or unavailable wait for their presence to allow the message,
//! until the window ends. Which they are comes from the outcomes the walk
//! recorded (and its checkpoints carried), so a resumed job knows them
//! too. Pure code; the core keeps the window.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::job::{Job, Recipient};
use super::names::{Outcome, Outcomes};
use crate::handler::Deferral;
use crate::xmpp::wire::MessageTemplate;

/// What the first report says of the job's window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WindowRef {
    /// Recipients waiting: of those counted offline and unavailable.
    pub deferred: usize,
    /// When the window ends, ms since the Unix epoch.
    #[serde(rename = "deferred_until_ms")]
    pub until_ms: u64,
    /// Why nobody waits although the job asked for a window.
    #[serde(rename = "deferral_refused", skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// When the window of a job taken at `now` ends: after its
/// `deliver_within`, or its deadline if that comes first; for a job that
/// only asks for receipts, after `receipts_window`. None for a job with
/// neither.
pub fn until(job: &Job, now: Option<SystemTime>, receipts_window: Duration) -> Option<SystemTime> {
    let now = now?;
    match job.deliver_within {
        Some(within) => {
            let end = now + within;
            Some(job.expires_at.map_or(end, |deadline| deadline.min(end)))
        }
        None => job.receipts.then_some(now + receipts_window),
    }
}

/// The window of `job`, walked to its end with `outcomes` (recorded for a
/// job with `deliver_within`), open until `until`: its recipients found
/// offline or unavailable wait, unless more than `room` would (then nobody
/// does, and the reference says why); its `sent` messages' receipts are
/// counted if it asked for them.
pub fn window(
    job: &Job,
    (outcomes, sent): (Option<&Outcomes>, usize),
    template: &Arc<MessageTemplate>,
    until: SystemTime,
    room: usize,
) -> (Option<Deferral>, WindowRef) {
    let outcomes = outcomes.filter(|_| job.deliver_within.is_some());
    let waiting: Vec<(u32, String)> = (job.recipients.iter_from(0).enumerate())
        .filter_map(|(position, recipient)| {
            let waits = matches!(
                outcomes.and_then(|outcomes| outcomes.get(position)),
                Some(Outcome::Offline | Outcome::Unavailable)
            );
            match recipient {
                // Job validation caps recipients far below u32::MAX.
                Recipient::User(user) if waits => Some((position as u32, user.to_string())),
                _ => None,
            }
        })
        .collect();
    let until_ms = until.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    });
    let receipts = job.receipts.then_some(sent);
    if waiting.len() > room {
        let refused = format!(
            "{} recipients would wait, and only {room} more may (broadcast.max_deferred)",
            waiting.len()
        );
        let reference = WindowRef {
            deferred: 0,
            until_ms,
            refused: Some(refused),
        };
        // Receipts are still counted.
        let deferral = receipts.map(|expected| Deferral {
            template: Arc::clone(template),
            policy: job.policy,
            until,
            waiting: Vec::new(),
            names: job.names,
            receipts: Some(expected),
        });
        return (deferral, reference);
    }
    let reference = WindowRef {
        deferred: waiting.len(),
        until_ms,
        refused: None,
    };
    if waiting.is_empty() && receipts.is_none() {
        return (None, reference);
    }
    let deferral = Deferral {
        template: Arc::clone(template),
        policy: job.policy,
        until,
        waiting,
        names: job.names,
        receipts,
    };
    (Some(deferral), reference)
}
