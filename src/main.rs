//! The `herald` binary: configuration, logging, runtime and signals; the
//! component itself is [`herald::run`], `herald send` is [`herald::send`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::{Config, LogFormat};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Send(args)) = &cli.command {
        return send(cli.config.as_deref(), args);
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
    let config = match Config::read(config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("herald send: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(herald::send::run(&config, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald send: {e}");
            ExitCode::from(e.exit_code())
        }
    }
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
