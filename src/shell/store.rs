//! Where the shell sends the core's batches: the store's writer thread
//! (a file on this host), or the link (a stream on the broker), and where
//! their answers come from.

use super::standby;
use crate::amqp::{Command, Link};
use crate::config::StoreSettings;
use crate::core::{Batch, Restored};
use crate::store::{Commit, Contents, Store, StoreError, Writer};

pub(super) enum StoreWriter {
    File(Writer),
    /// Batches go to the link, whose answers come with its events.
    Stream,
}

impl StoreWriter {
    /// Opens the store: the file (waiting while another Herald holds it),
    /// or what the link read from the stream. `None` if `shutdown` came
    /// first.
    pub(super) async fn open<F: std::future::Future<Output = ()>>(
        settings: &StoreSettings,
        remember_jobs: usize,
        from_stream: Option<Box<Contents>>,
        shutdown: std::pin::Pin<&mut F>,
    ) -> Result<Option<(StoreWriter, Restored)>, StoreError> {
        let path = match (settings, from_stream) {
            (StoreSettings::Stream, Some(contents)) => {
                return Ok(Some((StoreWriter::Stream, contents.into_restored())))
            }
            (StoreSettings::Stream, None) => {
                return Err(StoreError::Stream("the link did not read it".into()))
            }
            (StoreSettings::File(path), _) => path,
        };
        let open = || Store::open(path, remember_jobs);
        let Some((store, restored)) = standby::open_store(open, shutdown).await? else {
            return Ok(None);
        };
        Ok(Some((StoreWriter::File(store.spawn_writer()), restored)))
    }

    pub(super) fn commit(&self, batch: Batch, link: &Link) {
        match self {
            StoreWriter::File(writer) => writer.commit(batch),
            StoreWriter::Stream => link.send(Command::Commit(batch)),
        }
    }

    /// The writer thread's next answer; never, for the stream's.
    pub(super) async fn answer(&mut self) -> Option<Commit> {
        match self {
            StoreWriter::File(writer) => writer.results.recv().await,
            StoreWriter::Stream => std::future::pending().await,
        }
    }

    /// Commits `last` and closes the link, in the order that gets `last`
    /// written: the link carries the stream's batches.
    pub(super) async fn finish(self, last: Vec<crate::store::Change>, link: Link) {
        match self {
            StoreWriter::File(writer) => {
                link.close(super::PUBLISH_LIMIT).await;
                writer.finish(last);
            }
            StoreWriter::Stream => {
                if !last.is_empty() {
                    link.send(Command::Commit(Batch {
                        id: 0,
                        changes: last,
                    }));
                }
                link.close(super::PUBLISH_LIMIT).await;
            }
        }
    }
}
