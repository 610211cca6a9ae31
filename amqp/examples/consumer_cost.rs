//! What a consumer of one-recipient jobs costs in its own CPU, on this
//! client and on lapin, in the same run against the same RabbitMQ: each
//! takes `JOBS` jobs from a prefilled queue (prefetch 256), publishes one
//! report per job under publisher confirms and acknowledges the jobs whose
//! reports are confirmed (several at once). Only the consuming is timed;
//! the process's CPU (all threads, lapin's I/O thread included) is read
//! before and after.
//!
//! `cargo run --release -p herald-amqp --example consumer_cost [JOBS] [ROUNDS] [CLIENT]`
//! (CLIENT: `herald-amqp` or `lapin` alone, to profile one)
//! (RabbitMQ at `HERALD_TEST_AMQP_URL`, by default guest on 127.0.0.1:5672).

use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use herald_amqp::protocol::{confirm, queue};
use herald_amqp::types::FieldTable;
use herald_amqp::{AMQPClass, AMQPProperties, Client, Event};
use herald_testkit::amqp::bare;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const PREFETCH: u16 = 256;
const REPORT: &[u8] = br#"{"id":"job-000000","recipients":1,"sent":1,"skipped":{"invalid":0,"offline":0,"unavailable":0}}"#;

fn url() -> String {
    std::env::var("HERALD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let jobs: u64 = args.next().map_or(Ok(50_000), |n| n.parse())?;
    let rounds: u32 = args.next().map_or(Ok(2), |n| n.parse())?;
    let only = args.next();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for round in 1..=rounds {
            let kinds = ["herald-amqp", "lapin"];
            for kind in kinds
                .into_iter()
                .filter(|kind| only.as_deref().is_none_or(|only| only == *kind))
            {
                let queue = format!("herald-consumer-cost-{}-{round}", std::process::id());
                let reports = format!("{queue}-reports");
                let mut client = bare::connect(&url(), "consumer_cost").await?;
                let channel = client.open_channel().await?;
                for name in [&queue, &reports] {
                    client.call(channel, declare(name)).await?;
                }
                prefill(&mut client, channel, &queue, jobs).await?;
                let (cpu, started) = (cpu_seconds(), Instant::now());
                match kind {
                    "lapin" => on_lapin(&queue, &reports, jobs).await?,
                    _ => on_herald_amqp(&queue, &reports, jobs).await?,
                }
                let (cpu, wall) = (cpu_seconds() - cpu, started.elapsed());
                println!(
                    "{kind:>11}: {jobs} jobs in {:.2} s, {:.0} jobs/s, {:.1} µs CPU per job",
                    wall.as_secs_f64(),
                    jobs as f64 / wall.as_secs_f64(),
                    cpu * 1e6 / jobs as f64
                );
                for name in [&queue, &reports] {
                    let delete = queue::Delete {
                        queue: name.as_str().into(),
                        if_unused: false,
                        if_empty: false,
                        nowait: false,
                    };
                    client
                        .call(channel, AMQPClass::Queue(queue::AMQPMethod::Delete(delete)))
                        .await?;
                }
                bare::close(client).await;
            }
        }
        Ok(())
    })
}

fn declare(queue: &str) -> AMQPClass {
    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: queue.into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }))
}

/// `jobs` persistent one-recipient jobs, all confirmed.
async fn prefill(client: &mut Client, channel: u16, queue: &str, jobs: u64) -> Result<()> {
    let select = confirm::Select { nowait: false };
    client
        .call(
            channel,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(select)),
        )
        .await?;
    let mut confirmed = 0;
    for n in 0..jobs {
        let job = format!(
            r#"{{"id":"job-{n:06}","to":["user{n}@example.com"],"body":"Hello, this is a message of a common size: {n}"}}"#
        );
        let persistent = AMQPProperties::default().with_delivery_mode(2);
        client
            .connection()
            .publish(channel, "", queue, false, persistent, job.as_bytes())?;
        // In windows, so that the output does not hold every job at once.
        while n + 1 - confirmed > 1024 || (n + 1 == jobs && confirmed < jobs) {
            if let Event::Confirm { number, .. } = client.next_event().await? {
                confirmed = confirmed.max(number);
            }
        }
    }
    Ok(())
}

async fn on_herald_amqp(queue: &str, reports: &str, jobs: u64) -> Result<()> {
    let mut client = bare::connect(&url(), "consumer_cost").await?;
    let channel = bare::consume(&mut client, queue, PREFETCH).await?;
    let reports = bare::Reports {
        exchange: "",
        routing_key: reports,
        report: REPORT,
    };
    bare::report_and_acknowledge(
        &mut client,
        channel,
        jobs,
        reports,
        Duration::from_secs(120),
    )
    .await?;
    bare::close(client).await;
    Ok(())
}

async fn on_lapin(queue: &str, reports: &str, jobs: u64) -> Result<()> {
    let connection =
        lapin::Connection::connect(&url(), lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    channel.confirm_select(Default::default()).await?;
    let options = BasicConsumeOptions::default();
    let mut deliveries = channel
        .basic_consume(
            queue.into(),
            "consumer_cost".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    let mut confirming = FuturesOrdered::new();
    let mut acked = 0;
    while acked < jobs {
        tokio::select! {
            delivery = deliveries.next() => {
                let delivery = delivery.ok_or("deliveries ended")??;
                let options = BasicPublishOptions::default();
                let properties = lapin::BasicProperties::default();
                let confirm = channel.basic_publish("".into(), reports.into(), options, REPORT, properties).await?;
                confirming.push_back(async move { confirm.await.map(|_| delivery.acker) });
            }
            Some(confirmed) = confirming.next(), if !confirming.is_empty() => {
                // The jobs whose reports are confirmed by now, acknowledged at once.
                let mut last = confirmed?;
                acked += 1;
                while let Some(Some(confirmed)) = confirming.next().now_or_never() {
                    last = confirmed?;
                    acked += 1;
                }
                last.ack(BasicAckOptions { multiple: true }).await?;
            }
        }
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// This process's CPU time so far, all threads.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // After the command's closing parenthesis: utime and stime are the
    // 12th and 13th fields, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}
