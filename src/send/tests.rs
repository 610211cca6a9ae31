use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    send: SendArgs,
}

fn args(line: &[&str]) -> Result<SendArgs, clap::Error> {
    let argv = std::iter::once("send").chain(line.iter().copied());
    Cli::try_parse_from(argv).map(|cli| cli.send)
}

fn limits() -> crate::broadcast::JobLimits {
    Config::default().job_limits().unwrap()
}

#[test]
fn flags_become_the_contract_fields() {
    let args = args(&[
        "--to",
        "a@localhost",
        "--to",
        "b@localhost",
        "--body",
        "hi",
        "--subject",
        "s",
        "--type",
        "headline",
        "--policy",
        "online",
        "--from",
        "alerts",
        "--id",
        "j1",
        "--expires-at",
        "2026-12-06T12:00:00Z",
        "--storage",
        "no-store",
    ])
    .unwrap();
    let json: serde_json::Value = serde_json::to_value(args.job().unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"id": "j1", "to": ["a@localhost", "b@localhost"], "body": "hi",
            "subject": "s", "type": "headline", "from": "alerts", "policy": "online",
            "expires_at": "2026-12-06T12:00:00Z", "storage": "no-store"})
    );
}

#[test]
fn defaults_leave_out_what_the_contract_defaults() {
    let job = args(&["--body", "hi"]).unwrap().job().unwrap();
    assert!(job.id.starts_with("herald-send-"), "{}", job.id);
    let json = serde_json::to_value(&job).unwrap();
    assert_eq!(json["type"], "chat");
    assert_eq!(json["policy"], "available");
    assert!(json.get("subject").is_none() && json.get("from").is_none());
    assert!(json.get("expires_at").is_none() && json.get("storage").is_none());
    let parsed = Job::parse(&serde_json::to_vec(&job).unwrap(), &limits()).unwrap();
    assert_eq!(parsed.from.to_string(), "herald@broadcast.localhost");
}

#[test]
fn unknown_type_or_policy_and_missing_body_are_usage_errors() {
    assert!(args(&["--body", "x", "--type", "groupchat"]).is_err());
    assert!(args(&["--body", "x", "--policy", "sometimes"]).is_err());
    assert!(args(&["--to", "a@localhost"]).is_err());
    assert!(args(&["--body", "x", "--body-file", "f"]).is_err());
    assert!(args(&["--body", "x", "--no-wait", "--json"]).is_err());
}

#[test]
fn recipient_files_skip_blank_lines_and_comments() {
    let text = "# on call\nalice@localhost\n\n  bob@localhost  \n#carol@localhost\nx#y@localhost\n";
    let list: Vec<String> = recipients(text).collect();
    assert_eq!(list, ["alice@localhost", "bob@localhost", "x#y@localhost"]);
}

#[test]
fn files_feed_recipients_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("to");
    let body = dir.path().join("body");
    std::fs::write(&to, "b@localhost\n").unwrap();
    std::fs::write(&body, "line one\nline two\n\n").unwrap();
    let line = [
        "--to",
        "a@localhost",
        "--to-file",
        to.to_str().unwrap(),
        "--body-file",
        body.to_str().unwrap(),
    ];
    let job = args(&line).unwrap().job().unwrap();
    assert_eq!(job.to, ["a@localhost", "b@localhost"]);
    assert_eq!(job.body, "line one\nline two");
}

#[test]
fn both_files_on_stdin_and_missing_files_are_input_errors() {
    let err = args(&["--to-file", "-", "--body-file", "-"])
        .unwrap()
        .job()
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let err = args(&["--body-file", "/nonexistent/herald-body"])
        .unwrap()
        .job()
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}

#[test]
fn a_job_herald_would_dead_letter_is_a_job_error() {
    let job = args(&["--to", "@@bad", "--body", "hi"])
        .unwrap()
        .job()
        .unwrap();
    let err: SendError = Job::parse(&serde_json::to_vec(&job).unwrap(), &limits())
        .unwrap_err()
        .into();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("recipient #0"), "{err}");
}

#[test]
fn summary_gives_every_count() {
    let report: Report = serde_json::from_str(
        r#"{"id":"j1","recipients":3,"sent":1,"skipped":{"offline":1,"unavailable":0,"invalid":1}}"#,
    )
    .unwrap();
    assert_eq!(
        summary(&report),
        "job j1: sent 1 of 3 recipients; skipped: 1 offline, 0 unavailable, 1 invalid"
    );
    let expired: Report = serde_json::from_str(
        r#"{"id":"j2","recipients":3,"sent":0,"skipped":{"offline":0,"unavailable":0,"invalid":1,"expired":2},"expired":true}"#,
    )
    .unwrap();
    assert_eq!(
        summary(&expired),
        "job j2: sent 0 of 3 recipients; skipped: 0 offline, 0 unavailable, 1 invalid, 2 expired (taken after its expires_at)"
    );
}
