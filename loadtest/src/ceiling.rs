//! `herald-loadtest ceiling`: Herald's own ceiling, with the XMPP server
//! taken out. Herald (the release binary) connects to the [`Sink`], which
//! floods it with N online users; then jobs go through the real RabbitMQ:
//! one job to all N users, then many jobs of one recipient each. The sink
//! counts the messages Herald writes; a queue bound to the events exchange
//! counts the reports. For each size it prints a JSON line, then a Markdown
//! table of all sizes.
//!
//! Herald's CPU time and memory come from `/proc/<pid>/stat` and
//! `/proc/<pid>/status`; the event loop's own busy time from its
//! `herald_event_loop_busy_seconds_total` metric.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::Serialize;

use crate::component::{herald_bin, metric_value, AmqpNames};
use crate::procstat::{stat_cpu_seconds, status_kib};
use crate::reports::{ReportCounts, ReportTap};
use crate::sink::{Sink, SinkOptions};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const COMPONENT_DOMAIN: &str = "broadcast.localhost";
const SERVER_DOMAIN: &str = "localhost";
const CONTACT: &str = "herald@broadcast.localhost";
/// Publishes awaiting their confirm at once.
const PUBLISH_WINDOW: usize = 1024;

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
    /// Where Herald's config and store go (a directory per run, removed after).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
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
    herald_peak_rss_mb: f64,
    /// Everything the sink read from Herald in this run, by kind.
    sink_read: SinkRead,
}

#[derive(Debug, Serialize)]
struct SinkRead {
    messages: u64,
    presences: u64,
    iqs: u64,
}

#[derive(Debug, Serialize)]
struct FloodResult {
    /// Until `herald_online_resources` reached `users`.
    online_secs: f64,
    /// Until Herald's CPU went idle afterwards (store writes included).
    absorbed_secs: f64,
    herald_cpu_secs: f64,
    rss_before_mb: f64,
    rss_online_mb: f64,
    rss_absorbed_mb: f64,
    /// (RSS once absorbed - RSS before) / resources: book, subscription and store caches.
    bytes_per_resource: f64,
    store_mb: f64,
    sink_cpu_secs: f64,
}

#[derive(Debug, Serialize)]
struct PhaseResult {
    name: String,
    jobs: u64,
    recipients_per_job: u64,
    /// Messages the reports say were sent.
    reported_sent: u64,
    /// Messages the sink read.
    delivered: u64,
    /// From the first publish to the last message read.
    delivery_secs: f64,
    stanzas_per_sec: f64,
    /// From the first publish until every report arrived.
    wall_secs: f64,
    herald_cpu_secs: f64,
    herald_cpu_us_per_msg: f64,
    /// Herald's CPU seconds per wall second (all its threads).
    herald_cores: f64,
    /// CPU seconds of Herald's main thread, which runs the event loop and
    /// serializes and writes the stanzas.
    loop_thread_cpu_secs: f64,
    /// The main thread's CPU seconds per wall second: 1.0 is a saturated core.
    loop_thread_cores: f64,
    /// Herald's own `herald_event_loop_busy_seconds_total` per wall second
    /// (handling inputs; socket writes happen outside it).
    event_loop_busy: f64,
    /// Mean round trip of Herald's barrier pings (the sink answers at once).
    barrier_roundtrip_ms: f64,
    /// Barrier and keepalive pings the sink answered.
    pings_answered: u64,
    /// Rate between the first and the last message the sink read.
    write_stanzas_per_sec: f64,
    sink_cpu_secs: f64,
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
    let mut results = Vec::new();
    for &users in &args.users {
        match runtime.block_on(run_size(&args, &herald_bin, users)) {
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

async fn run_size(args: &CeilingArgs, herald_bin: &Path, users: u64) -> Result<SizeResult> {
    let run_id = format!("{:x}{:x}", std::process::id(), nanos_now());
    let dir = args.dir.join(format!("herald-ceiling-{run_id}"));
    std::fs::create_dir_all(&dir)?;
    let names = AmqpNames::unique(&args.amqp_url);
    let result = async {
        let amqp = Broker::connect(&names).await?;
        let secret = format!("ceiling-{run_id}");
        let sink = Sink::start(SinkOptions {
            component_domain: COMPONENT_DOMAIN.into(),
            server_domain: SERVER_DOMAIN.into(),
            contact: CONTACT.into(),
            secret: secret.clone(),
        })?;
        let config = dir.join("herald.toml");
        std::fs::write(
            &config,
            config_text(args, &names, &sink, &secret, &dir, users),
        )?;
        let mut herald = Herald::spawn(herald_bin, &config)?;
        let measured = measure(args, &amqp, &sink, &mut herald, &dir, users).await;
        let stopped = herald.stop();
        amqp.close().await;
        names.delete().await;
        let mut result =
            measured.map_err(|e| format!("{e}\nherald's log:\n{}", herald.log_tail()))?;
        result.herald_peak_rss_mb = stopped.peak_rss_mb;
        Ok::<_, Box<dyn Error>>(result)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    args: &CeilingArgs,
    amqp: &Broker,
    sink: &Sink,
    herald: &mut Herald,
    dir: &Path,
    users: u64,
) -> Result<SizeResult> {
    let step = Duration::from_secs(args.timeout_secs);
    let started = Instant::now();
    wait_until("Herald connected to the sink and taking jobs", step, || {
        herald.check_running()?;
        check_open(sink)?;
        Ok(sink.counts().authenticated && herald.metric("herald_ready")? == Some(1.0))
    })
    .await?;
    eprintln!(
        "ceiling: {users} users: Herald ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let flood = flood(sink, herald, dir, users, step).await?;
    eprintln!("ceiling: {users} users: flood {flood:?}");
    let body = "x".repeat(args.body_bytes.max(1));
    let mut phases = Vec::new();
    let fanout = vec![Job {
        id: "fanout".into(),
        to: (0..users).map(user).collect(),
        body: &body,
    }];
    phases.push(phase(amqp, sink, herald, args, "fanout", fanout, users).await?);
    let single = args.single_jobs.unwrap_or(users.min(100_000));
    let jobs = (0..single)
        .map(|i| Job {
            id: format!("single-{i}"),
            to: vec![user(i % users.max(1))],
            body: &body,
        })
        .collect();
    phases.push(phase(amqp, sink, herald, args, "single", jobs, users).await?);
    let read = sink.counts();
    Ok(SizeResult {
        scenario: "ceiling",
        users,
        flood,
        phases,
        herald_peak_rss_mb: 0.0,
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

async fn flood(
    sink: &Sink,
    herald: &mut Herald,
    dir: &Path,
    users: u64,
    step: Duration,
) -> Result<FloodResult> {
    let rss_before = herald.rss_bytes()?;
    let cpu_before = herald.cpu_seconds()?;
    let sink_cpu_before = sink.cpu_seconds();
    let start = Instant::now();
    sink.flood(0..users);
    wait_until("the flood to be online in Herald", step, || {
        herald.check_running()?;
        check_open(sink)?;
        Ok(herald.metric("herald_online_resources")? == Some(users as f64))
    })
    .await?;
    let online_secs = start.elapsed().as_secs_f64();
    let rss_online = herald.rss_bytes()?;
    // Herald is done with the flood once its CPU goes quiet: the store
    // writer commits subscriptions after the book has them.
    let mut last_busy = Instant::now();
    let mut cpu = herald.cpu_seconds()?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        herald.check_running()?;
        let now = herald.cpu_seconds()?;
        if now - cpu < 0.025 {
            break;
        }
        cpu = now;
        last_busy = Instant::now();
        if start.elapsed() > step {
            return Err("Herald stayed busy after the flood".into());
        }
    }
    let rss_absorbed = herald.rss_bytes()?;
    let mb = |bytes: u64| bytes as f64 / 1e6;
    Ok(FloodResult {
        online_secs,
        absorbed_secs: (last_busy - start).as_secs_f64(),
        herald_cpu_secs: herald.cpu_seconds()? - cpu_before,
        rss_before_mb: mb(rss_before),
        rss_online_mb: mb(rss_online),
        rss_absorbed_mb: mb(rss_absorbed),
        bytes_per_resource: (rss_absorbed as f64 - rss_before as f64) / users.max(1) as f64,
        store_mb: mb(std::fs::metadata(dir.join("herald.redb"))?.len()),
        sink_cpu_secs: sink.cpu_seconds() - sink_cpu_before,
    })
}

#[derive(Serialize)]
struct Job<'a> {
    id: String,
    to: Vec<String>,
    body: &'a str,
}

async fn phase(
    amqp: &Broker,
    sink: &Sink,
    herald: &mut Herald,
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
    let reports_before = amqp.reports();
    let messages_before = sink.counts().messages;
    let cpu_before = herald.cpu_seconds()?;
    let main_before = herald.main_thread_cpu_seconds()?;
    let busy_before = herald.loop_busy()?;
    let roundtrips_before = herald.roundtrips()?;
    let sink_cpu_before = sink.cpu_seconds();
    let sink_before = sink.counts();
    if args.churn > 0 {
        sink.churn(0..users, args.churn);
    }
    let start = Instant::now();
    let since_sink = start - sink.started();
    amqp.publish_all(&payloads).await?;
    drop(payloads);
    let step = Duration::from_secs(args.timeout_secs);
    let waited = wait_until(&format!("the reports of {count} {name} jobs"), step, || {
        herald.check_running()?;
        check_open(sink)?;
        Ok(amqp.reports().jobs - reports_before.jobs >= count)
    })
    .await;
    if args.churn > 0 {
        sink.stop_churn();
    }
    waited?;
    let wall = start.elapsed().as_secs_f64();
    let reported_sent = amqp.reports().sent - reports_before.sent;
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
    let herald_cpu = herald.cpu_seconds()? - cpu_before;
    let busy = herald.loop_busy()? - busy_before;
    let main_thread = herald.main_thread_cpu_seconds()? - main_before;
    let roundtrips = herald.roundtrips()?;
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
        sink_cpu_secs: sink.cpu_seconds() - sink_cpu_before,
    })
}

/// An error once Herald's stream to the sink has ended.
fn check_open(sink: &Sink) -> Result<()> {
    if sink.counts().closed {
        return Err("Herald's stream to the sink ended".into());
    }
    Ok(())
}

/// Polls `ready` every 100 ms until it holds or `limit` passes.
async fn wait_until(
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ready()? {
        if Instant::now() > deadline {
            return Err(format!("gave up waiting for {what} after {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn nanos_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn config_text(
    args: &CeilingArgs,
    names: &AmqpNames,
    sink: &Sink,
    secret: &str,
    dir: &Path,
    users: u64,
) -> String {
    format!(
        r#"[xmpp]
host = "127.0.0.1"
port = {port}
domain = "{COMPONENT_DOMAIN}"
server_domain = "{SERVER_DOMAIN}"
secret = "{secret}"
probe_settle_ms = 100

[amqp]
url = "{url}"
jobs_queue = "{jobs}"
dead_letter_queue = "{dead}"
events_exchange = "{events}"
prefetch = {prefetch}
presence_events = {presence_events}

[broadcast]
max_recipients = {max_recipients}

[http]
listen = "127.0.0.1:0"

[store]
path = "{store}"

[log]
level = "info"
"#,
        port = sink.addr().port(),
        url = args.amqp_url,
        jobs = names.jobs,
        dead = names.dead,
        events = names.events,
        prefetch = args.prefetch,
        presence_events = args.presence_events,
        max_recipients = users.max(100_000),
        store = dir.join("herald.redb").display(),
    )
}

/// The herald process under test.
struct Herald {
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
    http: Arc<Mutex<Option<String>>>,
    peak_rss: u64,
}

/// Log lines kept to explain a failure.
const LOG_TAIL: usize = 200;

struct Stopped {
    peak_rss_mb: f64,
}

impl Herald {
    fn spawn(bin: &Path, config: &Path) -> Result<Herald> {
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let http = Arc::new(Mutex::new(None));
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let (log, http) = (Arc::clone(&log), Arc::clone(&http));
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                    if line.contains("serving /metrics") {
                        let address = line
                            .split("address=")
                            .nth(1)
                            .and_then(|rest| rest.split_whitespace().next());
                        if let (Some(address), Ok(mut http)) = (address, http.lock()) {
                            *http = Some(address.to_string());
                        }
                    }
                    if let Ok(mut log) = log.lock() {
                        if log.len() == LOG_TAIL {
                            log.pop_front();
                        }
                        log.push_back(line);
                    }
                }
            });
        }
        Ok(Herald {
            child,
            log,
            http,
            peak_rss: 0,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!("herald exited: {status}").into()),
        }
    }

    fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|log| log.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// The value of one series of /metrics (`None` before HTTP is up).
    fn metric(&self, series: &str) -> Result<Option<f64>> {
        let Some(address) = self.http.lock().ok().and_then(|a| a.clone()) else {
            return Ok(None);
        };
        let text = http_get(&address, "/metrics")?;
        Ok(metric_value(&text, series))
    }

    fn loop_busy(&self) -> Result<f64> {
        self.metric("herald_event_loop_busy_seconds_total")?
            .ok_or_else(|| "no herald_event_loop_busy_seconds_total in /metrics".into())
    }

    /// Sum and count of `herald_server_roundtrip_seconds`.
    fn roundtrips(&self) -> Result<(f64, f64)> {
        Ok((
            self.metric("herald_server_roundtrip_seconds_sum")?
                .unwrap_or(0.0),
            self.metric("herald_server_roundtrip_seconds_count")?
                .unwrap_or(0.0),
        ))
    }

    /// CPU seconds of the whole process (every thread).
    fn cpu_seconds(&self) -> Result<f64> {
        proc_cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    /// CPU seconds of the main thread, where Herald's runtime runs.
    fn main_thread_cpu_seconds(&self) -> Result<f64> {
        proc_cpu_seconds(&format!("/proc/{0}/task/{0}/stat", self.pid()))
    }

    fn rss_bytes(&mut self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let (rss, hwm) = (status_kib(&status, "VmRSS:"), status_kib(&status, "VmHWM:"));
        self.peak_rss = self.peak_rss.max(hwm.unwrap_or(0) * 1024);
        Ok(rss.ok_or("no VmRSS in /proc/<pid>/status")? * 1024)
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    fn stop(&mut self) -> Stopped {
        let _ = self.rss_bytes();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        Stopped {
            peak_rss_mb: self.peak_rss as f64 / 1e6,
        }
    }
}

fn proc_cpu_seconds(path: &str) -> Result<f64> {
    stat_cpu_seconds(path).ok_or_else(|| format!("unreadable {path}").into())
}

/// A minimal HTTP/1.1 GET on loopback; returns the body of a 200 answer.
fn http_get(address: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")).into());
    }
    Ok(body.to_string())
}

/// The run's link to RabbitMQ: a confirming publisher of jobs and the
/// reports Herald publishes.
struct Broker {
    connection: Connection,
    publish: Channel,
    jobs_queue: String,
    reports: ReportTap,
}

impl Broker {
    async fn connect(names: &AmqpNames) -> Result<Broker> {
        let url = &names.url;
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot reach RabbitMQ at {url}: {e}"))?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        // Herald declares the same queue, the same way.
        publish
            .queue_declare(
                names.jobs.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await?;
        Ok(Broker {
            connection,
            publish,
            jobs_queue: names.jobs.clone(),
            reports: ReportTap::bind(names).await?,
        })
    }

    fn reports(&self) -> ReportCounts {
        self.reports.counts()
    }

    /// Publishes every payload to the jobs queue, persistent, with at most
    /// [`PUBLISH_WINDOW`] confirms outstanding; fails on a nack.
    async fn publish_all(&self, payloads: &[Vec<u8>]) -> Result<()> {
        let mut pending = VecDeque::with_capacity(PUBLISH_WINDOW);
        for payload in payloads {
            if pending.len() == PUBLISH_WINDOW {
                confirmed(pending.pop_front()).await?;
            }
            let confirm = self
                .publish
                .basic_publish(
                    "".into(),
                    self.jobs_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    payload,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await?;
            pending.push_back(confirm);
        }
        while let Some(confirm) = pending.pop_front() {
            confirmed(Some(confirm)).await?;
        }
        Ok(())
    }

    async fn close(self) {
        self.reports.close().await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

async fn confirmed(confirm: Option<lapin::PublisherConfirm>) -> Result<()> {
    let Some(confirm) = confirm else {
        return Ok(());
    };
    if confirm.await?.is_nack() {
        return Err("the broker refused a job".into());
    }
    Ok(())
}

fn markdown(results: &[SizeResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| users | flood online s | absorbed s | Herald CPU s | RSS before → after MB | bytes/resource | store MB |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let f = &r.flood;
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} → {:.0} | {:.0} | {:.0} |",
            r.users,
            f.online_secs,
            f.absorbed_secs,
            f.herald_cpu_secs,
            f.rss_before_mb,
            f.rss_absorbed_mb,
            f.bytes_per_resource,
            f.store_mb
        );
    }
    let _ = writeln!(
        out,
        "\n| users | phase | jobs × recipients | delivered | stanzas/s | Herald CPU µs/msg | Herald cores | loop thread cores | sink CPU s |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        for p in &r.phases {
            let _ = writeln!(
                out,
                "| {} | {} | {} × {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} |",
                r.users,
                p.name,
                p.jobs,
                p.recipients_per_job,
                p.delivered,
                p.stanzas_per_sec,
                p.herald_cpu_us_per_msg,
                p.herald_cores,
                p.loop_thread_cores,
                p.sink_cpu_secs
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_series_of_prometheus_text() {
        let text = "# HELP herald_online_resources x\nherald_online_resources 1000\n\
                    herald_jobs_total{outcome=\"delivered\"} 7\nherald_online_resources_x 3\n";
        assert_eq!(metric_value(text, "herald_online_resources"), Some(1000.0));
        assert_eq!(
            metric_value(text, "herald_jobs_total{outcome=\"delivered\"}"),
            Some(7.0)
        );
        assert_eq!(metric_value(text, "herald_ready"), None);
    }

    #[test]
    fn reads_kilobytes_from_proc_status() {
        let status = "Name:\therald\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
    }
}
