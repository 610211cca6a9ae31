//! `herald send`: publishes one job the way an application does, and waits
//! for its report. For operators who test a deployment, and for scripts.
//!
//! It reads the same configuration as `herald run` but uses only its broker
//! side (`amqp.*`) and its job limits, so it runs where the component secret
//! is not available. The job is written as contract v1 ([`RawJob`]) and
//! checked with the parser Herald itself uses ([`Job::parse`]) before
//! anything is published: a job Herald would dead-letter is refused here,
//! with the same reason. Then it is published persistent, `mandatory`, with
//! a publisher confirm, to the jobs queue. To wait for the report, a
//! private queue is bound to the events exchange with routing key
//! `job.report` *before* publishing (RabbitMQ drops a report that no queue
//! is bound for), and the first report whose `id` is the job's is taken.
//!
//! A job that Herald dead-letters anyway (its configuration differs from
//! the one given here) gets no report: the command then times out.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::time::error::Elapsed;
use tokio::time::{timeout_at, Instant};

use crate::broadcast::job::{MessageKind, RawJob};
use crate::broadcast::{Job, JobError, JobLimits, Report, REPORT_KEY};
use crate::config::{AmqpConfig, Config, ConfigError};
use crate::presence::Policy;

/// The command line of `herald send`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("text").required(true).args(["body", "body_file"])))]
pub struct SendArgs {
    /// A recipient, as a user's bare JID (alice@example.com); repeat for more
    #[arg(long, value_name = "JID")]
    pub to: Vec<String>,
    /// Read recipients from a file, one JID per line ("-": standard input);
    /// blank lines and lines starting with # are skipped
    #[arg(long, value_name = "PATH")]
    pub to_file: Option<PathBuf>,
    /// The message text
    #[arg(long, value_name = "TEXT")]
    pub body: Option<String>,
    /// Read the message text from a file ("-": standard input); line breaks at
    /// its end are removed
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<PathBuf>,
    /// A subject for the message
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// The XMPP message type: chat, normal or headline [default: chat]
    #[arg(long = "type", value_name = "TYPE", value_parser = contract_value::<MessageKind>)]
    pub kind: Option<MessageKind>,
    /// Who is reached: available (ready to talk) or online (including away,
    /// xa and dnd) [default: available]
    #[arg(long, value_name = "POLICY", value_parser = contract_value::<Policy>)]
    pub policy: Option<Policy>,
    /// Local part of the sender: messages come from <FROM>@<Herald's domain>
    /// [default: broadcast.default_from]
    #[arg(long, value_name = "LOCAL")]
    pub from: Option<String>,
    /// The job's id, copied into its report [default: a new unique id]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Exit once the broker has confirmed the job, without waiting for the report
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the broker and the report
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// Print the report as Herald published it (JSON) instead of a summary
    #[arg(long, conflicts_with = "no_wait")]
    pub json: bool,
}

/// Why `herald send` failed; [`SendError::exit_code`] tells input problems
/// (2) from broker problems (1).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Input(String),
    #[error("Herald would dead-letter this job: {0}")]
    Job(#[from] JobError),
    #[error("{what}: {source}")]
    Amqp {
        what: &'static str,
        source: lapin::Error,
    },
    #[error("{0}")]
    Broker(String),
    #[error("timed out after {secs} s {what}")]
    Timeout { secs: u64, what: &'static str },
    #[error(
        "timed out: no report for job {id:?} within {secs} s. Either Herald is not \
         taking jobs (the job waits in queue {jobs:?}) or it refused the job (see queue \
         {dead:?}, header x-herald-error)"
    )]
    NoReport {
        id: String,
        secs: u64,
        jobs: String,
        dead: String,
    },
}

impl SendError {
    /// 2 for a bad command line, file, configuration or job; 1 for the
    /// broker or a timeout.
    pub fn exit_code(&self) -> u8 {
        match self {
            SendError::Config(_) | SendError::Input(_) | SendError::Job(_) => 2,
            SendError::Amqp { .. }
            | SendError::Broker(_)
            | SendError::Timeout { .. }
            | SendError::NoReport { .. } => 1,
        }
    }
}

/// Sends the job `args` describe through the broker `config` names, and
/// prints the report (or, with `--no-wait`, the job's id) on standard output.
pub async fn run(config: &Config, args: &SendArgs) -> Result<(), SendError> {
    let job = args.job()?;
    let payload = serde_json::to_vec(&job).map_err(|e| SendError::Input(e.to_string()))?;
    Job::parse(&payload, &JobLimits::from_config(config)?)?;

    let amqp = &config.amqp;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let within = |what: &'static str| {
        move |_: Elapsed| SendError::Timeout {
            secs: args.timeout,
            what,
        }
    };
    let link = timeout_at(deadline, Link::open(amqp))
        .await
        .map_err(within("connecting to the broker"))??;
    let reports = if args.no_wait {
        None
    } else {
        let bound = timeout_at(deadline, link.bind_reports(&amqp.events_exchange));
        Some(
            bound
                .await
                .map_err(within("binding a queue for the report"))??,
        )
    };
    timeout_at(deadline, link.publish(&amqp.jobs_queue, &payload))
        .await
        .map_err(within("waiting for the broker to confirm the job"))??;

    let Some(reports) = reports else {
        println!("published job {}", job.id);
        link.close().await;
        return Ok(());
    };
    eprintln!("published job {}; waiting for its report", job.id);
    let (report, raw) = timeout_at(deadline, report_for(reports, &job.id))
        .await
        .map_err(|_| SendError::NoReport {
            id: job.id.clone(),
            secs: args.timeout,
            jobs: amqp.jobs_queue.clone(),
            dead: amqp.dead_letter_queue.clone(),
        })??;
    link.close().await;
    if args.json {
        println!("{}", String::from_utf8_lossy(&raw));
    } else {
        println!("{}", summary(&report));
    }
    Ok(())
}

impl SendArgs {
    /// The job as it goes on the wire.
    fn job(&self) -> Result<RawJob, SendError> {
        let stdin = |path: &Option<PathBuf>| path.as_deref() == Some(Path::new("-"));
        if stdin(&self.to_file) && stdin(&self.body_file) {
            return Err(SendError::Input(
                "--to-file and --body-file cannot both read standard input".into(),
            ));
        }
        let mut to = self.to.clone();
        if let Some(path) = &self.to_file {
            to.extend(recipients(&read_input(path)?));
        }
        let body = match &self.body_file {
            Some(path) => read_input(path)?.trim_end_matches(['\r', '\n']).to_string(),
            None => self.body.clone().unwrap_or_default(),
        };
        Ok(RawJob {
            id: self.id.clone().unwrap_or_else(new_id),
            to,
            body,
            subject: self.subject.clone(),
            kind: self.kind.unwrap_or_default(),
            from: self.from.clone(),
            policy: self.policy.unwrap_or_default(),
        })
    }
}

/// Parses a command-line value the way the contract spells it (`headline`,
/// `online`), so the names live in one place.
fn contract_value<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    T::deserialize(StrDeserializer::<ValueError>::new(text)).map_err(|e| e.to_string())
}

fn read_input(path: &Path) -> Result<String, SendError> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| SendError::Input(format!("cannot read {}: {e}", path.display())))?;
    Ok(text)
}

/// One JID per line; blank lines and `#` comments skipped. Only whole
/// lines are comments: `#` is allowed in a JID's local part.
fn recipients(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
}

/// Unique per process and moment: the pid and the time in microseconds.
fn new_id() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("herald-send-{micros}-{}", std::process::id())
}

fn summary(report: &Report) -> String {
    let skipped = &report.skipped;
    format!(
        "job {}: sent {} of {} recipients; skipped: {} offline, {} unavailable, {} invalid",
        report.id,
        report.sent,
        report.recipients,
        skipped.offline,
        skipped.unavailable,
        skipped.invalid
    )
}

/// Only the id: whatever else a report carries does not keep it from
/// being recognised.
#[derive(Deserialize)]
struct ReportId {
    id: String,
}

/// Waits for the report of job `id` among everything routed to `reports`.
async fn report_for(mut reports: Consumer, id: &str) -> Result<(Report, Vec<u8>), SendError> {
    while let Some(delivery) = reports.next().await {
        let data = delivery
            .map_err(|source| SendError::Amqp {
                what: "reading reports",
                source,
            })?
            .data;
        if !matches!(serde_json::from_slice::<ReportId>(&data), Ok(r) if r.id == id) {
            continue;
        }
        let report = serde_json::from_slice(&data).map_err(|e| {
            SendError::Broker(format!(
                "the report for job {id:?} is not a v1 report ({e}): {}",
                String::from_utf8_lossy(&data)
            ))
        })?;
        return Ok((report, data));
    }
    Err(SendError::Broker(
        "the broker closed the report queue".into(),
    ))
}

/// One connection and one channel in confirm mode.
struct Link {
    connection: Connection,
    channel: Channel,
}

fn amqp_error(what: &'static str) -> impl FnOnce(lapin::Error) -> SendError {
    move |source| SendError::Amqp { what, source }
}

impl Link {
    async fn open(config: &AmqpConfig) -> Result<Link, SendError> {
        // The URL is not in the message: it may hold a password.
        let connection = crate::amqp::connect(config, ConnectionProperties::default())
            .await
            .map_err(amqp_error("cannot connect to the broker (amqp.url)"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(amqp_error("cannot open a channel"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp_error("cannot enable publisher confirms"))?;
        Ok(Link {
            connection,
            channel,
        })
    }

    /// A server-named, exclusive, auto-delete queue bound to the events
    /// exchange for `job.report`: it sees every report published from now
    /// on and disappears with the connection.
    async fn bind_reports(&self, exchange: &str) -> Result<Consumer, SendError> {
        let private = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = self
            .channel
            .queue_declare("".into(), private, FieldTable::default())
            .await
            .map_err(amqp_error("cannot declare a queue for the report"))?;
        self.channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                REPORT_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error(
                "cannot bind to the events exchange (amqp.events_exchange; Herald declares it when it starts)",
            ))?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        self.channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await
            .map_err(amqp_error("cannot consume the report queue"))
    }

    /// Publishes the job persistent and `mandatory`, and waits for the
    /// broker's confirm: an error unless the broker has it in `queue`.
    async fn publish(&self, queue: &str, payload: &[u8]) -> Result<(), SendError> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirmation = self
            .channel
            .basic_publish("".into(), queue.into(), mandatory, payload, properties)
            .await
            .map_err(amqp_error("cannot publish the job"))?
            .await
            .map_err(amqp_error("no confirm for the job"))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(SendError::Broker(format!(
                    "the broker has no queue {queue:?} (amqp.jobs_queue; Herald declares it \
                     when it starts): the job was returned, {}",
                    returned.reply_text
                )))
            }
            Confirmation::Nack(None) => Err(SendError::Broker(
                "the broker refused the job (negative confirm)".into(),
            )),
            Confirmation::NotRequested => Err(SendError::Broker(
                "the broker did not confirm the job".into(),
            )),
        }
    }

    async fn close(self) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

#[cfg(test)]
mod tests {
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

    fn limits() -> JobLimits {
        JobLimits::from_config(&Config::default()).unwrap()
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
        ])
        .unwrap();
        let json: serde_json::Value = serde_json::to_value(args.job().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "j1", "to": ["a@localhost", "b@localhost"], "body": "hi",
                "subject": "s", "type": "headline", "from": "alerts", "policy": "online"})
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
        let text =
            "# on call\nalice@localhost\n\n  bob@localhost  \n#carol@localhost\nx#y@localhost\n";
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
    }
}
