//! Arguments every run of Herald under load takes, as they are said once
//! for all the scenarios that start it.

use std::path::PathBuf;

use clap::Args;

/// How a run publishes its jobs, logs its users in, reaches the broker
/// and finds Herald.
#[derive(Args, Debug)]
pub struct HarnessArgs {
    /// AMQP channels publishing at once (jobs are spread over them).
    #[arg(long, default_value_t = 4)]
    pub publish_channels: usize,
    /// Logins in flight at once (swarm and churn).
    #[arg(long, default_value_t = 200)]
    pub logins_in_flight: usize,
    #[arg(
        long,
        env = "HERALD_TEST_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// The herald binary [default: `herald` next to this binary].
    #[arg(long)]
    pub herald_bin: Option<PathBuf>,
}
