//! `herald-loadtest ceiling`: Herald's own ceiling, with the XMPP server
//! taken out. Herald (the release binary) connects to the test kit's
//! [`FakeServer`] (the sink), which floods it with N online users; then jobs go through the real RabbitMQ:
//! one job to all N users, then many jobs of one recipient each. The sink
//! counts the messages Herald writes; a queue bound to the events exchange
//! counts the reports. For each size it prints a JSON line, then a Markdown
//! table of all sizes.
//!
//! Herald's CPU time and memory come from `/proc/<pid>/stat` and
//! `/proc/<pid>/status`; the event loop's own busy time from its
//! `herald_event_loop_busy_seconds_total` metric.

mod bare;
mod brokers;
mod flood;
mod markdown;
mod overtake;
mod phase;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::broker::{Broker, Names};
use crate::component::{Component, LOG_LINES};
use crate::herald_config::{herald_config, StoreKind};
use crate::procstat;
use bare::{bare_consumer, BareResult};
use brokers::{Brokers, JobQueues};
use flood::{flood, rss_bytes, FloodResult, KEEPALIVE_SECS};
use herald_testkit::fake_server::{FakeServer, Options};
use herald_testkit::herald::herald_bin;
use markdown::markdown;
use overtake::{overtake, OvertakeResult};
use phase::{phase, PhaseResult};

pub(crate) type Result<T> = std::result::Result<T, Box<dyn Error>>;

const COMPONENT_DOMAIN: &str = "broadcast.localhost";
const SERVER_DOMAIN: &str = "localhost";
const CONTACT: &str = "herald@broadcast.localhost";

#[derive(Debug, Args)]
pub struct CeilingArgs {
    /// Online users to flood in, one resource each; a comma-separated list
    /// runs one fresh Herald per size.
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    users: Vec<u64>,
    /// Jobs of one recipient each in the second phase [default: users, at most 100000].
    #[arg(long)]
    single_jobs: Option<u64>,
    /// Unavailable/available pairs per second the sink sends while jobs run.
    /// Messages then match the reports' `sent`, not the user count.
    #[arg(long, default_value_t = 0)]
    churn: u32,
    /// Bytes in each message body.
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// Herald's `amqp.prefetch`.
    #[arg(long, default_value_t = 64)]
    prefetch: u16,
    /// Publish a `presence.changed` event per presence change, as Herald
    /// does by default; off here so the flood measures Herald, not RabbitMQ.
    #[arg(long)]
    presence_events: bool,
    /// The herald binary [default: `herald` next to this program].
    #[arg(long)]
    herald_bin: Option<PathBuf>,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// RabbitMQ nodes of the run's own instead of `--amqp-url`: 1, or a
    /// cluster of more (Herald given every node's URL).
    #[arg(long, default_value_t = 0)]
    rabbitmq_nodes: usize,
    /// The type of Herald's queues (`amqp.queue_type`) and the bare
    /// consumer's.
    #[arg(long, value_enum, default_value = "classic")]
    queue_type: JobQueues,
    /// Where Herald's store lives (`store.backend`).
    #[arg(long, value_enum, default_value = "file")]
    store: StoreKind,
    /// Where Herald's config and store go (a directory per size, removed after).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Then measure the urgent lane: a one-recipient job on the urgent
    /// queue, and on the jobs queue, while a job to this many users (at
    /// most all) is going out.
    #[arg(long, value_name = "RECIPIENTS")]
    overtake: Option<u64>,
    /// Longest wait for any one step (flood, each job phase).
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Debug, Serialize)]
struct SizeResult {
    scenario: &'static str,
    users: u64,
    flood: FloodResult,
    phases: Vec<PhaseResult>,
    /// With `--overtake`: the urgent lane, then the jobs queue.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    overtakes: Vec<OvertakeResult>,
    /// The same one-recipient jobs through a consumer that only reports
    /// and acknowledges: the broker's limit.
    bare: BareResult,
    /// The broker's CPU (every node's) per one-recipient job, while Herald
    /// took them and while the bare consumer did; absent when unreadable.
    broker_cpu_us_per_job: Option<BrokerCpu>,
    /// Herald's peak RSS from the job to every user on (its peak is started
    /// over just before that job).
    herald_peak_rss_mb: f64,
    /// Herald's peak RSS during the job to every user, over its RSS just
    /// before it (the users online and idle).
    fanout_peak_over_idle_mb: f64,
    /// Everything the sink read from Herald in this run, by kind.
    sink_read: SinkRead,
}

#[derive(Debug, Serialize)]
struct BrokerCpu {
    herald: f64,
    bare: f64,
}

#[derive(Debug, Serialize)]
struct SinkRead {
    messages: u64,
    presences: u64,
    iqs: u64,
}

/// Runs the scenario and prints its results; exits non-zero on failure.
pub fn run(args: CeilingArgs) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => exit(&format!("cannot start the runtime: {e}")),
    };
    let herald_bin = match herald_bin(args.herald_bin.clone()) {
        Ok(path) => path,
        Err(e) => exit(&e.to_string()),
    };
    eprintln!("ceiling: herald binary {}", herald_bin.display());
    let brokers = Brokers::start(args.rabbitmq_nodes, &args.amqp_url);
    eprintln!(
        "ceiling: {}, {:?} queues, the store in a {:?}",
        brokers.describe(),
        args.queue_type,
        args.store
    );
    let mut results = Vec::new();
    for &users in &args.users {
        match runtime.block_on(run_size(&args, &brokers, &herald_bin, users)) {
            Ok(result) => {
                println!("{}", serde_json::to_string(&result).unwrap_or_default());
                results.push(result);
            }
            Err(e) => exit(&format!("{users} users: {e}")),
        }
    }
    print!("{}", markdown(&results));
}

fn exit(message: &str) -> ! {
    eprintln!("herald-loadtest ceiling: {message}");
    std::process::exit(1)
}

async fn run_size(
    args: &CeilingArgs,
    brokers: &Brokers,
    herald_bin: &Path,
    users: u64,
) -> Result<SizeResult> {
    let names = Names::unique("herald-ceiling");
    let jobs_arguments = args.queue_type.arguments();
    let broker = Broker::connect_declaring(&brokers.url(), names, jobs_arguments).await?;
    let result = run_size_with(args, brokers, herald_bin, &broker, users).await;
    broker.clean_up().await;
    result
}

async fn run_size_with(
    args: &CeilingArgs,
    brokers: &Brokers,
    herald_bin: &Path,
    broker: &Broker,
    users: u64,
) -> Result<SizeResult> {
    let secret = format!("ceiling-{}", herald_testkit::random_hex());
    let sink = FakeServer::with(Options {
        component_domain: COMPONENT_DOMAIN.into(),
        server_domain: SERVER_DOMAIN.into(),
        contact: CONTACT.into(),
        secret,
        record: false,
    })?;
    let xmpp = sink.target();
    let mut config = herald_config(&xmpp, broker.url(), broker.names());
    brokers.configure(&mut config, args.queue_type);
    config.store.backend = args.store.backend();
    config.amqp.prefetch = args.prefetch;
    config.amqp.presence_events = args.presence_events;
    config.xmpp.probe_settle_ms = 100;
    config.xmpp.keepalive_secs = KEEPALIVE_SECS;
    config.broadcast.max_recipients = users.max(100_000) as usize;
    let started = Instant::now();
    let mut herald = Component::start_herald(herald_bin, &config, &args.dir).await?;
    let measured = measure(args, brokers, broker, &sink, &mut herald, users, started).await;
    let peak_rss_kib = procstat::peak_rss_kib(herald.pid()).unwrap_or(0);
    let measured =
        measured.map_err(|e| format!("{e}\nherald's log:\n{}", herald.log_tail(LOG_LINES)));
    herald.stop().await;
    let mut result = measured?;
    result.herald_peak_rss_mb = (peak_rss_kib * 1024) as f64 / 1e6;
    Ok(result)
}

async fn measure(
    args: &CeilingArgs,
    brokers: &Brokers,
    broker: &Broker,
    sink: &FakeServer,
    herald: &mut Component,
    users: u64,
    started: Instant,
) -> Result<SizeResult> {
    let step = Duration::from_secs(args.timeout_secs);
    let wait = Wait::new("Herald connected to the sink and taking jobs", step);
    loop {
        check_alive(herald, sink)?;
        if sink.counts().connections > 0 && herald.metric("herald_ready").await? == Some(1.0) {
            break;
        }
        wait.tick().await?;
    }
    eprintln!(
        "ceiling: {users} users: Herald ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let flood = flood(sink, herald, users, step).await?;
    eprintln!("ceiling: {users} users: flood {flood:?}");
    let body = "x".repeat(args.body_bytes.max(1));
    let mut phases = Vec::new();
    let fanout = vec![Job {
        id: "fanout".into(),
        to: (0..users).map(user).collect(),
        body: &body,
    }];
    let idle = rss_bytes(herald.pid())?;
    procstat::reset_peak_rss(herald.pid())?;
    phases.push(phase(broker, sink, herald, args, "fanout", fanout, users).await?);
    let fanout_peak = procstat::peak_rss_kib(herald.pid()).ok_or("no VmHWM")? * 1024;
    let single = args.single_jobs.unwrap_or(users.min(100_000));
    let jobs: Vec<Job> = (0..single)
        .map(|i| Job {
            id: format!("single-{i}"),
            to: vec![user(i % users.max(1))],
            body: &body,
        })
        .collect();
    let payloads = jobs
        .iter()
        .map(serde_json::to_vec)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let broker_cpu_before = brokers.cpu_seconds();
    phases.push(phase(broker, sink, herald, args, "single", jobs, users).await?);
    let broker_cpu_herald = brokers.cpu_seconds();
    let bare = bare_consumer(
        broker,
        args.queue_type,
        payloads.into(),
        args.prefetch,
        step,
    )
    .await?;
    let broker_cpu_us_per_job = match (broker_cpu_before, broker_cpu_herald, brokers.cpu_seconds())
    {
        (Some(before), Some(herald), Some(bare)) => Some(BrokerCpu {
            herald: (herald - before) * 1e6 / single.max(1) as f64,
            bare: (bare - herald) * 1e6 / single.max(1) as f64,
        }),
        _ => None,
    };
    let mut overtakes = Vec::new();
    if let Some(recipients) = args.overtake {
        for urgent in [true, false] {
            let to = (0..users.min(recipients)).map(user).collect();
            overtakes.push(overtake(broker, sink, herald, to, &body, urgent, step).await?);
        }
    }
    let read = sink.counts();
    Ok(SizeResult {
        scenario: "ceiling",
        users,
        flood,
        phases,
        overtakes,
        bare,
        broker_cpu_us_per_job,
        herald_peak_rss_mb: 0.0,
        fanout_peak_over_idle_mb: (fanout_peak as f64 - idle as f64) / 1e6,
        sink_read: SinkRead {
            messages: read.messages,
            presences: read.presences,
            iqs: read.iqs,
        },
    })
}

fn user(i: u64) -> String {
    format!("u{i}@{SERVER_DOMAIN}")
}

#[derive(Serialize)]
pub(crate) struct Job<'a> {
    pub(crate) id: String,
    pub(crate) to: Vec<String>,
    pub(crate) body: &'a str,
}

/// An error once Herald has exited or its stream to the sink has ended.
pub(crate) fn check_alive(herald: &mut Component, sink: &FakeServer) -> Result<()> {
    herald.check_running()?;
    if sink.counts().closed {
        return Err("Herald's stream to the sink ended".into());
    }
    Ok(())
}

/// A bounded wait, polled every 100 ms (or as [`Wait::every`] says).
pub(crate) struct Wait {
    what: String,
    limit: Duration,
    deadline: Instant,
    every: Duration,
}

impl Wait {
    pub(crate) fn new(what: impl Into<String>, limit: Duration) -> Wait {
        Wait {
            what: what.into(),
            limit,
            deadline: Instant::now() + limit,
            every: Duration::from_millis(100),
        }
    }

    /// Polled every `every` instead.
    pub(crate) fn every(self, every: Duration) -> Wait {
        Wait { every, ..self }
    }

    /// Sleeps until the next poll; an error once the limit has passed.
    pub(crate) async fn tick(&self) -> Result<()> {
        if Instant::now() > self.deadline {
            return Err(format!("gave up waiting for {} after {:?}", self.what, self.limit).into());
        }
        tokio::time::sleep(self.every).await;
        Ok(())
    }
}
