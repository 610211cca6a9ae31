//! `[store]`: where the store lives, and how many completed jobs it
//! remembers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the store lives: in the file `path` on this host, or in a
    /// RabbitMQ stream on the jobs broker, where a standby on another host
    /// reads it when it takes over.
    pub backend: StoreBackend,
    /// File of the embedded store (subscribers, completed jobs), with
    /// `backend = "file"`.
    pub path: PathBuf,
    /// With `backend = "stream"`: the stream's retention
    /// (`x-max-length-bytes`), which must hold its last snapshot whole and
    /// what was appended since: at least three times the store's size.
    /// RabbitMQ never changes it on an existing stream.
    pub stream_max_bytes: u64,
    /// How many completed jobs to remember by id, so that a job published
    /// again is reported as a duplicate instead of delivered twice.
    pub remember_jobs: usize,
}

/// Where the store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// A file on this host (`store.path`): the default, and the fastest.
    File,
    /// A RabbitMQ stream named after the jobs queue (`<jobs_queue>.store`),
    /// replicated as the broker's cluster replicates it.
    Stream,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::File,
            path: PathBuf::from("herald.store"),
            stream_max_bytes: 1 << 30,
            remember_jobs: 100_000,
        }
    }
}
