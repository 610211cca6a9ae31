//! A job's recipients kept close to their bytes: their texts back to back
//! in one buffer with an end offset each, instead of a `String` and a
//! parsed JID per recipient (a job may name a million). A recipient
//! becomes a [`BareJid`] only when the fan-out reaches it.
//!
//! Serde reads a job's `to` into [`Texts`] (as written); validation turns
//! them, in the same buffers, into [`Recipients`]: each text parsed once,
//! users normalised, repeats dropped through an [`Index`] of positions
//! rather than a set of copies.

use std::fmt;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use xmpp_parsers::jid::{BareJid, Jid};

use super::{field_error, truncated, JobError};
use crate::user_text::{UserHasher, UserText};

/// Set on an entry's end: the entry is no user Herald can address. Ends
/// stay below it, so the texts of one list are under 2 GiB.
const INVALID: u32 = 1 << 31;

/// A job's `to` as written, the texts back to back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Texts {
    text: String,
    ends: Vec<u32>,
}

impl Texts {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Texts, D::Error> {
        deserializer.deserialize_seq(TextsVisitor)
    }
}

/// Reads a JSON array of strings as a `Vec<String>` would (the same errors,
/// word for word), appending each to the buffer instead.
struct TextsVisitor;

impl<'de> Visitor<'de> for TextsVisitor {
    type Value = Texts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
        let mut texts = Texts::default();
        while seq.next_element_seed(Append(&mut texts))?.is_some() {}
        Ok(texts)
    }
}

struct Append<'a>(&'a mut Texts);

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Append<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        let texts = self.0;
        texts.text.push_str(text);
        // Beyond any message RabbitMQ accepts (512 MiB at most).
        let end = offset(texts.text.len()).ok_or_else(|| E::custom("`to` is over 2 GiB"))?;
        texts.ends.push(end);
        Ok(())
    }
}

fn offset(end: usize) -> Option<u32> {
    u32::try_from(end).ok().filter(|end| *end < INVALID)
}

/// A recipient as the job holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient<'a> {
    /// A user's bare JID, normalised.
    User(&'a str),
    /// A JID that parses but is no user to broadcast to (it has a resource,
    /// no local part, or is on Herald's own domain), as written.
    Invalid(&'a str),
}

/// A job's recipients in their order, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    text: String,
    /// Each entry's end in `text`, [`INVALID`] set for an invalid one.
    ends: Vec<u32>,
}

/// The recipients' texts are over 2 GiB, with the members of groups and
/// the subscribers added: the job is refused.
#[derive(Debug, thiserror::Error)]
#[error("the recipients' texts are over 2 GiB")]
pub struct TooLarge;

impl Recipients {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<Recipient<'_>> {
        let end = *self.ends.get(index)?;
        let text = &self.text[start_of(&self.ends, index)..(end & !INVALID) as usize];
        Some(if end & INVALID == 0 {
            Recipient::User(text)
        } else {
            Recipient::Invalid(text)
        })
    }

    /// The recipients from `from` on.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = Recipient<'_>> {
        (from..self.len()).filter_map(|index| self.get(index))
    }

    /// Parses `to`, in its own buffers: each user normalised, each invalid
    /// recipient kept as written, repeats of either dropped.
    pub fn parse(to: Texts, own_domain: &BareJid) -> Result<Recipients, JobError> {
        let Texts { text, mut ends } = to;
        // Written over the texts already read; `spill` once a normalised
        // JID is longer than what was read (case folding can lengthen).
        let mut bytes = text.into_bytes();
        let mut spill: Option<Vec<u8>> = None;
        // Sized once: growing it would hold the old table beside the new.
        let mut index = Index::with_capacity(ends.len());
        let mut plain_domain = PlainDomain::default();
        let (mut start, mut kept) = (0, 0);
        for at in 0..ends.len() {
            let end = ends[at] as usize;
            let text = std::str::from_utf8(&bytes[start..end]).expect("whole strings");
            let normal = if plain_domain.holds(text) {
                Normal::AsWritten(0)
            } else {
                let jid = Jid::new(text).map_err(|e| JobError::Recipient {
                    index: at,
                    jid: truncated(text),
                    reason: e.to_string(),
                })?;
                match jid.try_into_full() {
                    Err(bare) if bare.node().is_some() && bare.domain() != own_domain.domain() => {
                        plain_domain.learn(text, &bare);
                        let user = bare.into_inner();
                        if user == text {
                            Normal::AsWritten(0)
                        } else {
                            Normal::Changed(user)
                        }
                    }
                    _ => Normal::AsWritten(INVALID),
                }
            };
            let written = spill.as_deref().unwrap_or(&bytes);
            let new = match &normal {
                Normal::Changed(user) => (user.as_bytes(), 0),
                Normal::AsWritten(flag) => (&bytes[start..end], *flag),
            };
            if index.insert(written, &ends[..kept], new, kept) {
                let from = start_of(&ends, kept);
                let to = from + new.0.len();
                let too_large = || field_error("to", "the recipients' texts are over 2 GiB");
                ends[kept] = offset(to).ok_or_else(too_large)? | new.1;
                if spill.is_none() && to > end {
                    spill = Some(bytes[..from].to_vec());
                }
                match (&mut spill, &normal) {
                    (Some(spill), Normal::Changed(user)) => {
                        spill.extend_from_slice(user.as_bytes())
                    }
                    (Some(spill), Normal::AsWritten(_)) => {
                        spill.extend_from_slice(&bytes[start..end])
                    }
                    (None, Normal::Changed(user)) => {
                        bytes[from..to].copy_from_slice(user.as_bytes())
                    }
                    (None, Normal::AsWritten(_)) => bytes.copy_within(start..end, from),
                }
                kept += 1;
            }
            start = end;
        }
        let written = start_of(&ends, kept);
        let mut bytes = spill.unwrap_or(bytes);
        bytes.truncate(written);
        bytes.shrink_to_fit();
        ends.truncate(kept);
        ends.shrink_to_fit();
        Ok(Recipients {
            text: String::from_utf8(bytes).expect("whole strings copied"),
            ends,
        })
    }

    /// The users among the recipients, to add more without repeating one.
    pub fn users(&mut self) -> Users<'_> {
        let mut index = Index::with_capacity(self.len());
        for at in 0..self.len() {
            if let Some(Recipient::User(text)) = self.get(at) {
                index.insert(self.text.as_bytes(), &self.ends, (text.as_bytes(), 0), at);
            }
        }
        Users {
            recipients: self,
            index,
        }
    }
}

/// A job's recipients open to more users (groups, subscribers).
pub struct Users<'a> {
    recipients: &'a mut Recipients,
    index: Index,
}

impl Users<'_> {
    /// Adds `user` unless they are a recipient already; whether added.
    pub fn add(&mut self, user: UserText<'_>) -> Result<bool, TooLarge> {
        let r = &mut *self.recipients;
        let text = user.0;
        let end = offset(r.text.len() + text.len()).ok_or(TooLarge)?;
        let at = r.len();
        if !self
            .index
            .insert(r.text.as_bytes(), &r.ends, (text.as_bytes(), 0), at)
        {
            return Ok(false);
        }
        r.text.push_str(text);
        r.ends.push(end);
        Ok(true)
    }
}

/// A recipient as its list keeps it.
enum Normal {
    /// As written: a user already in normal form, or (flagged
    /// [`INVALID`]) an invalid recipient.
    AsWritten(u32),
    /// A user, normalised.
    Changed(String),
}

/// The domain of the last user whose domain was written in normal form: a
/// recipient at it whose local part is plainly normal needs no parse (a
/// job's users are mostly at one domain, and parsing a JID is most of what
/// taking a recipient costs).
#[derive(Default)]
struct PlainDomain(Option<String>);

impl PlainDomain {
    /// Whether `text` is a user at this domain, already in normal form:
    /// the JID parser would give it back unchanged, as a user.
    fn holds(&self, text: &str) -> bool {
        let Some(domain) = &self.0 else {
            return false;
        };
        let Some((node, rest)) = text.split_once('@') else {
            return false;
        };
        rest == domain && is_plain_node(node)
    }

    /// `bare` was parsed from `text`: its domain is remembered if `text`
    /// wrote it in normal form.
    fn learn(&mut self, text: &str, bare: &BareJid) {
        let domain = bare.domain().as_str();
        let as_written = text.split_once('@').map(|(_, rest)| rest);
        if as_written == Some(domain) && self.0.as_deref() != Some(domain) {
            self.0 = Some(domain.to_owned());
        }
    }
}

/// A local part that nodeprep leaves as it is and allows: lower-case ASCII
/// letters, digits and `.`, `_`, `+`, `-` (case folding, Unicode and the
/// characters nodeprep forbids go through the parser), within the length a
/// JID's local part may have.
fn is_plain_node(node: &str) -> bool {
    (1..=1023).contains(&node.len())
        && (node.bytes())
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'+' | b'-'))
}

/// Which entries a list holds, as their positions in it: a set of texts
/// that costs a few bytes an entry, not a copy of each.
struct Index {
    table: HashTable<u32>,
    hasher: UserHasher,
}

/// An entry: its text and its [`INVALID`] flag.
type Entry<'a> = (&'a [u8], u32);

impl Index {
    fn with_capacity(entries: usize) -> Index {
        Index {
            table: HashTable::with_capacity(entries),
            hasher: UserHasher::default(),
        }
    }

    /// Records `entry`, about to be entry `at` of the list, unless the list
    /// holds it already; whether recorded.
    fn insert(&mut self, text: &[u8], ends: &[u32], entry: Entry<'_>, at: usize) -> bool {
        let hash = self.hasher.hash_one(entry);
        let hasher = &self.hasher;
        let found = self.table.entry(
            hash,
            |&k| entry_at(text, ends, k as usize) == entry,
            |&k| hasher.hash_one(entry_at(text, ends, k as usize)),
        );
        match found {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                // Positions fit: validation caps recipients far below u32::MAX.
                vacant.insert(at as u32);
                true
            }
        }
    }
}

fn entry_at<'a>(text: &'a [u8], ends: &[u32], at: usize) -> Entry<'a> {
    let end = ends[at];
    (
        &text[start_of(ends, at)..(end & !INVALID) as usize],
        end & INVALID,
    )
}

/// Where entry `at` starts: where the one before it ends.
fn start_of(ends: &[u32], at: usize) -> usize {
    at.checked_sub(1)
        .map_or(0, |before| (ends[before] & !INVALID) as usize)
}

#[cfg(test)]
mod tests;
