//! `overtake`: the urgent lane against a big job on a real server. N users
//! log in; a job to R recipients (the N online users, then users the
//! server has never seen, who count offline) goes to the jobs queue, and
//! once the users have received a tenth of its messages a one-recipient
//! job is published: to the urgent queue, then, as the baseline in the
//! same Herald, to the jobs queue behind the big one. Timed from the small
//! job's publish: its message at its user, its report, the big job's last
//! message and its report. One Herald per `xmpp.server_queue_ms` asked,
//! rounds interleaved, the users logged in again for each.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::body;
use crate::broker::{Broker, Names};
use crate::component::{Component, ERROR_LOG_LINES};
use crate::harness::HarnessArgs;
use crate::herald_config::herald_config;
use crate::publisher::publish_payloads;
use crate::servers::{Population, Server, ServerKind};
use crate::swarm::{Logins, Swarm};
use herald_testkit::herald::herald_bin;

/// How often the users' counters and the reports are looked at.
const POLL: Duration = Duration::from_millis(1);

#[derive(Args, Debug)]
pub struct OvertakeArgs {
    #[arg(long, value_enum, default_value = "prosody")]
    server: ServerKind,
    /// Logged-in users: the big job's messages.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// The big job's recipients: the users, then users never seen
    /// (offline), up to this many.
    #[arg(long, default_value_t = 100_000)]
    recipients: usize,
    /// Herald's `xmpp.server_queue_ms`, comma-separated: a Herald each.
    #[arg(long, value_delimiter = ',', default_values_t = [50, 100_000])]
    server_queue_ms: Vec<u64>,
    /// Each round runs every `server_queue_ms` once, in order.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[command(flatten)]
    harness: HarnessArgs,
    /// Longest wait for any one step.
    #[arg(long, default_value_t = 120.0)]
    timeout_secs: f64,
    /// File the JSON lines are appended to.
    #[arg(long, default_value = "loadtest-results.jsonl")]
    results: PathBuf,
}

/// One small job beside one big job.
#[derive(Debug, Serialize)]
struct Overtake {
    scenario: &'static str,
    server: &'static str,
    round: usize,
    server_queue_ms: u64,
    /// Where the small job went: `urgent` or `jobs`.
    queue: &'static str,
    users: usize,
    big_recipients: usize,
    #[serde(flatten)]
    timed: Timed,
}

/// What one pair measured.
#[derive(Debug, Serialize)]
struct Timed {
    /// Herald's `herald_read_window_stanzas` as the small job was published.
    read_window: Option<f64>,
    /// From the small job's publish: its message at its user.
    small_read_ms: f64,
    small_report_ms: f64,
    /// From the small job's publish: the big job's last message at its user.
    big_read_ms: f64,
    big_report_ms: f64,
    overtook: bool,
}

/// Runs the rounds; an error if a message went missing or a report was
/// wrong, false if an urgent job at the least `server_queue_ms` asked was
/// reported after the big job.
pub async fn run(args: OvertakeArgs) -> Result<bool, String> {
    if args.users == 0 || args.recipients < args.users {
        return Err("--recipients must be at least --users, which must be positive".into());
    }
    let broker = Broker::connect(&args.harness.amqp_url, Names::unique("herald-loadtest")).await?;
    let population = Population::new(args.users, 0);
    let outcome = async {
        let mut server = Server::launch(args.server, &population).await?;
        let outcome = with_server(&args, &broker, &server, &population).await;
        server.stop();
        outcome
    }
    .await;
    broker.clean_up().await;
    let rows = outcome?;
    println!("{}", markdown(&rows));
    // The largest server_queue_ms asked is the baseline; at the smallest
    // the urgent job must overtake.
    let least = args.server_queue_ms.iter().min();
    Ok(rows
        .iter()
        .filter(|row| row.queue == "urgent" && Some(&row.server_queue_ms) == least)
        .all(|row| row.timed.overtook))
}

async fn with_server(
    args: &OvertakeArgs,
    broker: &Broker,
    server: &Server,
    population: &Population,
) -> Result<Vec<Overtake>, String> {
    let epoch = Instant::now();
    let api = server.api();
    let mut to: Vec<String> = population.users.iter().map(|u| api.jid(u)).collect();
    to.extend((args.users..args.recipients).map(|i| format!("never{i}@{}", api.domain())));
    let bin = herald_bin(args.harness.herald_bin.clone())?;
    let mut rows = Vec::new();
    let mut seq = 0;
    for round in 1..=args.rounds {
        for &server_queue_ms in &args.server_queue_ms {
            let mut config = herald_config(&server.xmpp_target(), broker.url(), broker.names());
            config.amqp.presence_events = false;
            config.xmpp.server_queue_ms = server_queue_ms;
            // The never-seen recipients count offline without a probe each.
            config.xmpp.unknown_probe_ttl_secs = 0;
            let herald = Component::start_herald(&bin, &config, &std::env::temp_dir()).await?;
            let timeout = Duration::from_secs_f64(args.timeout_secs);
            let outcome = async {
                // Logged in after Herald started, so that it has their
                // presence: its store is new each time.
                let in_flight = args.harness.logins_in_flight;
                let logins = Logins::available(api, &population.users, in_flight);
                let swarm = Swarm::log_in(logins, epoch).await?;
                herald.wait_online_resources(args.users, timeout).await?;
                for urgent in [true, false] {
                    seq += 2;
                    let pair = Pair {
                        broker,
                        swarm: &swarm,
                        herald: &herald,
                        to: &to,
                        users: args.users,
                        seq,
                        epoch,
                        timeout,
                    };
                    let timed = pair.run(urgent).await?;
                    let row = Overtake {
                        scenario: "overtake",
                        server: args.server.name(),
                        round,
                        server_queue_ms,
                        queue: if urgent { "urgent" } else { "jobs" },
                        users: args.users,
                        big_recipients: to.len(),
                        timed,
                    };
                    crate::emit(&row, &args.results)?;
                    rows.push(row);
                }
                swarm.finish().await;
                Ok::<(), String>(())
            }
            .await;
            let outcome = outcome.map_err(|e| {
                format!(
                    "{e}\n--- last lines of Herald ---\n{}",
                    herald.log_tail(ERROR_LOG_LINES)
                )
            });
            herald.stop().await;
            outcome?;
        }
    }
    Ok(rows)
}

/// A big job and a small one, timed.
struct Pair<'a> {
    broker: &'a Broker,
    swarm: &'a Swarm,
    herald: &'a Component,
    to: &'a [String],
    users: usize,
    /// The small job's sequence number; the big job's is one less.
    seq: u64,
    epoch: Instant,
    timeout: Duration,
}

impl Pair<'_> {
    async fn run(&self, urgent: bool) -> Result<Timed, String> {
        let names = &self.broker.names().component;
        let (big_id, small_id) = (format!("big-{}", self.seq), format!("small-{}", self.seq));
        let big = json!({
            "id": big_id,
            "to": self.to,
            "body": body::encode(self.seq - 1),
        });
        let small = json!({
            "id": small_id,
            "to": [self.to[0]],
            "body": body::encode(self.seq),
        });
        let counters = self.swarm.counters();
        let received = || counters.received.load(Ordering::Relaxed);
        let (received_before, reports_before) = (received(), self.broker.reports());
        self.publish(&names.jobs, &big).await?;
        let tenth = received_before + (self.users as u64 / 10).max(1);
        self.wait("a tenth of the big job", || received() >= tenth)
            .await?;
        let read_window = self.herald.metric("herald_read_window_stanzas").await?;
        self.swarm.watch(self.seq);
        let published = self.epoch.elapsed();
        self.publish(if urgent { &names.urgent } else { &names.jobs }, &small)
            .await?;

        let all = received_before + self.users as u64 + 1;
        let (mut small_report, mut big_read, mut big_report) = (None, None, None);
        let since = |at: Duration| at.saturating_sub(published).as_secs_f64() * 1e3;
        self.wait("both reports and every message", || {
            let now = self.epoch.elapsed();
            if small_report.is_none() && self.broker.reported(&small_id) {
                small_report = Some(since(now));
            }
            if big_report.is_none() && self.broker.reported(&big_id) {
                big_report = Some(since(now));
            }
            if big_read.is_none() && received() >= all {
                big_read = Some(since(now));
            }
            small_report.is_some() && big_report.is_some() && big_read.is_some()
        })
        .await?;
        let reports = self.broker.reports();
        if reports.jobs - reports_before.jobs != 2 || reports.incomplete > 0 {
            return Err(format!(
                "reports wrong: {reports:?} after {reports_before:?}"
            ));
        }
        // Anything more would be a duplicate.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if received() != all {
            return Err(format!(
                "the users got {} messages, not {}",
                received() - received_before,
                all - received_before
            ));
        }
        let small_read = counters
            .watched_at_ns()
            .map(|ns| since(Duration::from_nanos(ns)))
            .ok_or("the small job's message was not seen")?;
        let (small_report, big_report) = (small_report.unwrap_or(0.0), big_report.unwrap_or(0.0));
        Ok(Timed {
            read_window,
            small_read_ms: small_read,
            small_report_ms: small_report,
            big_read_ms: big_read.unwrap_or(0.0),
            big_report_ms: big_report,
            overtook: small_report < big_report,
        })
    }

    async fn publish(&self, queue: &str, job: &serde_json::Value) -> Result<(), String> {
        let payload = serde_json::to_vec(job).map_err(|e| e.to_string())?;
        publish_payloads(
            self.broker,
            queue,
            Arc::new(vec![payload]),
            1,
            None,
            self.epoch,
        )
        .await?;
        Ok(())
    }

    /// Polls `done` every [`POLL`] until it holds, or fails after the
    /// timeout.
    async fn wait(&self, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        while !done() {
            if Instant::now() > deadline {
                return Err(format!("{what}: not within {:?}", self.timeout));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

fn markdown(rows: &[Overtake]) -> String {
    let mut out = String::from(
        "| round | server_queue_ms | small job on | read window | its message after | its report after | big job's last message after | big job's report after | overtook |\n\
         |---:|---:|---|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let t = &r.timed;
        let window = t.read_window.map_or("-".into(), |w| format!("{w:.0}"));
        out.push_str(&format!(
            "| {} | {} | {} | {window} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} |\n",
            r.round,
            r.server_queue_ms,
            r.queue,
            t.small_read_ms,
            t.small_report_ms,
            t.big_read_ms,
            t.big_report_ms,
            t.overtook
        ));
    }
    out
}
