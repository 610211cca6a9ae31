//! The store's file: a header, then records appended a batch at a time with
//! one `fdatasync` per batch. A record is its payload's length and CRC-32,
//! then the payload (a tag and the change's fields: [`codec`]). Replaying
//! the records in order gives the [`Contents`]. A batch cut short by a
//! crash or a full disk leaves a tail that does not check out: it was never
//! answered as committed, so it is cut off. When the records appended since
//! the last compaction that a later one can make dead (all but new
//! subscriptions) outgrow what the file held after it, the live contents
//! are written to a new file that replaces it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Change, Contents, StoreError};
use codec::{decode, encode, ContactCache};

const HEADER: &[u8; 16] = b"herald-store v1\n";
/// The first bytes of a file of redb, which Herald's store once was.
const REDB_MAGIC: &[u8; 4] = b"redb";
/// A length beyond this is a corrupt record, not an allocation to make.
const MAX_RECORD: u32 = 64 << 20;
/// Growth that may be dead tolerated beyond the compacted size before
/// compacting.
const COMPACT_SLACK: u64 = 8 << 20;

pub struct Log {
    path: PathBuf,
    file: File,
    /// Bytes known to be written and synced.
    len: u64,
    /// The length after the last compaction (or at open).
    compacted_len: u64,
    /// Bytes of new subscriptions appended since then: they stay live
    /// until a removal (counted when it comes), so a compaction would copy
    /// them whole. A flood of a million users would otherwise compact the
    /// file again and again as it doubles, each time building every
    /// subscription in memory, which the allocator then keeps.
    subscribed_since: u64,
    /// A write or sync failed: the file is cut back to `len` before the
    /// next batch, which is written again whole (after a failed fsync the
    /// kernel may have dropped the pages, so nothing after `len` is
    /// trusted; what is before it was synced).
    broken: bool,
    remember_jobs: usize,
    buffer: Vec<u8>,
}

impl Log {
    /// Opens the file at `path` (creating it if there is none) and replays it.
    /// The file is locked before anything is read or cut: another Herald
    /// may still be writing to it (one stepping down finishes its batches).
    pub fn open(path: &Path, remember_jobs: usize) -> Result<(Log, Contents), StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        lock(&file, path)?;
        let mut contents = Contents::new(remember_jobs);
        let size = file.metadata().map_err(io)?.len();
        let (mut file, len) = if size == 0 {
            let created = write_all(file, std::iter::empty()).map_err(io)?;
            sync_parent(path).map_err(io)?;
            created
        } else {
            let valid = replay(path, &mut contents)?;
            if valid < size {
                tracing::warn!(
                    path = %path.display(),
                    dropped = size - valid,
                    "the store ends with a batch that was never committed; cut off"
                );
                file.set_len(valid)
                    .and_then(|()| file.sync_all())
                    .map_err(io)?;
            }
            (file, valid)
        };
        file.seek(SeekFrom::Start(len)).map_err(io)?;
        let log = Log {
            path: path.to_path_buf(),
            file,
            len,
            compacted_len: len,
            subscribed_since: 0,
            broken: false,
            remember_jobs,
            buffer: Vec::new(),
        };
        Ok((log, contents))
    }

    /// Appends `changes` and syncs them to disk.
    pub fn append(&mut self, changes: &[Change]) -> io::Result<()> {
        if self.broken {
            self.file.set_len(self.len)?;
            self.file.seek(SeekFrom::Start(self.len))?;
            self.broken = false;
        }
        self.buffer.clear();
        let mut subscribed = 0;
        for change in changes {
            let before = self.buffer.len();
            encode(change, &mut self.buffer);
            if let Change::Add(_) = change {
                subscribed += (self.buffer.len() - before) as u64;
            }
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all(&self.buffer)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += self.buffer.len() as u64;
                self.subscribed_since += subscribed;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Compacts the file if what it gained since it last was, new
    /// subscriptions aside, outgrew what it held then. A compaction that
    /// fails leaves the file as it was.
    pub fn compact_if_grown(&mut self) {
        let may_be_dead = self.len - self.compacted_len - self.subscribed_since;
        if self.broken || may_be_dead <= self.compacted_len + COMPACT_SLACK {
            return;
        }
        let started = std::time::Instant::now();
        let before = self.len;
        match self.compact() {
            Ok(()) => tracing::info!(
                before,
                after = self.len,
                took = ?started.elapsed(),
                "store compacted"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "store compaction failed; the log goes on growing")
            }
        }
        // After a failure, not tried again before as much again may be dead.
        self.compacted_len = self.len;
        self.subscribed_since = 0;
    }

    fn compact(&mut self) -> Result<(), StoreError> {
        let mut contents = Contents::new(self.remember_jobs);
        replay(&self.path, &mut contents)?;
        let snapshot = self.path.with_extension("compacting");
        let io = |source| StoreError::Io {
            path: snapshot.clone(),
            source,
        };
        // Created and locked before it takes the store's name, so no other
        // Herald can open it in between.
        let (file, len) = create(&snapshot, contents.changes())?;
        std::fs::rename(&snapshot, &self.path).map_err(io)?;
        sync_parent(&self.path).map_err(io)?;
        self.file = file;
        self.len = len;
        Ok(())
    }
}

/// Writes a new file at `path` holding `changes`, synced and locked;
/// returns it, positioned at its end, and its length.
fn create(path: &Path, changes: impl Iterator<Item = Change>) -> Result<(File, u64), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    lock(&file, path)?;
    write_all(file, changes).map_err(io)
}

fn write_all(file: File, changes: impl Iterator<Item = Change>) -> io::Result<(File, u64)> {
    let mut out = BufWriter::new(file);
    out.write_all(HEADER)?;
    let mut len = HEADER.len() as u64;
    let mut record = Vec::new();
    for change in changes {
        record.clear();
        encode(&change, &mut record);
        out.write_all(&record)?;
        len += record.len() as u64;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((file, len))
}

/// One Herald per store: a second would interleave its records.
fn lock(file: &File, path: &Path) -> Result<(), StoreError> {
    file.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => StoreError::Locked {
            path: path.to_path_buf(),
        },
        std::fs::TryLockError::Error(source) => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// A file's name is durable once its directory is synced.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Applies the records of the file at `path` to `contents`; returns the
/// length of the part that checks out.
fn replay(path: &Path, contents: &mut Contents) -> Result<u64, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let mut header = [0u8; HEADER.len()];
    let read = read_full(&mut input, &mut header).map_err(io)?;
    if read < HEADER.len() || &header != HEADER {
        return Err(StoreError::Unrecognized {
            path: path.to_path_buf(),
            redb: header.starts_with(REDB_MAGIC),
        });
    }
    let mut valid = HEADER.len() as u64;
    let mut payload = Vec::new();
    let mut contacts = ContactCache::default();
    loop {
        let mut frame = [0u8; 8];
        if read_full(&mut input, &mut frame).map_err(io)? < frame.len() {
            return Ok(valid);
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len > MAX_RECORD {
            return Ok(valid);
        }
        payload.resize(len as usize, 0);
        if read_full(&mut input, &mut payload).map_err(io)? < payload.len()
            || crc32fast::hash(&payload) != crc
        {
            return Ok(valid);
        }
        match decode(&payload, &mut contacts) {
            Some(Some(change)) => contents.apply(change),
            // Written from parsed JIDs; one that no longer parses is skipped.
            Some(None) => {}
            None => return Ok(valid),
        }
        valid += 8 + u64::from(len);
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub(super) mod codec;
#[cfg(test)]
mod tests;
