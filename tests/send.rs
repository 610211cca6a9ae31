//! `herald send` end to end: the real binary as a producer against a real
//! RabbitMQ, with the real `herald` component, Prosody and c2s users on the
//! other side.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use herald_testkit::amqp::{amqp_url, unique_name, Amqp, EventTap};
use herald_testkit::c2s::NS_CLIENT;
use herald_testkit::prosody::Prosody;
use herald_testkit::stack::Stack;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(20);

/// What one `herald send` printed and how it exited.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "herald send exited {:?}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `herald [--config FILE] send ARGS` with `env` (and no other Herald
/// configuration from the test's environment), feeding `stdin`.
async fn herald_send(
    config: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &str,
) -> Ran {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("HERALD_")) {
        command.env_remove(key);
    }
    let mut child = command
        .arg("send")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn herald send");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("herald send did not exit within 60 s")
        .expect("herald send output");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_waits_for_the_report_and_online_users_get_the_message() {
    let mut stack = Stack::<Prosody>::start(&["alice", "bob"]).await;
    let mut alice = stack.online("alice").await;

    // bob is offline; he comes from the recipients file on standard input.
    let args = [
        "--to",
        "alice@localhost",
        "--to-file",
        "-",
        "--body",
        "evacuate <now> & calmly",
        "--subject",
        "Drill",
        "--from",
        "alerts",
        "--id",
        "send-1",
        "--json",
    ];
    let ran = herald_send(
        Some(stack.config_path()),
        &[],
        &args,
        "# on call\n\nbob@localhost\n",
    )
    .await;
    ran.assert_code(0);
    let report: Value = serde_json::from_str(ran.stdout.trim()).expect("--json prints the report");
    assert_eq!(
        report,
        json!({"id": "send-1", "recipients": 2, "sent": 1,
               "skipped": {"offline": 1, "unavailable": 0, "invalid": 0}})
    );
    let message = alice
        .next_received(WAIT)
        .await
        .expect("alice gets the message");
    assert_eq!(message.from, "alerts@broadcast.localhost");
    assert_eq!(message.body, "evacuate <now> & calmly");
    let subject = message
        .stanza
        .get_child("subject", NS_CLIENT)
        .map(|s| s.text());
    assert_eq!(subject.as_deref(), Some("Drill"));

    // Without --id and --json: a generated id and a one-line summary.
    let args = [
        "--to",
        "alice@localhost",
        "--to",
        "bob@localhost",
        "--to",
        "alice@localhost/desk",
        "--body",
        "second",
    ];
    let ran = herald_send(Some(stack.config_path()), &[], &args, "").await;
    ran.assert_code(0);
    let line = ran.stdout.trim();
    assert!(line.starts_with("job herald-send-"), "{line}");
    assert!(
        line.ends_with(": sent 1 of 3 recipients; skipped: 1 offline, 0 unavailable, 1 invalid"),
        "{line}"
    );
    let (_, body, _) = alice
        .next_message(WAIT)
        .await
        .expect("alice gets the second message");
    assert_eq!(body, "second");

    // With --report-names: who was reached and who was missed, by name.
    let args = [
        "--to",
        "alice@localhost",
        "--to",
        "bob@localhost",
        "--body",
        "third",
        "--report-names",
    ];
    let ran = herald_send(Some(stack.config_path()), &[], &args, "").await;
    ran.assert_code(0);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines[0]
            .ends_with(": sent 1 of 2 recipients; skipped: 1 offline, 0 unavailable, 0 invalid"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1..],
        [
            "  sent (1): alice@localhost",
            "  offline (1): bob@localhost"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_exits_once_the_broker_has_the_job_and_the_message_is_delivered() {
    let mut stack = Stack::<Prosody>::start(&["alice"]).await;
    let mut alice = stack.online("alice").await;
    let mut reports = EventTap::bind(&stack.names.events, "job.report").await;

    let args = [
        "--no-wait",
        "--to",
        "alice@localhost",
        "--body",
        "fire and forget",
        "--id",
        "nw-1",
    ];
    let ran = herald_send(Some(stack.config_path()), &[], &args, "").await;
    ran.assert_code(0);
    assert_eq!(ran.stdout.trim(), "published job nw-1");
    let (_, body, _) = alice
        .next_message(WAIT)
        .await
        .expect("alice gets the message");
    assert_eq!(body, "fire and forget");
    let report = reports
        .next_matching("job.report", WAIT, |r| r["id"] == "nw-1")
        .await
        .expect("Herald reports the job");
    assert_eq!(report["sent"], 1, "{report}");
}

/// Without Herald: a queue nobody consumes shows whether anything was published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_exit_2_without_publishing_and_broker_problems_exit_1() {
    let amqp = Amqp::connect().await;
    let jobs = unique_name("herald-test-send.jobs");
    let events = unique_name("herald-test-send.events");
    amqp.channel
        .queue_declare(
            jobs.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("declare the jobs queue");
    let tap = EventTap::bind(&events, "job.report").await;
    let url = amqp_url();
    // Configured from the environment alone: no file, no component secret.
    let env = [
        ("HERALD_AMQP__URL", url.as_str()),
        ("HERALD_AMQP__JOBS_QUEUE", jobs.as_str()),
        ("HERALD_AMQP__EVENTS_EXCHANGE", events.as_str()),
        ("HERALD_BROADCAST__MAX_BODY_BYTES", "100"),
    ];
    let long = "x".repeat(101);
    let invalid: [(&[&str], &str); 5] = [
        (
            &["--to", "@@bad", "--body", "hi"],
            "recipient #0 \"@@bad\" is not a valid JID",
        ),
        (&["--body", "bell \u{7} rings"], "U+0007"),
        (&["--body", "hi", "--from", "a b"], "field `from`"),
        (&["--body", &long], "101 bytes, over the limit of 100"),
        (
            &["--body", "hi", "--policy", "sometimes"],
            "unknown variant `sometimes`",
        ),
    ];
    for (args, reason) in invalid {
        let ran = herald_send(None, &env, args, "").await;
        ran.assert_code(2);
        assert!(ran.stderr.contains(reason), "{args:?}: {}", ran.stderr);
    }
    assert_eq!(
        amqp.message_count(&jobs).await,
        Some(0),
        "an invalid job was published"
    );

    let ran = herald_send(
        None,
        &env,
        &["--no-wait", "--to", "alice@localhost", "--body", "hi"],
        "",
    )
    .await;
    ran.assert_code(0);
    assert_eq!(
        amqp.message_count(&jobs).await,
        Some(1),
        "the valid job is in the queue"
    );

    // Nobody takes the job, so no report comes: a timeout, exit 1.
    let ran = herald_send(
        None,
        &env,
        &["--timeout", "1", "--id", "lonely", "--body", "hi"],
        "",
    )
    .await;
    ran.assert_code(1);
    assert!(
        ran.stderr.contains("no report for job \"lonely\""),
        "{}",
        ran.stderr
    );
    assert_eq!(amqp.message_count(&jobs).await, Some(2));

    // A jobs queue that does not exist: the broker returns the job, exit 1.
    let missing = unique_name("herald-test-send.missing");
    let env = [
        ("HERALD_AMQP__URL", url.as_str()),
        ("HERALD_AMQP__JOBS_QUEUE", missing.as_str()),
    ];
    let ran = herald_send(None, &env, &["--no-wait", "--body", "hi"], "").await;
    ran.assert_code(1);
    assert!(ran.stderr.contains("has no queue"), "{}", ran.stderr);

    amqp.delete_queue(&jobs).await;
    tap.close().await;
    amqp.close().await;
}
