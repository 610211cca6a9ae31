//! The `herald` binary: configuration, logging, runtime and signals; the
//! component itself is [`herald::run`], `herald send` is [`herald::send`],
//! `herald presence`, `online`, `status` and `group` are
//! [`herald::send::control`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::{Config, LogFormat};
use herald::control::{Request, DEFAULT_PAGE};
use herald::send::group::GroupCommand;
use herald::send::SendArgs;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "XMPP component for presence-aware broadcast from AMQP jobs"
)]
struct Cli {
    /// TOML configuration file; every key can also be set as HERALD_<SECTION>__<KEY>.
    #[arg(long, short, env = "HERALD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the component (the default).
    Run,
    /// Load and validate the configuration, print it with secrets masked, and exit.
    CheckConfig,
    /// Publish one job to the configured jobs queue and wait for its report.
    ///
    /// Reads the same configuration as `herald run`, but uses only its amqp
    /// and broadcast settings: the component secret is not needed. The job is
    /// checked as Herald checks it before anything is published.
    ///
    /// Exit status: 0 report received (with --no-wait: job confirmed by the
    /// broker); 1 broker error or timeout; 2 invalid input (command line,
    /// file, configuration or job).
    // Boxed: the arguments of one command run once are no reason to make
    // every `Command` their size.
    Send(Box<SendArgs>),
    /// Ask Herald whether users (bare JIDs) are online and available, and
    /// since when.
    ///
    /// Sends a control request to amqp.control_queue and prints Herald's
    /// reply (JSON; docs/control.md): per user "online", "available",
    /// "resources", "show", and "since" (and "show_since" when later), UTC
    /// to the millisecond. Exit status: 0 an answer; 1 an error reply,
    /// broker error or timeout; 2 invalid configuration.
    Presence {
        #[arg(required = true, value_name = "JID")]
        users: Vec<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Count the users online and available, and list a page of them.
    ///
    /// Prints Herald's reply (JSON): its "next" is the --after of the next page.
    Online {
        /// Users in the page
        #[arg(long, default_value_t = DEFAULT_PAGE)]
        limit: usize,
        /// List users after this JID (the "next" of the page before)
        #[arg(long, value_name = "JID")]
        after: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Cancel a job by its id: if it is going out it stops, if Herald has
    /// not taken it yet it sends nothing when it comes up.
    ///
    /// Prints Herald's reply (JSON): "state" is in_progress, pending or
    /// completed (nothing left to cancel). Answered once Herald's store
    /// has the cancellation.
    Cancel {
        /// The job's "id"
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Herald's version, its connections and its counts (JSON).
    Status {
        #[command(flatten)]
        wait: Wait,
    },
    /// Create, change, read, list and delete the groups jobs can address.
    ///
    /// Prints Herald's reply (JSON; docs/control.md). A change is answered
    /// once Herald's store has it. Exit status as for `herald presence`,
    /// and 2 for a request Herald would refuse (checked before sending).
    Group {
        #[command(subcommand)]
        op: GroupCommand,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(clap::Args)]
struct Wait {
    /// Seconds to wait for the broker and the reply
    #[arg(long, value_name = "SECS", default_value_t = 10, global = true)]
    timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli.config.as_deref();
    match cli.command {
        Some(Command::Send(args)) => return send(config_path, &args),
        Some(Command::Presence { users, wait }) => {
            return control(config_path, Request::Presence { users }, wait)
        }
        Some(Command::Online { limit, after, wait }) => {
            return control(config_path, Request::Online { limit, after }, wait)
        }
        Some(Command::Status { wait }) => return control(config_path, Request::Status, wait),
        Some(Command::Cancel { id, wait }) => {
            return control(config_path, Request::Cancel { id }, wait)
        }
        Some(Command::Group { op, wait }) => {
            return match op.request() {
                Ok(request) => control(config_path, request, wait),
                Err(e) => {
                    eprintln!("herald group: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        _ => {}
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!("{config:#?}");
        for warning in config.warnings() {
            println!("warning: {warning}");
        }
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    // Held to the end: dropping it flushes the lines still queued.
    let _log_writer = init_logging(&config);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(herald::run(config, shutdown_signal())) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "stopped on error");
            ExitCode::FAILURE
        }
    }
}

fn send(config: Option<&std::path::Path>, args: &SendArgs) -> ExitCode {
    let (config, runtime) = match client(config, "herald send") {
        Ok(ready) => ready,
        Err(code) => return code,
    };
    match runtime.block_on(herald::send::run(&config, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald send: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn control(config: Option<&std::path::Path>, request: Request, wait: Wait) -> ExitCode {
    let (config, runtime) = match client(config, "herald") {
        Ok(ready) => ready,
        Err(code) => return code,
    };
    let wait = std::time::Duration::from_secs(wait.timeout);
    match runtime.block_on(herald::send::control::ask(&config, &request, wait)) {
        Ok(reply) => {
            let text = serde_json::to_string_pretty(&reply).expect("replies serialize");
            println!("{text}");
            if reply.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// What a command that talks to the broker needs: the configuration (exit
/// code 2 when it does not load) and a runtime.
fn client(
    config: Option<&std::path::Path>,
    command: &str,
) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    let config = Config::read(config).map_err(|e| {
        eprintln!("{command}: {e}");
        ExitCode::from(2)
    })?;
    let runtime = runtime().ok_or(ExitCode::FAILURE)?;
    Ok((config, runtime))
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("herald: cannot start the runtime: {e}"))
        .ok()
}

/// Log lines go to stdout from a thread of their own: a slow reader of
/// stdout (journald under pressure, a full pipe) must never stall the event
/// loop. Should that thread fall behind by more than its buffer, lines are
/// dropped rather than the loop blocked.
fn init_logging(config: &Config) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown requested");
}
