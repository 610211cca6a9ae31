//! One phase of the ceiling: jobs published at once, measured from the
//! first publish until every report is in (the sink's messages, Herald's
//! CPU, its loop's busy time and its barrier's round trip).

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{check_alive, CeilingArgs, Job, Result, Wait};
use crate::broker::Broker;
use crate::component::Component;
use crate::procstat::stat_cpu_seconds;
use crate::publisher::publish_payloads;
use herald_testkit::fake_server::FakeServer;

#[derive(Debug, Serialize)]
pub struct PhaseResult {
    pub(super) name: String,
    pub(super) jobs: u64,
    pub(super) recipients_per_job: u64,
    /// Messages the reports say were sent.
    pub(super) reported_sent: u64,
    /// Messages the sink read.
    pub(super) delivered: u64,
    /// From the first publish to the last message read.
    pub(super) delivery_secs: f64,
    pub(super) stanzas_per_sec: f64,
    /// From the first publish until every report arrived.
    pub(super) wall_secs: f64,
    pub(super) herald_cpu_secs: f64,
    pub(super) herald_cpu_us_per_msg: f64,
    /// Herald's CPU seconds per wall second (all its threads).
    pub(super) herald_cores: f64,
    /// CPU seconds of Herald's main thread, which runs the event loop and
    /// serializes and writes the stanzas.
    pub(super) loop_thread_cpu_secs: f64,
    /// The main thread's CPU seconds per wall second: 1.0 is a saturated core.
    pub(super) loop_thread_cores: f64,
    /// Herald's own `herald_event_loop_busy_seconds_total` per wall second
    /// (handling inputs; socket writes happen outside it).
    pub(super) event_loop_busy: f64,
    /// Mean round trip of Herald's barrier pings (the sink answers at once).
    pub(super) barrier_roundtrip_ms: f64,
    /// Barrier and keepalive pings the sink answered.
    pub(super) pings_answered: u64,
    /// Rate between the first and the last message the sink read.
    pub(super) write_stanzas_per_sec: f64,
    pub(super) sink_cpu_secs: f64,
}

pub async fn phase(
    broker: &Broker,
    sink: &FakeServer,
    herald: &mut Component,
    args: &CeilingArgs,
    name: &str,
    jobs: Vec<Job<'_>>,
    users: u64,
) -> Result<PhaseResult> {
    let count = jobs.len() as u64;
    let recipients_per_job = jobs.first().map_or(0, |job| job.to.len() as u64);
    let payloads = jobs
        .iter()
        .map(serde_json::to_vec)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    drop(jobs);
    let pid = herald.pid();
    let reports_before = broker.reports();
    let messages_before = sink.counts().messages;
    let cpu_before = cpu_seconds(pid)?;
    let main_before = main_thread_cpu_seconds(pid)?;
    let busy_before = loop_busy(herald).await?;
    let roundtrips_before = roundtrips(herald).await?;
    let sink_cpu_before = sink_cpu_seconds(sink);
    let sink_before = sink.counts();
    if args.churn > 0 {
        sink.churn(0..users, args.churn);
    }
    let queue = &broker.names().component.jobs;
    let (published, _) =
        publish_payloads(broker, queue, Arc::new(payloads), 1, None, sink.started()).await?;
    let since_sink = Duration::from_nanos(published.iter().min().copied().unwrap_or(0));
    let start = sink.started() + since_sink;
    let step = Duration::from_secs(args.timeout_secs);
    let wait = Wait::new(format!("the reports of {count} {name} jobs"), step);
    let waited = async {
        loop {
            check_alive(herald, sink)?;
            if broker.reports().jobs - reports_before.jobs >= count {
                return Ok::<_, Box<dyn Error>>(());
            }
            wait.tick().await?;
        }
    }
    .await;
    if args.churn > 0 {
        sink.stop_churn();
    }
    waited?;
    let wall = start.elapsed().as_secs_f64();
    let reported_sent = broker.reports().sent - reports_before.sent;
    // Each report follows an answered ping, which the sink answers only
    // after reading everything before it: every message is in by now.
    let counts = sink.counts();
    let delivered = counts.messages - messages_before;
    if delivered != reported_sent {
        return Err(format!(
            "{name}: the sink read {delivered} messages, the reports say {reported_sent}"
        )
        .into());
    }
    if args.churn == 0 && reported_sent != count * recipients_per_job {
        return Err(format!(
            "{name}: {reported_sent} messages sent of {} expected",
            count * recipients_per_job
        )
        .into());
    }
    let herald_cpu = cpu_seconds(pid)? - cpu_before;
    let busy = loop_busy(herald).await? - busy_before;
    let main_thread = main_thread_cpu_seconds(pid)? - main_before;
    let roundtrips = roundtrips(herald).await?;
    let (roundtrip_secs, roundtrip_count) = (
        roundtrips.0 - roundtrips_before.0,
        roundtrips.1 - roundtrips_before.1,
    );
    let first_message = match (sink_before.last_message, counts.first_message) {
        // Messages of this phase start after those of the previous one.
        (Some(previous), _) => previous.max(since_sink),
        (None, Some(first)) => first,
        (None, None) => since_sink,
    };
    let delivery_secs = counts
        .last_message
        .map_or(wall, |last| last.saturating_sub(since_sink).as_secs_f64());
    Ok(PhaseResult {
        name: name.into(),
        jobs: count,
        recipients_per_job,
        reported_sent,
        delivered,
        delivery_secs,
        stanzas_per_sec: delivered as f64 / delivery_secs.max(1e-9),
        wall_secs: wall,
        herald_cpu_secs: herald_cpu,
        herald_cpu_us_per_msg: herald_cpu * 1e6 / delivered.max(1) as f64,
        herald_cores: herald_cpu / wall,
        loop_thread_cpu_secs: main_thread,
        loop_thread_cores: main_thread / wall,
        event_loop_busy: busy / wall,
        barrier_roundtrip_ms: roundtrip_secs * 1e3 / roundtrip_count.max(1.0),
        pings_answered: counts.pings_answered - sink_before.pings_answered,
        write_stanzas_per_sec: counts.last_message.map_or(0.0, |last| {
            delivered as f64 / last.saturating_sub(first_message).as_secs_f64().max(1e-9)
        }),
        sink_cpu_secs: sink_cpu_seconds(sink) - sink_cpu_before,
    })
}

/// CPU seconds (user + system) the sink's threads have used so far.
pub(super) fn sink_cpu_seconds(sink: &FakeServer) -> f64 {
    sink.thread_ids()
        .iter()
        .filter_map(|tid| stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat")))
        .sum()
}

async fn loop_busy(herald: &Component) -> Result<f64> {
    herald
        .metric("herald_event_loop_busy_seconds_total")
        .await?
        .ok_or_else(|| "no herald_event_loop_busy_seconds_total in /metrics".into())
}

/// Sum and count of `herald_server_roundtrip_seconds`.
async fn roundtrips(herald: &Component) -> Result<(f64, f64)> {
    Ok((
        herald
            .metric("herald_server_roundtrip_seconds_sum")
            .await?
            .unwrap_or(0.0),
        herald
            .metric("herald_server_roundtrip_seconds_count")
            .await?
            .unwrap_or(0.0),
    ))
}

/// CPU seconds of the whole process (every thread).
pub(super) fn cpu_seconds(pid: u32) -> Result<f64> {
    proc_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of the main thread, where Herald's runtime runs.
fn main_thread_cpu_seconds(pid: u32) -> Result<f64> {
    proc_cpu_seconds(&format!("/proc/{pid}/task/{pid}/stat"))
}

pub(super) fn proc_cpu_seconds(path: &str) -> Result<f64> {
    stat_cpu_seconds(path).ok_or_else(|| format!("unreadable {path}").into())
}
