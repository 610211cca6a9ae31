//! The example producers (examples/producers/) as an application would run
//! them: a child process publishing a job to the real RabbitMQ, the real
//! `herald` binary delivering it through Prosody to a c2s user, and the
//! producer printing the report.
//!
//! These tests do not skip. They need Python with pika and Node with
//! amqplib, found through `HERALD_TEST_PYTHON` (default `python3`) and
//! `HERALD_TEST_NODE` (default `node`); `.ci/run` installs both.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use herald_testkit::amqp::amqp_url;
use herald_testkit::prosody::Prosody;
use herald_testkit::stack::Stack;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn producers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/producers")
}

/// A Python that can `import pika`, or a panic that says how to get one.
fn python() -> String {
    let python = std::env::var("HERALD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let works = Command::new(&python)
        .args(["-c", "import pika"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        works,
        "{python} cannot import pika. Install it with\n  \
         python3 -m venv /var/tmp/herald-py && \
         /var/tmp/herald-py/bin/pip install -r examples/producers/python/requirements.txt\n\
         and run the tests with HERALD_TEST_PYTHON=/var/tmp/herald-py/bin/python (.ci/run does this)"
    );
    python
}

/// A Node with examples/producers/node's packages installed, or a panic that
/// says how to get them.
fn node() -> String {
    let node = std::env::var("HERALD_TEST_NODE").unwrap_or_else(|_| "node".into());
    let works = Command::new(&node)
        .args(["-e", "require('amqplib')"])
        .current_dir(producers_dir().join("node"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        works,
        "{node} cannot load amqplib for examples/producers/node. Install Node 18 or later and run\n  \
         (cd examples/producers/node && npm ci)\n\
         (.ci/run does this; HERALD_TEST_NODE names another node binary)"
    );
    node
}

/// Runs a producer against `stack`'s queue and exchange, asks it to send
/// `body` to alice (online) and bob (offline), and checks that alice gets
/// the message and the producer printed the job's report.
async fn producer_delivers_and_prints_the_report(program: &str, script: &str) {
    let mut stack = Stack::<Prosody>::start(&["alice", "bob"]).await;
    let mut alice = stack.online("alice").await;
    let body = format!("from the {script} producer <&>");
    let mut command = tokio::process::Command::new(program);
    let output = command
        .arg(producers_dir().join(script))
        .args([body.as_str(), "alice@localhost", "bob@localhost"])
        .current_dir(producers_dir().join(Path::new(script).parent().unwrap()))
        .env("HERALD_AMQP__URL", amqp_url())
        .env("HERALD_AMQP__JOBS_QUEUE", &stack.names.jobs)
        .env("HERALD_AMQP__EVENTS_EXCHANGE", &stack.names.events)
        .env("REPORT_TIMEOUT", "30")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap_or_else(|_| panic!("{script} did not exit within 60 s"))
        .unwrap_or_else(|e| panic!("cannot run {program} {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\nstdout: {stdout}\nstderr: {stderr}\nherald:\n{}",
        output.status,
        stack.herald.log_text()
    );

    let (_, received, _) = alice
        .next_message(WAIT)
        .await
        .expect("alice gets the message");
    assert_eq!(received, body);

    let mut lines = stdout.lines();
    let id = lines
        .next()
        .and_then(|line| line.strip_prefix("published "))
        .unwrap_or_else(|| panic!("{script} did not print the job's id first: {stdout}"));
    let report: Value = lines
        .next()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("{script} did not print the report: {stdout}"));
    assert_eq!(
        report,
        json!({"id": id, "recipients": 2, "sent": 1,
               "skipped": {"offline": 1, "unavailable": 0, "invalid": 0}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_producer_delivers_and_prints_the_report() {
    producer_delivers_and_prints_the_report(&python(), "python/send_job.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_producer_delivers_and_prints_the_report() {
    producer_delivers_and_prints_the_report(&node(), "node/send_job.js").await;
}
