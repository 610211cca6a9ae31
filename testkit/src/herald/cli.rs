//! The `herald` commands that talk to a running Herald (`presence`,
//! `online`, `status`, `group ...`), run as an operator would.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::herald_bin;

/// Runs `herald --config CONFIG ARGS` and returns its reply (stdout as
/// JSON), failing unless it exits `code`. The test's own `HERALD_*`
/// variables are not passed on: the config file is all it reads.
pub async fn herald_cli(config: &Path, args: &[&str], code: i32) -> Value {
    let bin = herald_bin(None).unwrap_or_else(|e| panic!("{e}"));
    let mut command = tokio::process::Command::new(bin);
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("HERALD_")) {
        command.env_remove(key);
    }
    let output = command
        .arg("--config")
        .arg(config)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("herald exits within 60 s")
        .expect("herald runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "herald {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} printed {stdout}: {e}"))
}
