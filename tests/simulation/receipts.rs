//! Delivery receipts (XEP-0184) in the simulated world: half the jobs with
//! a window (every eighth job, from the second) ask for receipts, and so
//! do as many jobs without one (every eighth, from the fourth), which
//! count them for the deployment's `broadcast.receipts_window_secs` from
//! when Herald took them (both by index, so that no world's random draws
//! move); the users' clients
//! answer some of the messages asking for one that they get, now and then
//! twice, from a random stream of their own. Checked at the end, for each
//! final report of such a job:
//!
//! - its `receipts` is at most the number of distinct messages of the job
//!   answered before its window's end (not `sent + late`: a message an
//!   earlier attempt of the job delivered, or a late one whose stream was
//!   lost before the server proved it read it, may be answered by a
//!   recipient the report counts as missed, and Herald counts it);
//! - and at least the number of those answered after the last crash
//!   before the final report (a crash loses the receipts Herald counted
//!   but had not stored yet, and those it held for a window not open yet),
//!   unless a cancellation ended the window before `until_ms`;
//! - for a job without a window of its own, `until_ms` is the receipts
//!   window after a moment between its publish and its final report.
//!
//! Jobs asking for receipts have a window of their own length, and the
//! deployment's receipts window is as long, so that most worlds' jobs
//! complete (and open it) well within it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_xmpp::Stanza;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::Message;

use super::checks::Job;
use herald_testkit::draw::Draw;

const RECEIPTS_NS: &str = "urn:xmpp:receipts";
/// The simulated calendar's start, as the world's wall clock has it.
const CALENDAR_START_MS: u64 = 1_796_558_400_000;
/// The window's end on the calendar and on simulated time may differ by
/// the milliseconds each rounds away: receipts this close to it count in
/// neither bound.
const ROUNDING: Duration = Duration::from_millis(1);

/// The window a job asking for receipts has (its own, or the
/// deployment's when it has none): long enough for its job to complete
/// (which opens it) in most worlds, despite their faults.
pub const WINDOW_SECS: u64 = 600;

/// Whether the application asks for receipts with a window for job number
/// `index` (see `windows::asked`).
pub fn asked(index: usize) -> bool {
    index % 8 == 1
}

/// Whether the application asks for receipts without a window for job
/// number `index` (none of those `windows::asked` picks).
pub fn asked_without_window(index: usize) -> bool {
    index % 8 == 3
}

/// The users' clients as they answer receipt requests, and the receipts
/// the server handed to Herald.
pub struct Clients {
    rng: Draw,
    /// Message id -> the job whose message it is.
    jobs: BTreeMap<String, String>,
    /// (message id, when it reached Herald), in order.
    pub handed: Vec<(String, Instant)>,
}

impl Clients {
    pub fn new(seed: u64) -> Clients {
        Clients {
            rng: Draw::new(seed ^ 0x2E_CE_19_75),
            jobs: BTreeMap::new(),
            handed: Vec::new(),
        }
    }

    /// The client of `from` (online) got `message` of `job` at `now`: the
    /// receipts it sends back, with when the server routes each.
    pub fn got(
        &mut self,
        message: &Message,
        job: &str,
        from: Jid,
        now: Instant,
    ) -> Vec<(Instant, Stanza)> {
        let asks = (message.payloads.iter()).any(|p| p.is("request", RECEIPTS_NS));
        let (true, Some(id), Some(to)) = (asks, &message.id, &message.from) else {
            return Vec::new();
        };
        self.jobs.insert(id.0.clone(), job.to_string());
        if !self.rng.chance(600) {
            return Vec::new();
        }
        let times = if self.rng.chance(200) { 2 } else { 1 };
        let mut at = now;
        (0..times)
            .map(|_| {
                at += Duration::from_millis(100) + self.rng.millis(1_500);
                let received: xmpp_parsers::minidom::Element =
                    format!("<received xmlns='{RECEIPTS_NS}' id='{}'/>", id.0)
                        .parse()
                        .expect("a receipt");
                let mut receipt = Message::new(Some(to.clone()));
                receipt.from = Some(from.clone());
                receipt.payloads.push(received);
                (at, receipt.into())
            })
            .collect()
    }

    /// The server hands `stanza` to Herald at `now`.
    pub fn on_handed(&mut self, stanza: &Stanza, now: Instant) {
        let Stanza::Message(message) = stanza else {
            return;
        };
        let received = (message.payloads.iter()).find(|p| p.is("received", RECEIPTS_NS));
        if let Some(id) = received.and_then(|r| r.attr("id")) {
            self.handed.push((id.to_string(), now));
        }
    }

    /// The distinct messages of `job` whose receipts reached Herald in
    /// `from..until`.
    fn answered(&self, job: &str, from: Instant, until: Instant) -> usize {
        (self.handed.iter())
            .filter(|(id, at)| {
                (from..until).contains(at) && self.jobs.get(id).is_some_and(|j| j == job)
            })
            .map(|(id, _)| id)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// What the broker took of the jobs asking for receipts.
#[derive(Default)]
pub struct Tally {
    /// (final report, when it was taken).
    finals: Vec<(Value, Instant)>,
    crashes: Vec<Instant>,
}

impl Tally {
    pub fn on_final(&mut self, payload: &[u8], now: Instant) {
        if let Ok(last) = serde_json::from_slice::<Value>(payload) {
            if !last["receipts"].is_null() {
                self.finals.push((last, now));
            }
        }
    }

    pub fn on_crash(&mut self, now: Instant) {
        self.crashes.push(now);
    }

    /// Each final report's receipts between its bounds, and the window of
    /// a job without one of its own; `start`: the simulated calendar's
    /// start on simulated time.
    pub fn check_end(&self, start: Instant, jobs: &[Job], clients: &Clients) -> Result<(), String> {
        for (last, taken) in &self.finals {
            let id = last["id"].as_str().unwrap_or_default();
            let receipts = last["receipts"].as_u64().unwrap_or_default() as usize;
            let until_ms = last["until_ms"].as_u64().unwrap_or_default();
            let until = start + Duration::from_millis(until_ms.saturating_sub(CALENDAR_START_MS));
            if let Some(job) = jobs.iter().find(|j| j.id == id && j.valid) {
                check_deployment_window(job, until, *taken, last)?;
            }
            let crash = (self.crashes.iter()).filter(|at| *at < taken).max();
            // Strictly after: a receipt handed over at the crash's instant
            // went before it.
            let from = crash.map_or(start, |crash| *crash + Duration::from_nanos(1));
            let most = clients.answered(id, start, until + ROUNDING);
            let least = match last["cancelled"] == true {
                true => 0,
                false => clients.answered(id, from, until - ROUNDING),
            };
            if receipts > most || receipts < least {
                return Err(format!(
                    "final report of {id} counts {receipts} receipts; {least} to {most} distinct messages were answered in time: {last}"
                ));
            }
        }
        Ok(())
    }
}

/// A job that asked for receipts without a window counts them for
/// `WINDOW_SECS` (the deployment's receipts window) from when Herald took
/// it: after its publish, before its final report was `taken`.
fn check_deployment_window(
    job: &Job,
    until: Instant,
    taken: Instant,
    last: &Value,
) -> Result<(), String> {
    let asked: Value = serde_json::from_slice(&job.payload).unwrap_or_default();
    if !asked["deliver_within_secs"].is_null() {
        return Ok(());
    }
    let window = Duration::from_secs(WINDOW_SECS);
    let earliest = job.published_at + window - ROUNDING;
    let latest = taken + window + ROUNDING;
    if until < earliest || until > latest {
        return Err(format!(
            "final report of {} ends its receipts window outside {WINDOW_SECS} s from when it was taken: {last}",
            job.id
        ));
    }
    Ok(())
}
