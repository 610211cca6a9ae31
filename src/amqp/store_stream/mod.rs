//! The store in a RabbitMQ stream (`store.backend = "stream"`): the
//! broker's side of [`crate::store::replica`]. The link reads it when it
//! first holds the jobs queue and appends each of the core's batches to
//! it, on the connection that holds the token: once that connection is
//! gone, so is this Herald's right to append.
//!
//! A snapshot is written (reading the stream again, to the end) when what
//! may be dead outgrew the last one; commits wait meanwhile, so that
//! nothing comes between a snapshot's start and end.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection};

use crate::store::replica::{self, Growth, Read, Replay};
use crate::store::Contents;

/// Messages taken before they are acknowledged while reading: a stream
/// consumer must set a prefetch, and its acknowledgements are its credit.
const READ_PREFETCH: u16 = 1_000;

/// The stream that holds the store of Herald on `jobs_queue`.
pub fn store_stream(jobs_queue: &str) -> String {
    format!("{jobs_queue}.store")
}

/// Where the store lives on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStream {
    pub queue: String,
    /// Its retention (`x-max-length-bytes`).
    pub max_bytes: u64,
    pub remember_jobs: usize,
}

/// Why the store's stream could not be read or appended to.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not take a message of the store stream {0}")]
    Refused(String),
    #[error(transparent)]
    Truncated(#[from] replica::Truncated),
    #[error("the store stream {0} ended before this Herald's fence came back")]
    Ended(String),
    /// Another Herald held the jobs queue since this one last did.
    #[error(
        "another Herald appended to the store stream {0} since this one last held the jobs \
         queue: what it committed is not in this process"
    )]
    Overtaken(String),
}

/// Where a read starts.
enum ReadFrom {
    First,
    Offset(u64),
}

/// The stream's channel on a connection that holds the jobs queue, and how
/// much of it may be dead.
pub struct StreamStore {
    settings: StoreStream,
    channel: Channel,
    /// Reads consume on a channel of their own, one consumer a read.
    reader: Channel,
    reads: u64,
    writer: Writer,
    growth: Growth,
}

/// This Herald as it appends to the stream: its writer id, the same for
/// every connection of the process, and where its last fence is (kept
/// across connections: the link's).
#[derive(Debug, Clone)]
pub struct Writer {
    id: u64,
    /// Its fences so far: each has a number of its own.
    fences: Arc<AtomicU64>,
    /// The offset of its last fence; `u64::MAX` before the first.
    last_fence: Arc<AtomicU64>,
}

impl Default for Writer {
    fn default() -> Writer {
        Writer::new()
    }
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            id: RandomState::new().hash_one(std::process::id()),
            fences: Arc::new(AtomicU64::new(0)),
            last_fence: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    fn last_fence(&self) -> Option<u64> {
        Some(self.last_fence.load(Ordering::Relaxed)).filter(|&at| at != u64::MAX)
    }
}

impl StreamStore {
    /// Declares the stream on `connection` and opens a channel (in confirm
    /// mode) to append to it.
    pub async fn open(
        connection: &Connection,
        settings: &StoreStream,
        writer: Writer,
    ) -> Result<StreamStore, StreamError> {
        let channel = connection.create_channel().await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("stream".into()),
        );
        let max_bytes = i64::try_from(settings.max_bytes).unwrap_or(i64::MAX);
        arguments.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(max_bytes),
        );
        // Retention removes whole segments: several to a stream.
        let segment = (max_bytes / 8).clamp(1 << 20, 500 << 20);
        arguments.insert(
            "x-stream-max-segment-size-bytes".into(),
            AMQPValue::LongLongInt(segment),
        );
        channel
            .queue_declare(
                settings.queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let reader = connection.create_channel().await?;
        reader
            .basic_qos(READ_PREFETCH, BasicQosOptions::default())
            .await?;
        Ok(StreamStore {
            settings: settings.clone(),
            channel,
            reader,
            reads: 0,
            writer,
            growth: Growth::default(),
        })
    }

    /// Reads the stream to its end: appends a fence of its own and reads
    /// from the first message until the fence comes back.
    pub async fn read(&mut self) -> Result<Contents, StreamError> {
        let mut replay = Replay::new(self.settings.remember_jobs);
        let queue = self.settings.queue.clone();
        self.scan(ReadFrom::First, |offset, message| {
            if replay.read(offset, message) == Read::Malformed {
                tracing::warn!(
                    stream = %queue,
                    offset,
                    "a message of the store stream does not check out; skipped"
                );
            }
        })
        .await?;
        let (contents, growth) = replay.finish()?;
        self.growth = growth;
        Ok(contents)
    }

    /// Whether another Herald appended a fence since this one last read
    /// the stream (it held the jobs queue meanwhile, and what it committed
    /// is not in this process). Reads from this one's last fence on.
    pub async fn overtaken(&mut self) -> Result<bool, StreamError> {
        let Some(offset) = self.writer.last_fence() else {
            return Ok(false);
        };
        let (own, mut foreign) = (self.writer.id, false);
        self.scan(ReadFrom::Offset(offset), |_, message| {
            foreign |= replica::fence_of(message).is_some_and(|(writer, _)| writer != own);
        })
        .await?;
        Ok(foreign)
    }

    /// Appends a fence and hands every message from `from` to the fence
    /// (excluded) to `visit`, with its offset; remembers the fence.
    async fn scan(
        &mut self,
        from: ReadFrom,
        mut visit: impl FnMut(u64, &[u8]),
    ) -> Result<(), StreamError> {
        self.reads += 1;
        let tag = format!("herald-store-read-{}", self.reads);
        let mut arguments = FieldTable::default();
        let start = match from {
            ReadFrom::First => AMQPValue::LongString("first".into()),
            ReadFrom::Offset(offset) => AMQPValue::LongLongInt(offset as i64),
        };
        arguments.insert("x-stream-offset".into(), start);
        let mut consumer = self
            .reader
            .basic_consume(
                self.settings.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await?;
        let fence = (
            self.writer.id,
            self.writer.fences.fetch_add(1, Ordering::Relaxed),
        );
        self.publish([replica::fence(fence.0, fence.1)]).await?;
        let mut unacknowledged = 0;
        let mut came_back = None;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            let offset = offset_of(&delivery.properties);
            unacknowledged += 1;
            let ours = replica::fence_of(&delivery.data) == Some(fence);
            if ours || unacknowledged >= READ_PREFETCH / 2 {
                unacknowledged = 0;
                let everything = BasicAckOptions { multiple: true };
                delivery.acker.ack(everything).await?;
            }
            if ours {
                came_back = Some(offset);
                break;
            }
            visit(offset, &delivery.data);
        }
        self.reader
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await?;
        let offset = came_back.ok_or_else(|| StreamError::Ended(self.settings.queue.clone()))?;
        self.writer.last_fence.store(offset, Ordering::Relaxed);
        Ok(())
    }

    /// Appends a commit (as [`replica::batch`] encoded it); done once the
    /// broker confirmed all of it.
    pub async fn append(&mut self, commit: replica::Appended) -> Result<(), StreamError> {
        self.growth.appended(&commit);
        self.publish(commit.messages).await.map(|_| ())
    }

    /// Whether a snapshot is due ([`StreamStore::write_snapshot`]).
    pub fn snapshot_due(&self) -> bool {
        self.growth.snapshot_due()
    }

    pub fn queue(&self) -> &str {
        &self.settings.queue
    }

    /// Reads the stream to its end and appends what it holds as a
    /// snapshot; its size. Nothing else may be appended meanwhile.
    pub async fn write_snapshot(&mut self) -> Result<u64, StreamError> {
        let written = self.snapshot().await;
        match written {
            Ok(growth) => self.growth = growth,
            // Not tried again before as much again may be dead.
            Err(_) => self.growth.postpone(),
        }
        written.map(|growth| growth.snapshot_bytes())
    }

    async fn snapshot(&mut self) -> Result<Growth, StreamError> {
        let contents = self.read().await?;
        let id = RandomState::new().hash_one(std::process::id());
        let bytes = self.publish(replica::snapshot(id, &contents)).await?;
        Ok(Growth::after_snapshot(bytes))
    }

    /// Publishes `messages` in order, then waits for every confirm; the
    /// bytes published.
    async fn publish(
        &self,
        messages: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<u64, StreamError> {
        let (mut confirms, mut bytes) = (Vec::new(), 0);
        for message in messages {
            bytes += message.len() as u64;
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    self.settings.queue.as_str().into(),
                    // Mandatory: a stream deleted under Herald must not
                    // swallow its commits.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            if !matches!(confirm.await?, Confirmation::Ack(None)) {
                return Err(StreamError::Refused(self.settings.queue.clone()));
            }
        }
        Ok(bytes)
    }
}

/// The store's stream on a connection that holds the jobs queue, ready to
/// append to; with what it holds the first time `writer` holds the jobs
/// queue (later the core has it, unless another Herald appended meanwhile:
/// [`StreamError::Overtaken`]).
pub async fn attach(
    connection: &Connection,
    settings: &StoreStream,
    writer: &Writer,
) -> Result<(Appender, Option<Contents>), StreamError> {
    let mut store = StreamStore::open(connection, settings, writer.clone()).await?;
    let contents = match writer.last_fence() {
        None => Some(store.read().await?),
        Some(_) if store.overtaken().await? => {
            return Err(StreamError::Overtaken(settings.queue.clone()))
        }
        Some(_) => None,
    };
    Ok((Appender::new(store), contents))
}

/// A stream message's offset, which the broker puts in its headers.
fn offset_of(properties: &BasicProperties) -> u64 {
    let offset = (properties.headers().as_ref())
        .and_then(|headers| headers.inner().get("x-stream-offset").cloned());
    match offset {
        Some(AMQPValue::LongLongInt(offset)) => offset as u64,
        Some(AMQPValue::LongUInt(offset)) => u64::from(offset),
        Some(AMQPValue::LongInt(offset)) => offset as u64,
        _ => 0,
    }
}

mod appender;
pub use appender::{Answer, Appender};
