//! `groups`: many messages to thousands of groups of thousands of users
//! each. N users log in, G groups of M members drawn from them are made
//! through Herald's control plane (`group.put`, timed), then one job per
//! group goes out from a queue filled while Herald was paused. Beside it,
//! in the same invocation and just before, the server's own ceiling
//! (`server-ceiling`) for the same users. The Node.js baseline has no
//! groups, so it has no run here.

mod control;
mod draw;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::body;
use crate::broker::{Broker, Names};
use crate::component::{Component, ERROR_LOG_LINES};
use crate::cpu::CpuWindows;
use crate::harness::HarnessArgs;
use crate::herald_config::herald_config;
use crate::procstat;
use crate::publisher::publish_payloads;
use crate::report::{tally, RunResult};
use crate::run::{broker_port, wait_for};
use crate::server_ceiling::{self, ServerCeilingArgs};
use crate::servers::{Population, Server, ServerKind};
use crate::swarm::{Logins, Swarm};
use herald_testkit::herald::herald_bin;

#[derive(Args, Debug)]
// Two of the shared flags keep the words this scenario's help has always
// given them (it has no churn, and publishes every job of one queue).
#[command(
    mut_arg("publish_channels", |arg| arg.help("AMQP channels publishing the jobs at once")),
    mut_arg("logins_in_flight", |arg| arg.help(None::<&str>))
)]
pub struct GroupsArgs {
    #[arg(long, value_enum, default_value = "prosody")]
    server: ServerKind,
    /// Logged-in users, from whom the groups' members are drawn.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Groups, each addressed by one job.
    #[arg(long, default_value_t = 1_000)]
    groups: usize,
    /// Members of each group, distinct users drawn at random.
    #[arg(long, default_value_t = 1_000)]
    members: usize,
    /// Seed of the draw: the same seed, the same groups.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    harness: HarnessArgs,
    /// Give up waiting for messages (or group answers) after this many
    /// seconds without one.
    #[arg(long, default_value_t = 40.0)]
    idle_timeout_secs: f64,
    /// Give up waiting for messages this many seconds after the resume.
    #[arg(long, default_value_t = 600.0)]
    timeout_secs: f64,
    /// File the JSON lines are appended to.
    #[arg(long, default_value = "loadtest-results.jsonl")]
    pub results: PathBuf,
}

/// The server's ceiling, then Herald's run; and notes for the summary.
pub async fn run(args: &GroupsArgs) -> (Vec<RunResult>, Vec<String>) {
    let ceiling = ServerCeilingArgs::once(
        args.server,
        args.users,
        args.harness.logins_in_flight,
        args.idle_timeout_secs,
        args.results.clone(),
    );
    let mut results = server_ceiling::run(&ceiling).await;
    eprintln!(
        "groups on {}: {} users, {} groups x {} members",
        args.server.name(),
        args.users,
        args.groups,
        args.members
    );
    let mut result = RunResult::new("groups", args.server, "herald", 1);
    result.users = args.users;
    result.jobs = args.groups as u64;
    result.recipients_per_job = args.members.min(args.users);
    result.expected = result.jobs * result.recipients_per_job as u64;
    result.prefilled = true;
    if let Err(e) = measure(args, &mut result).await {
        result.error = Some(e);
    }
    let mut notes = vec![
        "the Node.js baseline has no groups (its jobs name their recipients in `to`): \
         Herald only, no baseline figure"
            .to_string(),
    ];
    notes.extend(per_message(&result));
    if let Some(ceiling) = results.first().filter(|c| c.error.is_none()) {
        notes.push(format!(
            "the server's own ceiling in this invocation ({} users, one message each): {:.0} msg/s; \
             Herald's groups run reached {:.0}% of it",
            ceiling.users,
            ceiling.throughput_msg_s,
            100.0 * result.throughput_msg_s / ceiling.throughput_msg_s
        ));
    }
    if let Some([one, five, fifteen]) = procstat::load_average() {
        notes.push(format!(
            "load average at the end: {one:.2} {five:.2} {fifteen:.2} on {} CPUs",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ));
    }
    results.push(result);
    (results, notes)
}

/// Group creation and CPU per message of each party, for the summary.
fn per_message(result: &RunResult) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(secs) = result.groups_created_s {
        notes.push(format!(
            "{} groups of {} members made through group.put in {secs:.2} s ({:.0} members/s)",
            result.jobs,
            result.recipients_per_job,
            result.expected as f64 / secs
        ));
    }
    let micros = |cpu: Option<f64>| match cpu {
        Some(cpu) if result.delivered > 0 => {
            format!("{:.2}", cpu * 1e6 / result.delivered as f64)
        }
        _ => "-".into(),
    };
    notes.push(format!(
        "CPU per message delivered (µs): Herald {}, {} {}, RabbitMQ {}, load test {}",
        micros(result.component_cpu_s),
        result.server,
        micros(result.server_cpu_s),
        micros(result.broker_cpu_s),
        micros(result.loadtest_cpu_s)
    ));
    notes
}

async fn measure(args: &GroupsArgs, result: &mut RunResult) -> Result<(), String> {
    let broker = Broker::connect(&args.harness.amqp_url, Names::unique("herald-loadtest")).await?;
    let outcome = async {
        let population = Population::new(args.users, 0);
        let mut server = Server::launch(args.server, &population).await?;
        let outcome = with_server(args, result, &broker, &server, &population).await;
        server.stop();
        outcome
    }
    .await;
    broker.clean_up().await;
    outcome
}

async fn with_server(
    args: &GroupsArgs,
    result: &mut RunResult,
    broker: &Broker,
    server: &Server,
    population: &Population,
) -> Result<(), String> {
    let bin = herald_bin(args.harness.herald_bin.clone())?;
    let mut config = herald_config(&server.xmpp_target(), broker.url(), broker.names());
    // Nothing consumes them here.
    config.amqp.presence_events = false;
    let herald = Component::start_herald(&bin, &config, &std::env::temp_dir()).await?;
    let outcome = drive(args, result, broker, server, population, &herald).await;
    let outcome = outcome.map_err(|e| {
        format!(
            "{e}\n--- last lines of Herald ---\n{}",
            herald.log_tail(ERROR_LOG_LINES)
        )
    });
    herald.stop().await;
    outcome
}

async fn drive(
    args: &GroupsArgs,
    result: &mut RunResult,
    broker: &Broker,
    server: &Server,
    population: &Population,
    herald: &Component,
) -> Result<(), String> {
    let epoch = Instant::now();
    let api = server.api();
    let logins = Logins::available(api, &population.users, args.harness.logins_in_flight);
    let swarm = Swarm::log_in(logins, epoch).await?;
    herald
        .wait_online_resources(args.users, Duration::from_secs(120))
        .await?;

    let jids: Vec<String> = population.users.iter().map(|u| api.jid(u)).collect();
    let groups: Vec<Vec<&str>> = draw::draw(args.seed, args.users, args.groups, args.members)
        .into_iter()
        .map(|members| members.into_iter().map(|i| jids[i].as_str()).collect())
        .collect();
    let idle_timeout = Duration::from_secs_f64(args.idle_timeout_secs);
    let created = control::put_groups(broker, &groups, idle_timeout).await?;
    result.groups_created_s = Some(created.as_secs_f64());
    eprintln!(
        "  {} groups made in {:.2} s",
        groups.len(),
        created.as_secs_f64()
    );

    let jobs: Vec<Vec<u8>> = (0..groups.len())
        .map(|seq| {
            let job = json!({
                "id": format!("loadtest-{seq}"),
                "groups": [control::group_name(seq)],
                "body": body::encode(seq as u64),
            });
            serde_json::to_vec(&job).expect("a job serializes")
        })
        .collect();
    let broker_pid = procstat::listener_pid(broker_port(broker.url()));
    herald.pause()?;
    let queue = &broker.names().component.jobs;
    let published = publish_payloads(
        broker,
        queue,
        Arc::new(jobs),
        args.harness.publish_channels,
        None,
        epoch,
    )
    .await;
    let cpu = CpuWindows::start(Some(herald.pid()), &server.pids(), broker_pid);
    let resumed = epoch.elapsed().as_nanos() as u64;
    herald.resume();
    let (published, _) = published?;
    wait_for(
        "messages",
        result.expected,
        || swarm.counters().received.load(Ordering::Relaxed),
        idle_timeout,
        Duration::from_secs_f64(args.timeout_secs),
    )
    .await;
    cpu.record(result);
    result.component_peak_rss_mib =
        procstat::peak_rss_kib(herald.pid()).map(|kib| kib as f64 / 1024.0);
    let receipts = swarm.finish().await;
    result.record(&tally(&published, Some(resumed), &receipts, &[]));
    // Reports trail their jobs' messages: Herald sends first.
    wait_for(
        "reports",
        result.jobs,
        || broker.reports().jobs,
        idle_timeout,
        Duration::from_secs_f64(args.timeout_secs),
    )
    .await;
    result.record_reports(broker.reports());
    Ok(())
}
