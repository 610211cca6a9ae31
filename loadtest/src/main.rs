//! `herald-loadtest`: drives a real XMPP server and RabbitMQ to measure
//! Herald against a Node.js baseline (see loadtest/README.md).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Load tests for Herald")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() {
    let cli = Cli::parse();
    match cli.command {}
}
