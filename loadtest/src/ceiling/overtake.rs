//! The urgent lane against a big job, into the sink: a job to every user
//! goes to the jobs queue, and once the sink has read a tenth of it, a
//! one-recipient job is published; first to the urgent queue, then, as the
//! baseline in the same run, to the jobs queue behind the big one. How long
//! the small job's message took to reach the sink (its start), how long it
//! waited for its report, and whether that report came before the big
//! job's, is what the lane is for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{check_alive, Job, Result, Wait};
use crate::broker::Broker;
use crate::component::Component;
use crate::publisher::publish_payloads;
use herald_testkit::fake_server::FakeServer;

/// How often the reports and the sink are looked at.
const POLL: Duration = Duration::from_millis(1);

#[derive(Debug, Serialize)]
pub struct OvertakeResult {
    /// Where the small job went: `urgent` or `jobs`.
    queue: &'static str,
    big_recipients: u64,
    /// From the small job's publish to the sink's read of its message.
    small_read_ms: Option<f64>,
    /// From the small job's publish to its report.
    small_waited_ms: f64,
    /// From the small job's publish to the big job's report.
    big_rest_ms: f64,
    /// The small job's report came before the big job's.
    overtook: bool,
}

/// One run: the big job to `to`, the small job to `to[0]` on the urgent
/// queue (`urgent`) or the jobs queue.
pub async fn overtake(
    broker: &Broker,
    sink: &FakeServer,
    herald: &mut Component,
    to: Vec<String>,
    body: &str,
    urgent: bool,
    limit: Duration,
) -> Result<OvertakeResult> {
    let names = &broker.names().component;
    let big_recipients = to.len() as u64;
    let id = format!("small-{}", if urgent { "urgent" } else { "jobs" });
    // A body of its own, for the sink to note when the message comes.
    let marker = format!("{id}-{}", herald_testkit::random_hex());
    let small = Job {
        id,
        to: to.iter().take(1).cloned().collect(),
        body: &marker,
    };
    let big = Job {
        id: format!("big-{}", small.id),
        to,
        body,
    };
    let (big_id, small_id) = (big.id.clone(), small.id.clone());
    let (big, small) = (serde_json::to_vec(&big)?, serde_json::to_vec(&small)?);
    let messages_before = sink.counts().messages;
    publish(broker, &names.jobs, big, sink).await?;
    // Polled as closely as the reports: the small job goes at a tenth,
    // not whenever a coarser poll notices it.
    let wait = Wait::new("a tenth of the big job at the sink", limit).every(POLL);
    while sink.counts().messages < messages_before + big_recipients / 10 {
        check_alive(herald, sink)?;
        wait.tick().await?;
    }
    let queue = if urgent { &names.urgent } else { &names.jobs };
    sink.watch(marker.as_bytes());
    let published = Instant::now();
    publish(broker, queue, small, sink).await?;
    let wait = Wait::new("the reports of the big and the small job", limit).every(POLL);
    let (mut small_waited, mut big_rest) = (None, None);
    while small_waited.is_none() || big_rest.is_none() {
        check_alive(herald, sink)?;
        let now = published.elapsed();
        if small_waited.is_none() && broker.reported(&small_id) {
            small_waited = Some(now);
        }
        if big_rest.is_none() && broker.reported(&big_id) {
            big_rest = Some(now);
        }
        wait.tick().await?;
    }
    let (small_waited, big_rest) = (
        small_waited.unwrap_or_default(),
        big_rest.unwrap_or_default(),
    );
    let since_start = published.duration_since(sink.started());
    let small_read = sink
        .counts()
        .watched
        .map(|at| at.saturating_sub(since_start).as_secs_f64() * 1e3);
    Ok(OvertakeResult {
        queue: if urgent { "urgent" } else { "jobs" },
        big_recipients,
        small_read_ms: small_read,
        small_waited_ms: small_waited.as_secs_f64() * 1e3,
        big_rest_ms: big_rest.as_secs_f64() * 1e3,
        overtook: small_waited < big_rest,
    })
}

async fn publish(broker: &Broker, queue: &str, payload: Vec<u8>, sink: &FakeServer) -> Result<()> {
    publish_payloads(
        broker,
        queue,
        Arc::new(vec![payload]),
        1,
        None,
        sink.started(),
    )
    .await?;
    Ok(())
}

/// A Markdown table of `(users, result)` rows; empty without rows.
pub fn markdown<'a>(rows: impl Iterator<Item = (u64, &'a OvertakeResult)>) -> String {
    let mut out = String::new();
    for (users, r) in rows {
        if out.is_empty() {
            out.push_str("\n| users | small job on | big job's recipients | small job's message at the sink after | its report after | big job's report after | overtook |\n");
            out.push_str("|---:|---|---:|---:|---:|---:|---|\n");
        }
        let read = r
            .small_read_ms
            .map_or_else(|| "not seen".to_string(), |ms| format!("{ms:.0} ms"));
        out.push_str(&format!(
            "| {users} | {} | {} | {read} | {:.0} ms | {:.0} ms | {} |\n",
            r.queue, r.big_recipients, r.small_waited_ms, r.big_rest_ms, r.overtook
        ));
    }
    out
}
