//! Reports that name the recipients per outcome, for a job that asks for
//! them (`report_names`): an alerting application escalates to the users
//! it missed. The walk records each recipient's outcome in two bits; the
//! checkpoints carry them, so that a redelivered job names the recipients
//! an earlier attempt got past; once the job is done its names go out in
//! parts under a configured size, before its report.

use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::fanout::{Progress, Stop};
use super::job::{Job, Recipient};
use crate::handler::Event;

pub const NAMES_KEY: &str = "job.report.names";
/// The smallest part size a deployment may set: one entry always fits.
pub const MIN_PART_BYTES: usize = 16 * 1024;

/// What happened to one recipient walked past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent = 0,
    Offline = 1,
    Unavailable = 2,
    Invalid = 3,
}

impl Outcome {
    fn from_bits(bits: u8) -> Outcome {
        match bits & 3 {
            0 => Outcome::Sent,
            1 => Outcome::Offline,
            2 => Outcome::Unavailable,
            _ => Outcome::Invalid,
        }
    }
}

/// The outcomes of the recipients from `start` on, in walk order, four to
/// a byte: a million recipients cost 250 KB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// The first recipient recorded: those before it were walked by an
    /// attempt whose checkpoint did not carry outcomes.
    start: usize,
    len: usize,
    bits: Vec<u8>,
}

impl Outcomes {
    /// No outcome yet, the walk starting at recipient `start`.
    pub fn starting_at(start: usize) -> Outcomes {
        Outcomes {
            start,
            ..Outcomes::default()
        }
    }

    pub fn push(&mut self, outcome: Outcome) {
        let shift = (self.len % 4) * 2;
        if shift == 0 {
            self.bits.push(0);
        }
        if let Some(last) = self.bits.last_mut() {
            *last |= (outcome as u8) << shift;
        }
        self.len += 1;
    }

    /// Recipient `index`'s outcome, if it was recorded.
    pub fn get(&self, index: usize) -> Option<Outcome> {
        let at = index.checked_sub(self.start).filter(|at| *at < self.len)?;
        Some(Outcome::from_bits(self.bits[at / 4] >> ((at % 4) * 2)))
    }
}

/// A checkpoint's token: the progress, and for a named job the outcomes
/// of every recipient before `progress.next`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(flatten)]
    pub progress: Progress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcomes: Option<String>,
}

impl Checkpoint {
    pub fn token(progress: Progress, outcomes: Option<&Outcomes>) -> Vec<u8> {
        let outcomes = outcomes
            .filter(|o| o.start == 0)
            .map(|o| BASE64.encode(&o.bits));
        serde_json::to_vec(&Checkpoint { progress, outcomes }).unwrap_or_default()
    }

    /// A saved token, if it is one.
    pub fn read(token: &[u8]) -> Option<Checkpoint> {
        serde_json::from_slice(token).ok()
    }

    /// The outcomes it saved, covering every recipient before `next`; else
    /// an empty record starting there.
    pub fn outcomes(&self) -> Outcomes {
        let next = self.progress.next;
        let saved = self.outcomes.as_deref().and_then(|t| BASE64.decode(t).ok());
        match saved {
            Some(bits) if bits.len() == next.div_ceil(4) => Outcomes {
                start: 0,
                len: next,
                bits,
            },
            _ => Outcomes::starting_at(next),
        }
    }
}

/// The names part of a job's report, as the report refers to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesRef {
    /// Tells this attempt's parts from an interrupted attempt's.
    pub set: u64,
    pub parts: usize,
}

/// One part of a job's names: every recipient is in exactly one list of
/// exactly one part.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub id: String,
    pub set: u64,
    /// From 1.
    pub part: usize,
    pub parts: usize,
    pub sent: Vec<String>,
    pub offline: Vec<String>,
    pub unavailable: Vec<String>,
    pub invalid: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancelled: Vec<String>,
    /// Walked by an attempt that saved no outcomes (a Herald before names
    /// were kept): messaged or not, nobody can tell now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

impl Part {
    /// Its lists, each with the outcome it names.
    pub fn by_outcome(&self) -> [(&'static str, &[String]); 7] {
        [
            ("sent", &self.sent),
            ("offline", &self.offline),
            ("unavailable", &self.unavailable),
            ("invalid", &self.invalid),
            ("expired", &self.expired),
            ("cancelled", &self.cancelled),
            ("unknown", &self.unknown),
        ]
    }

    fn list(&mut self, outcome: Listed) -> &mut Vec<String> {
        match outcome {
            Listed::Walked(Outcome::Sent) => &mut self.sent,
            Listed::Walked(Outcome::Offline) => &mut self.offline,
            Listed::Walked(Outcome::Unavailable) => &mut self.unavailable,
            Listed::Walked(Outcome::Invalid) => &mut self.invalid,
            Listed::Stopped(Stop::Expired) => &mut self.expired,
            Listed::Stopped(Stop::Cancelled) => &mut self.cancelled,
            Listed::Unknown => &mut self.unknown,
        }
    }
}

#[derive(Clone, Copy)]
enum Listed {
    Walked(Outcome),
    Stopped(Stop),
    Unknown,
}

/// The parts naming `job`'s recipients: `outcomes` records those walked;
/// the rest were not reached because of `stop` (its invalid entries count
/// invalid, as they would at any time). Each part's JSON stays under
/// `max_bytes` (at least [`MIN_PART_BYTES`]).
pub fn parts(
    job: &Job,
    outcomes: &Outcomes,
    stop: Option<Stop>,
    set: u64,
    max_bytes: usize,
) -> (Vec<Event>, NamesRef) {
    let empty = Part {
        id: job.id.clone(),
        set,
        part: usize::MAX,
        parts: usize::MAX,
        ..Part::default()
    };
    // Every list named, as the largest part number: no part's frame is
    // bigger.
    let frame = serde_json::to_vec(&empty).map_or(0, |json| json.len())
        + r#","expired":[],"cancelled":[],"unknown":[]"#.len();
    let room = max_bytes.max(MIN_PART_BYTES).saturating_sub(frame);
    let mut parts = vec![];
    let (mut part, mut used) = (Part::default(), 0);
    for (index, recipient) in job.recipients.iter_from(0).enumerate() {
        let listed = match (outcomes.get(index), recipient) {
            (Some(outcome), _) => Listed::Walked(outcome),
            // As they would count at any time.
            (None, Recipient::Invalid(_)) => Listed::Walked(Outcome::Invalid),
            (None, _) if index < outcomes.start => Listed::Unknown,
            (None, _) => match stop {
                Some(stop) => Listed::Stopped(stop),
                // A walk over before the end does not happen; were it to,
                // nobody is left out of the names.
                None => Listed::Unknown,
            },
        };
        let (Recipient::User(name) | Recipient::Invalid(name)) = recipient;
        // The quoted, escaped name and its comma.
        let size = serde_json::to_string(&name).map_or(0, |json| json.len()) + 1;
        if used + size > room && used > 0 {
            parts.push(std::mem::take(&mut part));
            used = 0;
        }
        used += size;
        part.list(listed).push(name.to_string());
    }
    parts.push(part);
    let count = parts.len();
    let events = parts
        .into_iter()
        .enumerate()
        .map(|(at, part)| {
            let part = Part {
                id: job.id.clone(),
                set,
                part: at + 1,
                parts: count,
                ..part
            };
            Event::json(NAMES_KEY, &part)
        })
        .collect();
    (events, NamesRef { set, parts: count })
}

#[cfg(test)]
mod tests;
