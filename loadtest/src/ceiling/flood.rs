//! The ceiling's first step: the sink logs N users in at once, and what
//! Herald spends on them: time, CPU and memory, right after it has absorbed
//! them and once what a login storm leaves behind has gone (the sender
//! limiter's buckets refill and are swept at the next keepalive).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::phase::{cpu_seconds, sink_cpu_seconds};
use super::{check_alive, Result, Wait};
use crate::component::Component;
use crate::procstat::rss_kib;
use herald_testkit::fake_server::FakeServer;

/// Herald's `xmpp.keepalive_secs` in a ceiling run: its sweeps of
/// per-user state run at each keepalive.
pub const KEEPALIVE_SECS: u64 = 1;
/// How long after the flood Herald's per-user rate-limit buckets have
/// refilled (its default burst of 50 at 10 a second) and been swept.
const SETTLE: Duration = Duration::from_secs(5 + 2 * KEEPALIVE_SECS);

#[derive(Debug, Serialize)]
pub struct FloodResult {
    /// Until `herald_online_resources` reached `users`.
    pub(super) online_secs: f64,
    /// Until Herald's CPU went idle afterwards (store writes included).
    pub(super) absorbed_secs: f64,
    pub(super) herald_cpu_secs: f64,
    pub(super) rss_before_mb: f64,
    pub(super) rss_online_mb: f64,
    pub(super) rss_absorbed_mb: f64,
    /// (RSS once absorbed - RSS before) / resources: book, subscription and store caches.
    pub(super) bytes_per_resource: f64,
    /// RSS once the flood's leftovers are swept (see [`SETTLE`]).
    pub(super) rss_settled_mb: f64,
    /// (RSS settled - RSS before) / resources: what a million users online
    /// and idle cost.
    pub(super) bytes_per_resource_settled: f64,
    pub(super) store_mb: f64,
    pub(super) sink_cpu_secs: f64,
}

pub async fn flood(
    sink: &FakeServer,
    herald: &mut Component,
    users: u64,
    step: Duration,
) -> Result<FloodResult> {
    let pid = herald.pid();
    let rss_before = rss_bytes(pid)?;
    let cpu_before = cpu_seconds(pid)?;
    let sink_cpu_before = sink_cpu_seconds(sink);
    let start = Instant::now();
    sink.flood(0..users);
    let wait = Wait::new("the flood to be online in Herald", step);
    loop {
        check_alive(herald, sink)?;
        if herald.metric("herald_online_resources").await? == Some(users as f64) {
            break;
        }
        wait.tick().await?;
    }
    let online_secs = start.elapsed().as_secs_f64();
    let rss_online = rss_bytes(pid)?;
    // Herald is done with the flood once its CPU goes quiet: the store
    // writer commits subscriptions after the book has them.
    let mut last_busy = Instant::now();
    let mut cpu = cpu_seconds(pid)?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        herald.check_running()?;
        let now = cpu_seconds(pid)?;
        if now - cpu < 0.025 {
            break;
        }
        cpu = now;
        last_busy = Instant::now();
        if start.elapsed() > step {
            return Err("Herald stayed busy after the flood".into());
        }
    }
    let rss_absorbed = rss_bytes(pid)?;
    let herald_cpu_secs = cpu_seconds(pid)? - cpu_before;
    tokio::time::sleep(SETTLE.saturating_sub(last_busy.elapsed())).await;
    check_alive(herald, sink)?;
    let rss_settled = rss_bytes(pid)?;
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let per_resource = |rss: u64| (rss as f64 - rss_before as f64) / users.max(1) as f64;
    Ok(FloodResult {
        online_secs,
        absorbed_secs: (last_busy - start).as_secs_f64(),
        herald_cpu_secs,
        rss_before_mb: mb(rss_before),
        rss_online_mb: mb(rss_online),
        rss_absorbed_mb: mb(rss_absorbed),
        bytes_per_resource: per_resource(rss_absorbed),
        rss_settled_mb: mb(rss_settled),
        bytes_per_resource_settled: per_resource(rss_settled),
        // No file with the store in a stream.
        store_mb: std::fs::metadata(herald.store_path()).map_or(0.0, |file| mb(file.len())),
        sink_cpu_secs: sink_cpu_seconds(sink) - sink_cpu_before,
    })
}

pub fn rss_bytes(pid: u32) -> Result<u64> {
    Ok(rss_kib(pid).ok_or("no VmRSS in /proc/<pid>/status")? * 1024)
}
