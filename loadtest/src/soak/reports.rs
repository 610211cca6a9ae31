//! The soak's reader of `job.report`s: a durable queue of its own, bound
//! to the events exchange before Herald starts, read with
//! acknowledgements, and read again on a new connection whenever the
//! broker goes (a broker kill): the reports published meanwhile wait in
//! the queue, persistent.
//!
//! A report is acknowledged after it is recorded, so one recorded just
//! before a broker kill can come back, marked `redelivered`: the ledger
//! counts it apart (see [`super::ledger::Ledger::record_report`]).

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, Consumer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::ledger::Shared;
use crate::broker::connect_channel;

/// Pause before connecting again after the broker went.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The queue goes by itself this long after its last consumer (a soak
/// killed half-way leaves nothing on a shared broker for long); far
/// longer than a broker node takes to boot again.
const QUEUE_EXPIRES_MS: i64 = 10 * 60 * 1_000;

/// Where the reader reads from.
#[derive(Clone)]
pub struct Source {
    pub url: String,
    pub events: String,
    pub queue: String,
}

/// A running reader; [`ReportReader::stop`] ends it and deletes its queue.
pub struct ReportReader {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Session {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

impl ReportReader {
    /// Declares and binds the queue and starts reading it into `ledger`,
    /// each report stamped with `clock` (nanoseconds since the run's
    /// epoch). Returns once the queue is bound, so that no report Herald
    /// publishes afterwards is missed.
    pub async fn start(
        source: Source,
        ledger: Shared,
        clock: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Result<ReportReader, String> {
        let first = open(&source).await?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(read(first, source, ledger, clock, stopped));
        Ok(ReportReader { stop, task })
    }

    /// Stops reading and deletes the queue.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn open(source: &Source) -> Result<Session, String> {
    let Source { url, events, queue } = source;
    let (connection, channel) = connect_channel(url, "reports").await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(QUEUE_EXPIRES_MS));
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await
        .map_err(|e| format!("declare {queue}: {e}"))?;
    channel
        .queue_bind(
            queue.as_str().into(),
            events.as_str().into(),
            "job.report".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("bind {queue}: {e}"))?;
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "soak-reports".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consume {queue}: {e}"))?;
    Ok(Session {
        connection,
        channel,
        consumer,
    })
}

/// How one session ended.
enum End {
    Stopped,
    BrokerGone,
}

async fn read(
    first: Session,
    source: Source,
    ledger: Shared,
    clock: impl Fn() -> u64 + Sync,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut session = Some(first);
    loop {
        let Some(mut current) = session.take() else {
            tokio::select! {
                _ = &mut stopped => return,
                () = tokio::time::sleep(RETRY_PAUSE) => {}
            }
            session = open(&source).await.ok();
            continue;
        };
        let end = tokio::select! {
            _ = &mut stopped => End::Stopped,
            () = consume(&mut current.consumer, &ledger, &clock) => End::BrokerGone,
        };
        match end {
            End::Stopped => {
                let queue = source.queue.as_str().into();
                let _ = current
                    .channel
                    .queue_delete(queue, QueueDeleteOptions::default())
                    .await;
                let _ = current.connection.close(200, "done".into()).await;
                return;
            }
            End::BrokerGone => {
                eprintln!(
                    "soak: the report reader lost the broker; reading again on a new connection"
                );
            }
        }
    }
}

/// Records and acknowledges deliveries until the consumer ends (its
/// connection went).
async fn consume(consumer: &mut Consumer, ledger: &Shared, clock: &(impl Fn() -> u64 + Sync)) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let at_ns = clock();
        ledger
            .lock()
            .unwrap()
            .record_report(&delivery.data, delivery.redelivered, at_ns);
        if delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .is_err()
        {
            return;
        }
    }
}
