//! The store as the messages of a RabbitMQ stream (`store.backend =
//! "stream"`), so that a Herald on another host takes over with what the
//! dead one had committed. This is what goes into each message and what
//! reading them in order gives; the broker's side is in
//! [`crate::amqp`].
//!
//! A message is [`MAGIC`], a kind, an id, then records as the store's file
//! holds them (each checked by its CRC):
//! - a **batch**: changes of one commit (a big commit is several batches,
//!   each at most [`MAX_MESSAGE`]; the file, too, keeps every record that
//!   checks out, not whole commits);
//! - a **snapshot**: a start, parts and an end with one id, everything the
//!   store held when it was written. A reader that reaches the end replaces
//!   what it had read by it. Its writer appends nothing else meanwhile, so
//!   a batch or a fence between a snapshot's start and end means it died in
//!   the middle: that snapshot counts for nothing;
//! - a **fence**: appended by a Herald that took the jobs queue, with its
//!   writer id (one a process) and a sequence number. Reading until that
//!   fence comes back is reading everything committed before it: a commit
//!   counts once the broker confirmed it, and the Herald that committed it
//!   can commit nothing more once its connection, and with it the jobs
//!   queue's token, is gone. A fence of another writer after one's own
//!   says another Herald held the jobs queue in between.

use super::log::codec::{encode, read_records, ContactCache};
use super::{Change, Contents};

const MAGIC: &[u8; 4] = b"HRS1";
const HEADER: usize = MAGIC.len() + 1 + 8;
/// A message's size above which a batch or a snapshot goes on in another.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Growth that may be dead tolerated beyond the last snapshot's size before
/// writing another (as the file compacts).
const SNAPSHOT_SLACK: u64 = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Batch = 1,
    SnapshotStart = 2,
    SnapshotPart = 3,
    SnapshotEnd = 4,
    Fence = 5,
}

impl Kind {
    fn of(byte: u8) -> Option<Kind> {
        [
            Kind::Batch,
            Kind::SnapshotStart,
            Kind::SnapshotPart,
            Kind::SnapshotEnd,
            Kind::Fence,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte)
    }
}

fn header(kind: Kind, id: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER);
    message.extend_from_slice(MAGIC);
    message.push(kind as u8);
    message.extend_from_slice(&id.to_le_bytes());
    message
}

fn parse(message: &[u8]) -> Option<(Kind, u64, &[u8])> {
    if message.len() < HEADER || &message[..MAGIC.len()] != MAGIC {
        return None;
    }
    let kind = Kind::of(message[MAGIC.len()])?;
    let id = u64::from_le_bytes(message[MAGIC.len() + 1..HEADER].try_into().ok()?);
    Some((kind, id, &message[HEADER..]))
}

/// A fence: `writer`, the appending Herald's (one for all its fences),
/// and `seq`, which of its fences it is.
pub fn fence(writer: u64, seq: u64) -> Vec<u8> {
    let mut message = header(Kind::Fence, writer);
    message.extend_from_slice(&seq.to_le_bytes());
    message
}

/// The writer and sequence number of the fence `message` is, if it is one.
pub fn fence_of(message: &[u8]) -> Option<(u64, u64)> {
    match parse(message)? {
        (Kind::Fence, writer, seq) => Some((writer, u64::from_le_bytes(seq.try_into().ok()?))),
        _ => None,
    }
}

/// Records of `changes` cut into messages of `kind`, each at most
/// [`MAX_MESSAGE`] (or one record, if that is bigger), made as they are
/// taken; and the bytes of records a later change can make dead (all but
/// new subscriptions).
struct Cut<I> {
    kind: Kind,
    id: u64,
    changes: I,
    may_be_dead: u64,
    /// Messages made so far.
    made: usize,
    done: bool,
}

impl<I: Iterator<Item = Change>> Cut<I> {
    fn new(kind: Kind, id: u64, changes: I) -> Cut<I> {
        Cut {
            kind,
            id,
            changes,
            may_be_dead: 0,
            made: 0,
            done: false,
        }
    }
}

impl<I: Iterator<Item = Change>> Iterator for Cut<I> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let mut message = header(self.kind, self.id);
        for change in self.changes.by_ref() {
            let before = message.len();
            encode(&change, &mut message);
            if !matches!(change, Change::Add(_)) {
                self.may_be_dead += (message.len() - before) as u64;
            }
            if message.len() >= MAX_MESSAGE {
                self.made += 1;
                return Some(message);
            }
        }
        self.done = true;
        // A commit of nothing is still one (empty) message.
        (message.len() > HEADER || self.made == 0).then(|| {
            self.made += 1;
            message
        })
    }
}

/// A commit's messages.
pub struct Appended {
    pub messages: Vec<Vec<u8>>,
    may_be_dead: u64,
}

/// The messages of a commit of `changes`.
pub fn batch(changes: &[Change]) -> Appended {
    let mut cut = Cut::new(Kind::Batch, 0, changes.iter().cloned());
    let messages = cut.by_ref().collect();
    Appended {
        messages,
        may_be_dead: cut.may_be_dead,
    }
}

/// The messages of a snapshot of `contents`, start and end included,
/// each made as it is taken: a snapshot of a million subscribers is never
/// in memory whole.
pub fn snapshot(id: u64, contents: &Contents) -> impl Iterator<Item = Vec<u8>> + Send + '_ {
    let parts = Cut::new(Kind::SnapshotPart, id, contents.changes());
    std::iter::once(header(Kind::SnapshotStart, id))
        .chain(parts)
        .chain(std::iter::once(header(Kind::SnapshotEnd, id)))
}

/// What the stream holds beyond its last snapshot, to know when to write
/// another: when what may be dead outgrew the snapshot by
/// [`SNAPSHOT_SLACK`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Growth {
    snapshot: u64,
    may_be_dead: u64,
}

impl Growth {
    /// After a snapshot of `bytes`.
    pub fn after_snapshot(bytes: u64) -> Growth {
        Growth {
            snapshot: bytes,
            may_be_dead: 0,
        }
    }

    pub fn appended(&mut self, appended: &Appended) {
        self.may_be_dead += appended.may_be_dead;
    }

    /// A snapshot failed: the next waits until as much again may be dead.
    pub fn postpone(&mut self) {
        self.may_be_dead = 0;
    }

    pub fn snapshot_due(&self) -> bool {
        self.may_be_dead > self.snapshot + SNAPSHOT_SLACK
    }

    /// Bytes of the last snapshot.
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot
    }
}

/// What one message read was.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Applied,
    /// A fence, of this writer.
    Fence(u64),
    /// Not a message of Herald's store, or records that do not check out
    /// (those before the first that does not were applied).
    Malformed,
}

/// The stream's first message read was not its first: retention removed
/// the oldest, and no complete snapshot came after them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the store stream's oldest messages were removed by its retention (store.stream_max_bytes) \
     before a complete snapshot came after them: what it holds is not all that was committed. \
     Delete the stream to start with an empty store (subscribers are learned again from their \
     presence), and declare it with a larger store.stream_max_bytes"
)]
pub struct Truncated;

/// Reading the stream's messages in order.
pub struct Replay {
    contents: Contents,
    remember_jobs: usize,
    contacts: ContactCache,
    /// A snapshot whose end has not come: its id, what it holds so far and
    /// its size.
    building: Option<(u64, Contents, u64)>,
    /// Whether `contents` is everything committed so far: read from the
    /// stream's first offset, or from a complete snapshot.
    whole: Option<bool>,
    growth: Growth,
}

impl Replay {
    pub fn new(remember_jobs: usize) -> Replay {
        Replay {
            contents: Contents::new(remember_jobs),
            remember_jobs,
            contacts: ContactCache::default(),
            building: None,
            whole: None,
            growth: Growth::default(),
        }
    }

    /// Applies the message at `offset` in the stream.
    pub fn read(&mut self, offset: u64, message: &[u8]) -> Read {
        self.whole.get_or_insert(offset == 0);
        let Some((kind, id, records)) = parse(message) else {
            return Read::Malformed;
        };
        let size = message.len() as u64;
        let checks_out = match kind {
            Kind::Batch => {
                self.building = None;
                let (contents, growth) = (&mut self.contents, &mut self.growth);
                read_records(records, &mut self.contacts, |change, size| {
                    if !matches!(change, Change::Add(_)) {
                        growth.may_be_dead += size;
                    }
                    contents.apply(change)
                })
            }
            Kind::Fence => {
                self.building = None;
                return Read::Fence(id);
            }
            Kind::SnapshotStart => {
                let fresh = Contents::new(self.remember_jobs);
                self.building = Some((id, fresh, size));
                true
            }
            Kind::SnapshotPart => match &mut self.building {
                Some((building, contents, bytes)) if *building == id => {
                    *bytes += size;
                    read_records(records, &mut self.contacts, |change, _| {
                        contents.apply(change)
                    })
                }
                _ => true,
            },
            Kind::SnapshotEnd => {
                if let Some((_, contents, bytes)) = self.building.take_if(|(b, ..)| *b == id) {
                    self.contents = contents;
                    self.whole = Some(true);
                    self.growth = Growth {
                        snapshot: bytes + size,
                        may_be_dead: 0,
                    };
                }
                true
            }
        };
        if checks_out {
            Read::Applied
        } else {
            Read::Malformed
        }
    }

    /// What was read, and how much of it may be dead.
    pub fn finish(self) -> Result<(Contents, Growth), Truncated> {
        match self.whole {
            Some(false) => Err(Truncated),
            _ => Ok((self.contents, self.growth)),
        }
    }
}

#[cfg(test)]
mod tests;
