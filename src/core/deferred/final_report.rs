//! A window's final report: how many of the recipients who waited were
//! reached late and how many missed, and for a job whose report names its
//! recipients, who (and who sent a delivery receipt, if it asked for
//! them), in parts under the configured size published before the report.

use serde::Serialize;

use super::book::Window;
use crate::handler::Event;

pub const FINAL_KEY: &str = "job.report.final";
pub const FINAL_NAMES_KEY: &str = "job.report.final.names";

#[derive(Serialize)]
struct FinalReport<'a> {
    id: &'a str,
    deferred: usize,
    late: usize,
    missed: usize,
    /// When the window ended (or was to end), ms since the Unix epoch.
    until_ms: u64,
    #[serde(skip_serializing_if = "is_zero")]
    possible_duplicates: usize,
    /// The window was ended early by a cancellation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cancelled: bool,
    /// Delivery receipts counted, if the job asked for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    receipts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<NamesRef>,
}

#[derive(Serialize)]
struct NamesRef {
    set: u64,
    parts: usize,
}

#[derive(Serialize, Default)]
struct Part<'a> {
    id: &'a str,
    set: u64,
    part: usize,
    parts: usize,
    late: Vec<&'a str>,
    missed: Vec<&'a str>,
    /// Who sent a delivery receipt, for a job that asked for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    receipted: Option<Vec<&'a str>>,
}

/// The lists of a names part.
#[derive(Clone, Copy)]
enum List {
    Late,
    Missed,
    Receipted,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The events of `window`'s final report, in the order they go out: its
/// names' parts (each under `part_bytes`), then the report. `set`: tells
/// these parts from those of an earlier attempt at the same report.
pub fn events(window: &Window, set: u64, part_bytes: usize) -> Vec<Event> {
    let missed = window.missed();
    let mut events = Vec::new();
    let names = window.terms.names.then(|| {
        let mut late: Vec<(u32, &str)> = (window.late.iter())
            .map(|(position, user)| (*position, &**user))
            .collect();
        late.sort_unstable_by_key(|(position, _)| *position);
        let receipted = window.receipts.as_ref().map(|r| r.named());
        let listed = (late.iter().map(|(_, user)| (List::Late, *user)))
            .chain(missed.iter().map(|(_, user)| (List::Missed, *user)))
            .chain(
                receipted
                    .iter()
                    .flatten()
                    .map(|user| (List::Receipted, *user)),
            );
        let frame = Part {
            id: &window.terms.key,
            set,
            part: usize::MAX,
            parts: usize::MAX,
            receipted: receipted.as_ref().map(|_| Vec::new()),
            ..Part::default()
        };
        let parts = parts(frame, part_bytes, listed);
        let count = parts.len();
        events.extend(parts.into_iter().enumerate().map(|(at, part)| {
            let part = Part {
                part: at + 1,
                parts: count,
                ..part
            };
            Event::json(FINAL_NAMES_KEY, &part)
        }));
        NamesRef { set, parts: count }
    });
    let report = FinalReport {
        id: &window.terms.key,
        deferred: window.deferred,
        late: window.late.len(),
        missed: missed.len(),
        until_ms: window.terms.until_ms,
        possible_duplicates: window.possible_duplicates,
        cancelled: window.cancelled,
        receipts: window.receipts.as_ref().map(|r| r.got.len()),
        names,
    };
    events.push(Event::json(FINAL_KEY, &report));
    events
}

/// The users `listed` in parts like `frame` whose JSON stays under
/// `max_bytes`.
fn parts<'a>(
    frame: Part<'a>,
    max_bytes: usize,
    listed: impl Iterator<Item = (List, &'a str)>,
) -> Vec<Part<'a>> {
    let frame_bytes = serde_json::to_vec(&frame).map_or(0, |json| json.len());
    let room = max_bytes.saturating_sub(frame_bytes).max(1);
    let empty = || Part {
        id: frame.id,
        set: frame.set,
        receipted: frame.receipted.as_ref().map(|_| Vec::new()),
        ..Part::default()
    };
    let mut parts = vec![];
    let (mut part, mut used) = (empty(), 0);
    for (list, user) in listed {
        // The quoted, escaped name and its comma.
        let size = serde_json::to_string(user).map_or(0, |json| json.len()) + 1;
        if used + size > room && used > 0 {
            parts.push(std::mem::replace(&mut part, empty()));
            used = 0;
        }
        used += size;
        match list {
            List::Late => part.late.push(user),
            List::Missed => part.missed.push(user),
            List::Receipted => part.receipted.iter_mut().for_each(|list| list.push(user)),
        }
    }
    parts.push(part);
    parts
}
