//! `herald-loadtest`: drives a real XMPP server and RabbitMQ to measure
//! Herald against a Node.js baseline (see loadtest/README.md).

mod ceiling;
mod sink;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Load tests for Herald")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Herald's own ceiling with the XMPP server taken out: a XEP-0114 sink
    /// floods it with online users and counts what it writes.
    Ceiling(ceiling::CeilingArgs),
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Ceiling(args) => ceiling::run(args),
    }
}
