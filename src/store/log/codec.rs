//! A record's payload: a tag and the change's fields, each string or byte
//! string written as its length (u32, little-endian) and its bytes.

use xmpp_parsers::jid::BareJid;

use super::super::{Change, CompletedJob, OpenedDeferral, Receipt, Subscription};
use crate::groups::GroupChange;
use crate::presence::Policy;

const ADD: u8 = 1;
const REMOVE: u8 = 2;
const PROGRESS: u8 = 3;
const DONE: u8 = 4;
const REPORTED: u8 = 5;
const GROUP_PUT: u8 = 6;
const GROUP_ADD: u8 = 7;
const GROUP_REMOVE: u8 = 8;
const GROUP_DELETE: u8 = 9;
const CANCELLED: u8 = 10;
const DEFERRAL_OPENED: u8 = 11;
const DEFERRAL_WAITING: u8 = 12;
const DEFERRED_REACHED: u8 = 13;
const DEFERRAL_CLOSED: u8 = 14;
/// Receipts by position only: what every receipt was before senders were
/// kept, and still what a job that names nobody writes.
const DEFERRED_RECEIPTS: u8 = 15;
/// Receipts by position, each with its sender.
const DEFERRED_RECEIPTS_NAMED: u8 = 16;
/// Members per group record: a group of a million (JIDs of up to 3 KiB)
/// is several records, each far below [`MAX_RECORD`]. A change cut into
/// records is still appended in one batch.
const GROUP_CHUNK: usize = 10_000;

/// Appends the records of `change`: one, or for a large group a first
/// record and then records that add the rest.
pub(in crate::store) fn encode(change: &Change, out: &mut Vec<u8>) {
    match change {
        Change::Add(subscription) | Change::Remove(subscription) => {
            let tag = if matches!(change, Change::Add(_)) {
                ADD
            } else {
                REMOVE
            };
            record(out, |out| {
                out.push(tag);
                put_bytes(out, subscription.user.as_str().as_bytes());
                put_bytes(out, subscription.contact.as_str().as_bytes());
            });
        }
        Change::JobProgress { key, token } => record(out, |out| {
            out.push(PROGRESS);
            put_bytes(out, key.as_bytes());
            put_bytes(out, token);
        }),
        Change::JobDone(job) => record(out, |out| {
            out.push(DONE);
            put_bytes(out, job.key.as_bytes());
            out.extend_from_slice(&job.seq.to_le_bytes());
            out.push(u8::from(job.reported));
            put_bytes(out, &job.report);
        }),
        Change::JobReported(key) => record(out, |out| {
            out.push(REPORTED);
            put_bytes(out, key.as_bytes());
        }),
        Change::Group(GroupChange::Put { name, members }) => {
            let mut chunks = members.chunks(GROUP_CHUNK);
            let first = chunks.next().unwrap_or_default();
            record(out, |out| put_group(out, GROUP_PUT, name, first));
            for chunk in chunks {
                record(out, |out| put_group(out, GROUP_ADD, name, chunk));
            }
        }
        Change::Group(
            GroupChange::Add { name, members } | GroupChange::Remove { name, members },
        ) => {
            let tag = if matches!(change, Change::Group(GroupChange::Add { .. })) {
                GROUP_ADD
            } else {
                GROUP_REMOVE
            };
            for chunk in members.chunks(GROUP_CHUNK) {
                record(out, |out| put_group(out, tag, name, chunk));
            }
        }
        Change::Group(GroupChange::Delete { name }) => record(out, |out| {
            out.push(GROUP_DELETE);
            put_bytes(out, name.as_bytes());
        }),
        Change::JobCancelled(key) => record(out, |out| {
            out.push(CANCELLED);
            put_bytes(out, key.as_bytes());
        }),
        Change::DeferralOpened(opened) => {
            let mut chunks = opened.waiting.chunks(GROUP_CHUNK);
            record(out, |out| {
                out.push(DEFERRAL_OPENED);
                put_bytes(out, opened.key.as_bytes());
                out.extend_from_slice(&opened.until_ms.to_le_bytes());
                out.push(match opened.policy {
                    Policy::Available => 0,
                    Policy::Online => 1,
                });
                out.push(u8::from(opened.names));
                // Receipts expected, plus one; 0: not asked for.
                let receipts = opened.receipts.map_or(0, |n| n.saturating_add(1));
                out.extend_from_slice(&receipts.to_le_bytes());
                put_bytes(out, &opened.template);
                put_waiting(out, chunks.next().unwrap_or_default());
            });
            for chunk in chunks {
                record(out, |out| {
                    out.push(DEFERRAL_WAITING);
                    put_bytes(out, opened.key.as_bytes());
                    put_waiting(out, chunk);
                });
            }
        }
        Change::DeferralWaiting { key, waiting } => {
            for chunk in waiting.chunks(GROUP_CHUNK) {
                record(out, |out| {
                    out.push(DEFERRAL_WAITING);
                    put_bytes(out, key.as_bytes());
                    put_waiting(out, chunk);
                });
            }
        }
        Change::DeferredReached { key, positions } => record(out, |out| {
            out.push(DEFERRED_REACHED);
            put_bytes(out, key.as_bytes());
            put_positions(out, positions.iter().copied());
        }),
        Change::DeferredReceipts { key, receipts } => record(out, |out| {
            put_receipts(out, key, receipts);
        }),
        Change::DeferralClosed(key) => record(out, |out| {
            out.push(DEFERRAL_CLOSED);
            put_bytes(out, key.as_bytes());
        }),
    }
}

fn put_positions(out: &mut Vec<u8>, positions: impl ExactSizeIterator<Item = u32>) {
    out.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for position in positions {
        out.extend_from_slice(&position.to_le_bytes());
    }
}

fn take_positions(input: &mut &[u8]) -> Option<Vec<u32>> {
    let count = take_u32(input)?;
    (0..count).map(|_| take_u32(input)).collect()
}

/// Receipts without senders as positions alone; with them, each position
/// and its sender (empty for none).
fn put_receipts(out: &mut Vec<u8>, key: &str, receipts: &[Receipt]) {
    let named = receipts.iter().any(|receipt| receipt.sender.is_some());
    out.push(if named {
        DEFERRED_RECEIPTS_NAMED
    } else {
        DEFERRED_RECEIPTS
    });
    put_bytes(out, key.as_bytes());
    if !named {
        put_positions(out, receipts.iter().map(|receipt| receipt.position));
        return;
    }
    let senders = receipts.iter().map(|receipt| {
        let sender = receipt.sender.as_deref().unwrap_or_default();
        (receipt.position, sender)
    });
    put_positioned(out, senders);
}

fn take_named_receipts(input: &mut &[u8]) -> Option<Vec<Receipt>> {
    let receipts = take_waiting(input)?;
    let receipts = (receipts.into_iter())
        .map(|(position, sender)| Receipt {
            position,
            sender: (!sender.is_empty()).then_some(sender),
        })
        .collect();
    Some(receipts)
}

fn put_waiting(out: &mut Vec<u8>, waiting: &[(u32, String)]) {
    put_positioned(out, waiting.iter().map(|(p, user)| (*p, user.as_str())));
}

/// Positions, each with a text (read back by [`take_waiting`]).
fn put_positioned<'a>(out: &mut Vec<u8>, entries: impl ExactSizeIterator<Item = (u32, &'a str)>) {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (position, text) in entries {
        out.extend_from_slice(&position.to_le_bytes());
        put_bytes(out, text.as_bytes());
    }
}

fn take_waiting(input: &mut &[u8]) -> Option<Vec<(u32, String)>> {
    let count = take_u32(input)?;
    let mut waiting = Vec::with_capacity((count as usize).min(GROUP_CHUNK));
    for _ in 0..count {
        let position = take_u32(input)?;
        waiting.push((position, take_str(input)?.to_string()));
    }
    Some(waiting)
}

fn take_u32(input: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(input, 4)?.try_into().ok()?))
}

/// Appends one record, whose payload `payload` writes.
fn record(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    payload(out);
    let payload = &out[start + 8..];
    let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_group(out: &mut Vec<u8>, tag: u8, name: &str, members: &[BareJid]) {
    out.push(tag);
    put_bytes(out, name.as_bytes());
    out.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for member in members {
        put_bytes(out, member.as_str().as_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The last contact JID read: nearly every subscription names the same
/// one of Herald's JIDs, and parsing it again for each of a million
/// subscribers was a third of the time a start took.
#[derive(Default)]
pub(in crate::store) struct ContactCache(Option<BareJid>);

impl ContactCache {
    fn parse(&mut self, contact: &str) -> Option<BareJid> {
        if let Some(last) = self.0.as_ref().filter(|last| last.as_str() == contact) {
            return Some(last.clone());
        }
        self.0 = Some(BareJid::new(contact).ok()?);
        self.0.clone()
    }
}

/// The change a record holds; `Some(None)` for a well-formed record of a
/// subscription whose JIDs do not parse, `None` for a malformed record.
pub(in crate::store) fn decode(
    payload: &[u8],
    contacts: &mut ContactCache,
) -> Option<Option<Change>> {
    let (&tag, mut rest) = payload.split_first()?;
    let change = match tag {
        ADD | REMOVE => {
            let (user, contact) = (take_str(&mut rest)?, take_str(&mut rest)?);
            if !rest.is_empty() {
                return None;
            }
            let (Ok(user), Some(contact)) = (BareJid::new(user), contacts.parse(contact)) else {
                return Some(None);
            };
            let subscription = Subscription { user, contact };
            if tag == ADD {
                Change::Add(subscription)
            } else {
                Change::Remove(subscription)
            }
        }
        PROGRESS => Change::JobProgress {
            key: take_str(&mut rest)?.to_string(),
            token: take_bytes(&mut rest)?.to_vec(),
        },
        DONE => Change::JobDone(CompletedJob {
            key: take_str(&mut rest)?.to_string(),
            seq: u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?),
            reported: take(&mut rest, 1)?[0] != 0,
            report: take_bytes(&mut rest)?.to_vec(),
        }),
        REPORTED => Change::JobReported(take_str(&mut rest)?.to_string()),
        GROUP_PUT | GROUP_ADD | GROUP_REMOVE => {
            let name = take_str(&mut rest)?.to_string();
            let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?);
            let mut members = Vec::new();
            for _ in 0..count {
                // Written from parsed JIDs; one that no longer parses is left out.
                if let Ok(member) = BareJid::new(take_str(&mut rest)?) {
                    members.push(member);
                }
            }
            Change::Group(match tag {
                GROUP_PUT => GroupChange::Put { name, members },
                GROUP_ADD => GroupChange::Add { name, members },
                _ => GroupChange::Remove { name, members },
            })
        }
        GROUP_DELETE => Change::Group(GroupChange::Delete {
            name: take_str(&mut rest)?.to_string(),
        }),
        CANCELLED => Change::JobCancelled(take_str(&mut rest)?.to_string()),
        DEFERRAL_OPENED => Change::DeferralOpened(OpenedDeferral {
            key: take_str(&mut rest)?.to_string(),
            until_ms: u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?),
            policy: match take(&mut rest, 1)?[0] {
                0 => Policy::Available,
                1 => Policy::Online,
                _ => return None,
            },
            names: take(&mut rest, 1)?[0] != 0,
            receipts: u64::from_le_bytes(take(&mut rest, 8)?.try_into().ok()?).checked_sub(1),
            template: take_bytes(&mut rest)?.to_vec(),
            waiting: take_waiting(&mut rest)?,
        }),
        DEFERRAL_WAITING => Change::DeferralWaiting {
            key: take_str(&mut rest)?.to_string(),
            waiting: take_waiting(&mut rest)?,
        },
        DEFERRED_REACHED => Change::DeferredReached {
            key: take_str(&mut rest)?.to_string(),
            positions: take_positions(&mut rest)?,
        },
        DEFERRED_RECEIPTS => Change::DeferredReceipts {
            key: take_str(&mut rest)?.to_string(),
            receipts: (take_positions(&mut rest)?.into_iter())
                .map(|position| Receipt {
                    position,
                    sender: None,
                })
                .collect(),
        },
        DEFERRED_RECEIPTS_NAMED => Change::DeferredReceipts {
            key: take_str(&mut rest)?.to_string(),
            receipts: take_named_receipts(&mut rest)?,
        },
        DEFERRAL_CLOSED => Change::DeferralClosed(take_str(&mut rest)?.to_string()),
        _ => return None,
    };
    rest.is_empty().then_some(Some(change))
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (taken, rest) = input.split_at(n);
    *input = rest;
    Some(taken)
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(take(input, 4)?.try_into().ok()?);
    take(input, len as usize)
}

fn take_str<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(take_bytes(input)?).ok()
}

/// Reads the records in `bytes` (as [`encode`] appends them), handing each
/// change to `each`; false if they do not all check out (what came before
/// the first that does not was handed over), with its record's size.
pub(in crate::store) fn read_records(
    mut bytes: &[u8],
    contacts: &mut ContactCache,
    mut each: impl FnMut(Change, u64),
) -> bool {
    while !bytes.is_empty() {
        let Some(frame) = take(&mut bytes, 8) else {
            return false;
        };
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let Some(payload) = take(&mut bytes, len as usize) else {
            return false;
        };
        if crc32fast::hash(payload) != crc {
            return false;
        }
        match decode(payload, contacts) {
            Some(Some(change)) => each(change, 8 + u64::from(len)),
            Some(None) => {}
            None => return false,
        }
    }
    true
}
