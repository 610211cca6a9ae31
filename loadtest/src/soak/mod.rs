//! `soak`: jobs of mixed sizes published for minutes against a real XMPP
//! server and RabbitMQ while Herald is killed and restarted, the server
//! restarted, the component stream cut and the broker node killed and
//! restarted, at times drawn from a printed seed. At the end every job
//! must have exactly one own report, every user that stayed logged in
//! must have every message meant for them, and no more recipients may be
//! reached more than once than the reports' `possible_duplicates` declared.

mod check;
mod faults;
mod ledger;
mod publish;
mod reports;
mod schedule;
mod users;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use serde::Serialize;

use crate::broker::{Broker, Names};
use crate::component::{Component, ERROR_LOG_LINES};
use crate::harness::HarnessArgs;
use crate::herald_config::{herald_config, StoreKind};
use crate::servers::{Population, Server, ServerKind};
use check::Figures;
use faults::Parts;
use herald_testkit::cut_proxy::CutProxy;
use herald_testkit::draw::Draw;
use herald_testkit::herald::{herald_bin, XmppTarget};
use herald_testkit::rabbitmq::PrivateBroker;
use reports::{ReportReader, Source};
use schedule::FaultKind;

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// ejabberd by default: it keeps reading the component while thousands
    /// of users log in again after a restart.
    #[arg(long, value_enum, default_value = "ejabberd")]
    server: ServerKind,
    /// Users logged in throughout (again after each server restart).
    #[arg(long, default_value_t = 3_000)]
    users: usize,
    /// Seconds of publishing and faults.
    #[arg(long, default_value_t = 300)]
    secs: u64,
    /// The schedule's seed [default: drawn from the clock, and printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Jobs per second.
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// Kinds of fault to inject, comma-separated. With broker-kill the soak
    /// boots a RabbitMQ node of its own and uses it instead of --amqp-url.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [FaultKind::HeraldKill, FaultKind::ServerRestart,
                              FaultKind::StreamCut, FaultKind::BrokerKill])]
    faults: Vec<FaultKind>,
    /// Shortest and longest gap between two faults, in seconds.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 40])]
    fault_gap_secs: Vec<u64>,
    /// Longest wait for the last reports once publishing has stopped, and
    /// for Herald to see every user online after a restart.
    #[arg(long, default_value_t = 300.0)]
    drain_secs: f64,
    /// Where Herald's store lives (`store.backend`): with `stream`, on the
    /// broker the soak kills.
    #[arg(long, value_enum, default_value = "file")]
    store: StoreKind,
    #[command(flatten)]
    harness: HarnessArgs,
}

/// The line a soak prints at its end.
#[derive(Debug, Serialize)]
struct Outcome {
    scenario: &'static str,
    server: &'static str,
    seed: u64,
    secs: u64,
    users: usize,
    /// "shared" (--amqp-url) or "private" (a node the soak booted).
    broker: &'static str,
    /// "file" or "stream" (`store.backend`).
    store: &'static str,
    faults: BTreeMap<&'static str, usize>,
    stream_cuts_made: usize,
    /// Jobs published again because the broker did not confirm them.
    jobs_published_again: u64,
    #[serde(flatten)]
    figures: Figures,
}

pub async fn run(args: SoakArgs) -> Result<bool, String> {
    let [shortest, longest] = args.fault_gap_secs[..] else {
        return Err("--fault-gap-secs takes two numbers: shortest,longest".into());
    };
    if args.users == 0 || args.rate <= 0.0 || shortest == 0 || shortest > longest {
        return Err("--users and --rate must be positive, the fault gaps ordered".into());
    }
    let seed = args.seed.unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
        now.map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("soak: seed {seed} (replay with --seed {seed})");
    let mut node = args.faults.contains(&FaultKind::BrokerKill).then(boot_node);
    let url = node
        .as_ref()
        .map_or_else(|| args.harness.amqp_url.clone(), PrivateBroker::url);
    let broker = Broker::connect(&url, Names::unique("herald-soak")).await?;
    let population = Population::new(args.users, 0);
    let outcome = async {
        let mut server = Server::launch(args.server, &population).await?;
        let outcome = with_server(
            &args,
            seed,
            &broker,
            node.as_mut(),
            &mut server,
            population.users,
        )
        .await;
        server.stop();
        outcome
    }
    .await;
    broker.clean_up().await;
    // Killed: nothing on the soak's own node matters any more.
    drop(node);
    let outcome = outcome?;
    println!("{}", serde_json::to_string(&outcome).expect("serializes"));
    let failures = outcome.figures.failures();
    for suspect in &outcome.figures.suspects {
        eprintln!("soak: job {suspect}");
    }
    for failure in &failures {
        eprintln!("soak FAILED: {failure} (seed {seed})");
    }
    Ok(failures.is_empty())
}

/// A RabbitMQ node of the soak's own, which broker kills may hit without
/// touching the shared broker.
fn boot_node() -> PrivateBroker {
    let boot = Instant::now();
    let node = tokio::task::block_in_place(PrivateBroker::start);
    eprintln!(
        "soak: a RabbitMQ node of its own on {}, booted in {:.1} s",
        node.address(),
        boot.elapsed().as_secs_f64()
    );
    node
}

async fn with_server(
    args: &SoakArgs,
    seed: u64,
    broker: &Broker,
    node: Option<&mut PrivateBroker>,
    server: &mut Server,
    names: Vec<String>,
) -> Result<Outcome, String> {
    let epoch = Instant::now();
    let clock = move || epoch.elapsed().as_nanos() as u64;
    let timeout = Duration::from_secs_f64(args.drain_secs);
    let gaps = (args.fault_gap_secs[0], args.fault_gap_secs[1]);
    let schedule = schedule::faults(&mut Draw::new(seed), &args.faults, args.secs, gaps);
    // Drawn apart from the faults, so that choosing other kinds of fault
    // keeps the same jobs.
    let mut job_draw = Draw::new(seed ^ 0x005E_ED0F_70B5);
    let jobs = (args.secs as f64 * args.rate).ceil() as usize;
    let audiences = (0..jobs)
        .map(|_| schedule::audience(&mut job_draw, names.len()))
        .collect();

    // Herald reaches the server through the proxy, which cuts streams.
    let proxy = CutProxy::start(server.api().component_port()).await;
    let target = XmppTarget {
        port: proxy.port(),
        ..server.xmpp_target()
    };
    let mut config = herald_config(&target, broker.url(), broker.names());
    config.amqp.presence_events = false;
    config.store.backend = args.store.backend();
    let bin = herald_bin(args.harness.herald_bin.clone())?;
    let mut herald = Component::start_herald(&bin, &config, &std::env::temp_dir()).await?;

    let ledger = ledger::Shared::default();
    let component = &broker.names().component;
    let source = Source {
        url: broker.url().to_string(),
        events: component.events.clone(),
        queue: format!("{}.soak", broker.names().reports),
    };
    let reports = ReportReader::start(source, Arc::clone(&ledger), clock).await?;
    let jids: Vec<String> = names.iter().map(|user| server.api().jid(user)).collect();
    let in_flight = args.harness.logins_in_flight;
    let mut users = users::Users::log_in(server, names, in_flight, epoch).await?;
    herald.wait_online_resources(users.count(), timeout).await?;
    ledger.lock().unwrap().steady.push((clock(), None));

    let republished = Arc::new(AtomicU64::new(0));
    let publisher = publish::Publisher {
        url: broker.url().to_string(),
        queue: component.jobs.clone(),
        jids: Arc::new(jids),
        audiences,
        rate: args.rate,
        ledger: Arc::clone(&ledger),
        epoch,
        patience: timeout,
        republished: Arc::clone(&republished),
    };
    let start = Instant::now();
    let publishing = tokio::spawn(publisher.run());
    let private = node.is_some();
    let mut parts = Parts {
        herald: &mut herald,
        server,
        proxy: &proxy,
        broker: node,
        users: &mut users,
        ledger: Arc::clone(&ledger),
        epoch,
        timeout,
    };
    let outcome = async {
        let injected = parts.inject(&schedule, start).await?;
        publishing
            .await
            .map_err(|e| format!("publisher task: {e}"))??;
        eprintln!("soak: publishing done; waiting for every report");
        drain(parts.herald, &ledger, timeout).await?;
        Ok::<_, String>(injected)
    }
    .await;
    let outcome = outcome.map_err(|e| {
        format!(
            "{e}\n--- last lines of Herald ---\n{}",
            herald.log_tail(ERROR_LOG_LINES)
        )
    });
    users.settle(Duration::from_secs(30)).await;
    let receipts = users.finish().await;
    herald.stop().await;
    reports.stop().await;
    let injected = outcome?;
    let figures = check::check(&ledger.lock().unwrap(), &receipts);
    Ok(Outcome {
        scenario: "soak",
        server: args.server.name(),
        seed,
        secs: args.secs,
        users: receipts.len(),
        broker: if private { "private" } else { "shared" },
        store: match args.store {
            StoreKind::File => "file",
            StoreKind::Stream => "stream",
        },
        faults: injected.into_iter().map(|(k, n)| (k.name(), n)).collect(),
        stream_cuts_made: proxy.cuts(),
        jobs_published_again: republished.load(Ordering::Relaxed),
        figures,
    })
}

/// Waits until every published job has its own report, or `timeout`
/// passed (the check then counts the unreported ones); an error if Herald
/// exited by itself.
async fn drain(
    herald: &mut Component,
    ledger: &ledger::Shared,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        herald.check_running()?;
        let unreported = ledger.lock().unwrap().unreported();
        if unreported == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("soak: {unreported} jobs still unreported after {timeout:?}");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
