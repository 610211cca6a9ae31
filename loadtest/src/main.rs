//! `herald-loadtest`: drives a real XMPP server and RabbitMQ to measure
//! Herald against a Node.js baseline (see loadtest/README.md).

mod body;
mod broker;
mod ceiling;
mod churn;
mod component;
mod cpu;
mod groups;
mod harness;
mod herald_config;
mod job_reports;
mod overtake;
mod presence_check;
mod procstat;
mod publisher;
mod report;
mod run;
mod scenario;
mod server_ceiling;
mod servers;
mod soak;
mod stats;
mod store_open;
mod swarm;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use component::ComponentKind;
use harness::HarnessArgs;
use report::RunResult;
use run::{RunSpec, Settings};
use scenario::{Overrides, Scenario};
use servers::ServerKind;

#[derive(Parser)]
#[command(version, about = "Load tests for Herald")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// 10,000 users online, 10,000 jobs of one recipient each (the paper's Table I).
    Table1(RunArgs),
    /// Table I plus 5,000 users logging in and out (Table II); on ejabberd by default.
    Table2(RunArgs),
    /// One job to 10,000 recipients.
    Fanout(RunArgs),
    /// Table I's shape at 1,000, 5,000, 10,000, 15,000 and 50,000 users
    /// (a size the open-files limit cannot hold is skipped with a note).
    Scale(RunArgs),
    /// Herald's own ceiling with the XMPP server taken out: a XEP-0114 sink
    /// floods it with online users and counts what it writes.
    Ceiling(ceiling::CeilingArgs),
    /// The XMPP server's own ceiling: a component that costs nothing writes
    /// one message per logged-in user as fast as the server reads them.
    ServerCeiling(server_ceiling::ServerCeilingArgs),
    /// 10,000 users, 1,000 groups of 1,000 of them made through the control
    /// plane, one job per group from a prefilled queue; the server's
    /// ceiling measured first. Herald only: the baseline has no groups.
    Groups(groups::GroupsArgs),
    /// The urgent lane on a real server: a one-recipient job published to
    /// the urgent queue, and to the jobs queue as the baseline, while a job
    /// to 100,000 recipients (10,000 online) goes out; timed at its user.
    Overtake(overtake::OvertakeArgs),
    /// Jobs of mixed sizes for minutes while Herald is killed, the server
    /// restarted and the stream cut at seeded times: nothing may be lost.
    Soak(soak::SoakArgs),
    /// How long a start takes to read a store of a million subscribers,
    /// from its file and from a stream on the broker.
    StoreOpen(store_open::StoreOpenArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// XMPP server [default: prosody; ejabberd for table2].
    #[arg(long, value_enum)]
    server: Option<ServerKind>,
    /// ejabberd nodes joined into one cluster, the users logged in to them
    /// in turn, Herald attached to the first (its `xmpp.servers` lists them
    /// all); several (comma-separated) make one setup each, interleaved
    /// like the components [default: 1, a single server].
    #[arg(long, value_delimiter = ',')]
    ejabberd_nodes: Vec<usize>,
    /// Components to measure, comma-separated [default: herald, plus baseline
    /// when loadtest/baseline-node has node_modules].
    #[arg(long, value_enum, value_delimiter = ',')]
    components: Vec<ComponentKind>,
    /// Logged-in users; several (comma-separated) make one setup each.
    #[arg(long, value_delimiter = ',')]
    users: Vec<usize>,
    /// Jobs to publish [default: one per user; fanout: 1].
    #[arg(long)]
    jobs: Option<u64>,
    /// Recipients per job [default: 1; fanout: every user].
    #[arg(long)]
    recipients: Option<usize>,
    /// Users logging in and out during the run [default: 0; table2: 5000].
    #[arg(long)]
    churn: Option<usize>,
    /// Share of users (0 to 1) whose presence is `away`: jobs skip them.
    #[arg(long, default_value_t = 0.0)]
    away_share: f64,
    /// Repetitions of each setup and component.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Jobs per second [default: as fast as the broker confirms].
    #[arg(long)]
    rate: Option<f64>,
    #[command(flatten)]
    harness: HarnessArgs,
    /// Herald's `amqp.prefetch` (unacknowledged jobs in flight) [default:
    /// Herald's own default].
    #[arg(long)]
    herald_prefetch: Option<u16>,
    /// The Node.js baseline's directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/baseline-node"))]
    baseline_dir: PathBuf,
    /// The baseline's AMQP prefetch (the paper's component used 100).
    #[arg(long, default_value_t = 100)]
    baseline_prefetch: u32,
    /// Seconds of churn before the first job.
    #[arg(long, default_value_t = 3.0)]
    churn_warmup_secs: f64,
    /// Give up waiting for messages after this many seconds without one.
    #[arg(long, default_value_t = 40.0)]
    idle_timeout_secs: f64,
    /// Give up waiting for messages this many seconds after the first job.
    #[arg(long, default_value_t = 600.0)]
    timeout_secs: f64,
    /// File the JSON lines are appended to.
    #[arg(long, default_value = "loadtest-results.jsonl")]
    results: PathBuf,
    /// Pause the component (SIGSTOP) while every job is published, then time
    /// it from its resume: the component's own rate, the publisher left out.
    #[arg(long)]
    prefill: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (scenario, args) = match cli.command {
        Command::Table1(args) => (Scenario::Table1, args),
        Command::Table2(args) => (Scenario::Table2, args),
        Command::Fanout(args) => (Scenario::Fanout, args),
        Command::Scale(args) => (Scenario::Scale, args),
        Command::Ceiling(args) => {
            ceiling::run(args);
            return ExitCode::SUCCESS;
        }
        Command::ServerCeiling(args) => {
            return exit_code(runtime().block_on(run_server_ceiling(args)));
        }
        Command::Groups(args) => {
            return exit_code(runtime().block_on(run_groups(args)));
        }
        Command::Overtake(args) => {
            return exit_code(runtime().block_on(overtake::run(args)));
        }
        Command::Soak(args) => {
            return exit_code(runtime().block_on(soak::run(args)));
        }
        Command::StoreOpen(args) => {
            return exit_code(runtime().block_on(store_open::run(args)));
        }
    };
    exit_code(runtime().block_on(run_scenario(scenario, args)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn exit_code(outcome: Result<bool, String>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("herald-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every setup of the scenario, each component `repeat` times
/// (interleaved, so drifting machine load hits both alike). Ok(true) when
/// every run delivered everything and reported every job correctly.
async fn run_scenario(scenario: Scenario, args: RunArgs) -> Result<bool, String> {
    if !(0.0..=1.0).contains(&args.away_share) {
        return Err("--away-share must be between 0 and 1".into());
    }
    let components = choose_components(&args.components, &args.baseline_dir)?;
    let server = args.server.unwrap_or(scenario.default_server());
    let node_counts = match args.ejabberd_nodes.as_slice() {
        [] => vec![1],
        counts => counts.to_vec(),
    };
    if node_counts.contains(&0) || (server != ServerKind::Ejabberd && node_counts != [1]) {
        return Err("--ejabberd-nodes counts nodes (at least 1) of --server ejabberd".into());
    }
    let settings = Settings {
        amqp_url: args.harness.amqp_url.clone(),
        herald_bin: args.harness.herald_bin.clone(),
        herald_prefetch: args.herald_prefetch,
        baseline_dir: args.baseline_dir.clone(),
        baseline_prefetch: args.baseline_prefetch,
        rate: args.rate,
        publish_channels: args.harness.publish_channels,
        logins_in_flight: args.harness.logins_in_flight,
        churn_warmup: Duration::from_secs_f64(args.churn_warmup_secs),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout_secs),
        timeout: Duration::from_secs_f64(args.timeout_secs),
        prefill: args.prefill,
    };
    if components.iter().any(|c| c.is_herald()) {
        herald_testkit::herald::herald_bin(settings.herald_bin.clone())?;
    }
    let overrides = Overrides {
        users: args.users.clone(),
        jobs: args.jobs,
        recipients: args.recipients,
        churn: args.churn,
    };
    let fd_limit = procstat::open_files_limit();
    let mut results: Vec<RunResult> = Vec::new();
    let mut notes = Vec::new();
    for shape in scenario.shapes(&overrides) {
        // The swarm and the server each hold a socket per user and churner.
        let needed = (shape.users + shape.churn + 200) as u64;
        if let Some(limit) = fd_limit.filter(|&l| needed > l) {
            let note = format!(
                "skipped {} with {} users + {} churning: needs about {needed} open files per process \
                 (swarm and server alike), the limit here is {limit}",
                scenario.name(),
                shape.users,
                shape.churn
            );
            eprintln!("{note}");
            notes.push(note);
            continue;
        }
        let setups: Vec<(usize, ComponentKind)> = node_counts
            .iter()
            .flat_map(|&nodes| components.iter().map(move |&component| (nodes, component)))
            .collect();
        for repetition in 1..=args.repeat {
            for &(nodes, component) in &setups {
                let spec = RunSpec {
                    scenario: scenario.name().to_string(),
                    server,
                    nodes,
                    component,
                    run: repetition,
                    users: shape.users,
                    away: (shape.users as f64 * args.away_share).round() as usize,
                    churn: shape.churn,
                    jobs: shape.jobs,
                    recipients_per_job: shape.recipients_per_job,
                };
                eprintln!(
                    "{} on {}: {} run {repetition}/{}, {} users, {} churning, {} jobs x {} recipients",
                    scenario.name(),
                    run::server_label(server, nodes),
                    component.name(),
                    args.repeat,
                    shape.users,
                    shape.churn,
                    shape.jobs,
                    shape.recipients_per_job
                );
                let result = run::run(&spec, &settings).await;
                emit(&result, &args.results)?;
                results.push(result);
            }
        }
    }
    Ok(summarize(&results, &notes))
}

async fn run_server_ceiling(args: server_ceiling::ServerCeilingArgs) -> Result<bool, String> {
    let results = server_ceiling::run(&args).await;
    for result in &results {
        emit(result, &args.results)?;
    }
    Ok(summarize(&results, &[]))
}

async fn run_groups(args: groups::GroupsArgs) -> Result<bool, String> {
    let (results, notes) = groups::run(&args).await;
    for result in &results {
        emit(result, &args.results)?;
    }
    Ok(summarize(&results, &notes))
}

/// Prints the Markdown table and the notes; true when every run delivered
/// everything.
fn summarize(results: &[RunResult], notes: &[String]) -> bool {
    println!("\n{}", report::markdown(results));
    for note in notes {
        println!("Note: {note}");
    }
    let all_delivered = results.iter().all(RunResult::is_accurate);
    if !all_delivered {
        eprintln!(
            "herald-loadtest: some runs failed, delivered less than 100% or reported it wrong"
        );
    }
    all_delivered
}

/// The components asked for, or by default Herald plus the baseline when
/// it is installed (`npm ci` done in its directory).
fn choose_components(
    asked: &[ComponentKind],
    baseline_dir: &Path,
) -> Result<Vec<ComponentKind>, String> {
    let installed =
        baseline_dir.join("component.js").is_file() && baseline_dir.join("node_modules").is_dir();
    if asked.is_empty() {
        if installed {
            return Ok(vec![ComponentKind::Herald, ComponentKind::Baseline]);
        }
        eprintln!(
            "note: the Node.js baseline is not installed in {} (npm ci there); measuring Herald only",
            baseline_dir.display()
        );
        return Ok(vec![ComponentKind::Herald]);
    }
    if asked.contains(&ComponentKind::Baseline) && !installed {
        return Err(format!(
            "the Node.js baseline is not installed: run npm ci in {}",
            baseline_dir.display()
        ));
    }
    let mut components = asked.to_vec();
    components.dedup();
    Ok(components)
}

/// Prints the run's JSON line and appends it to the results file.
fn emit(result: &impl serde::Serialize, path: &Path) -> Result<(), String> {
    let line = serde_json::to_string(result).expect("a result serializes");
    println!("{line}");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    writeln!(file, "{line}").map_err(|e| format!("write {}: {e}", path.display()))
}
