//! The broker's own limit on one-recipient jobs, measured beside Herald's
//! `single` phase in the same run: a consumer that does nothing but take
//! each job, publish one report of a report's size and acknowledge the job
//! once the broker confirmed the report, with Herald's prefetch, fed by the
//! same publisher on the same broker. It runs on Herald's own AMQP client
//! (`herald-amqp`), driven on this task, so that it costs next to nothing
//! beside the broker (a consumer on lapin, whose I/O runs on a thread of
//! its own, cost about ten times as much CPU per job). What Herald reaches
//! of this rate is what it costs beyond the broker; the rest is RabbitMQ's
//! (and, on a shared machine, the load test's).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald_testkit::amqp::bare;
use lapin::options::{
    BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::Channel;
use serde::Serialize;

use super::brokers::JobQueues;
use super::{Result, Wait};
use crate::broker::Broker;
use crate::publisher::publish_payloads;

/// Where the bare consumer's reports go: a queue of their own, consumed
/// like Herald's reports are, so that the broker routes and delivers each.
const REPORT_KEY: &str = "bare.report";

#[derive(Debug, Serialize)]
pub struct BareResult {
    pub(super) jobs: u64,
    /// From the first publish until the last job was acknowledged.
    pub(super) wall_secs: f64,
    pub(super) jobs_per_sec: f64,
}

/// Runs `payloads` through the bare consumer, from a queue of type
/// `queues`; `prefetch` as Herald's.
pub async fn bare_consumer(
    broker: &Broker,
    queues: JobQueues,
    payloads: Arc<Vec<Vec<u8>>>,
    prefetch: u16,
    limit: Duration,
) -> Result<BareResult> {
    let names = broker.names();
    let jobs_queue = format!("{}.bare", names.component.jobs);
    let reports_queue = format!("{}.bare", names.reports);
    let connection = broker.publishing_connection().await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            jobs_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            queues.arguments(),
        )
        .await?;
    let reports = count_reports(&channel, &reports_queue, &names.component.events).await?;
    let outcome = run(broker, &jobs_queue, payloads, prefetch, limit).await;
    let _ = channel
        .queue_delete(jobs_queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
    let result = outcome?;
    let wait = Wait::new(
        format!("the bare consumer's {} reports", result.jobs),
        limit,
    );
    while reports.load(Ordering::Relaxed) < result.jobs {
        wait.tick().await?;
    }
    Ok(result)
}

async fn run(
    broker: &Broker,
    queue: &str,
    payloads: Arc<Vec<Vec<u8>>>,
    prefetch: u16,
    limit: Duration,
) -> Result<BareResult> {
    let jobs = payloads.len() as u64;
    let mut client = bare::connect(broker.url(), "herald-loadtest bare consumer").await?;
    let channel = bare::consume(&mut client, queue, prefetch).await?;
    let report = serde_json::to_vec(&serde_json::json!({
        "id": "single-00000", "recipients": 1, "sent": 1,
        "skipped": {"invalid": 0, "offline": 0, "unavailable": 0}
    }))?;
    let events = broker.names().component.events.clone();
    let start = Instant::now();
    let publishing = publish_payloads(broker, queue, payloads, 1, None, start);
    let reports = bare::Reports {
        exchange: &events,
        routing_key: REPORT_KEY,
        report: &report,
    };
    let consuming = bare::report_and_acknowledge(&mut client, channel, jobs, reports, limit);
    let (published, consumed) = tokio::join!(publishing, consuming);
    let wall = start.elapsed().as_secs_f64();
    bare::close(client).await;
    published?;
    consumed?;
    Ok(BareResult {
        jobs,
        wall_secs: wall,
        jobs_per_sec: jobs as f64 / wall.max(1e-9),
    })
}

/// Binds a queue of its own to the events exchange for the bare
/// consumer's reports and counts what reaches it.
async fn count_reports(channel: &Channel, queue: &str, events: &str) -> Result<Arc<AtomicU64>> {
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), exclusive, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            queue.into(),
            events.into(),
            REPORT_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "herald-loadtest-bare-reports".into(),
            no_ack,
            FieldTable::default(),
        )
        .await?;
    let count = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Some(Ok(_)) = consumer.next().await {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(count)
}
