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
//! With `--report-names` the queue is bound for `job.report.#`, and the
//! parts naming the recipients that came before the report are printed
//! with it.
//!
//! A job that Herald dead-letters anyway (its configuration differs from
//! the one given here) gets no report: the command then times out.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args};
use futures_util::StreamExt;
use lapin::{BasicProperties, Consumer};
use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::time::error::Elapsed;
use tokio::time::{timeout_at, Instant};

use crate::broadcast::job::{MessageKind, RawJob, Storage};
use crate::broadcast::names::{NamesRef, Part, NAMES_KEY};
use crate::broadcast::{Job, JobError, Report, REPORT_KEY};
use crate::config::{Config, ConfigError};
use crate::presence::Policy;
use broker::Link;

mod broker;
pub mod control;
pub mod group;

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
    /// A group whose members are recipients too (see `herald group`); repeat for more
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// Everyone who shares presence with Herald is a recipient too
    #[arg(long)]
    pub all_subscribers: bool,
    /// The report names the recipients per outcome (on `job.report.names`)
    #[arg(long)]
    pub report_names: bool,
    /// Recipients not reachable now get the message if they become so
    /// within this many seconds (the final report, on `job.report.final`,
    /// comes after; this waits for the first report only)
    #[arg(long, value_name = "SECS")]
    pub deliver_within_secs: Option<u64>,
    /// Messages ask clients for delivery receipts (XEP-0184), counted in
    /// the final report on `job.report.final`
    #[arg(long)]
    pub receipts: bool,
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
    /// A deadline (RFC 3339, e.g. 2030-01-01T12:00:00Z): taken after it,
    /// the job sends nothing and is reported expired [default: none]
    #[arg(long, value_name = "DATE-TIME")]
    pub expires_at: Option<String>,
    /// What servers may keep of the messages: default, no-permanent-store
    /// (not archived) or no-store (neither archived nor stored offline)
    /// [default: default]
    #[arg(long, value_name = "STORAGE", value_parser = contract_value::<Storage>)]
    pub storage: Option<Storage>,
    /// Publish to the urgent queue (amqp.urgent_queue): taken before the
    /// jobs queue's, and fanned out between the slices of a big job
    #[arg(long)]
    pub urgent: bool,
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
    Job::parse(&payload, &config.job_limits()?)?;

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
        let key = if job.report_names {
            "job.report.#"
        } else {
            REPORT_KEY
        };
        let bound = timeout_at(deadline, link.bind_reports(&amqp.events_exchange, key));
        Some(
            bound
                .await
                .map_err(within("binding a queue for the report"))??,
        )
    };
    let (queue, key) = if args.urgent {
        (&amqp.urgent_queue, "amqp.urgent_queue")
    } else {
        (&amqp.jobs_queue, "amqp.jobs_queue")
    };
    let persistent = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    timeout_at(deadline, link.publish(queue, key, &payload, persistent))
        .await
        .map_err(within("waiting for the broker to confirm the job"))??;

    let Some(reports) = reports else {
        println!("published job {}", job.id);
        link.close().await;
        return Ok(());
    };
    eprintln!("published job {}; waiting for its report", job.id);
    let (report, raw, parts) = timeout_at(deadline, report_for(reports, &job.id))
        .await
        .map_err(|_| SendError::NoReport {
            id: job.id.clone(),
            secs: args.timeout,
            jobs: queue.clone(),
            dead: amqp.dead_letter_queue.clone(),
        })??;
    link.close().await;
    if args.json {
        for part in &parts {
            println!("{}", serde_json::to_string(part).unwrap_or_default());
        }
        println!("{}", String::from_utf8_lossy(&raw));
    } else {
        println!("{}", summary(&report));
        for (outcome, names) in named(&parts) {
            println!("  {outcome} ({}): {}", names.len(), names.join(", "));
        }
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
            expires_at: self.expires_at.clone(),
            storage: self.storage.unwrap_or_default(),
            groups: self.groups.clone(),
            all_subscribers: self.all_subscribers,
            report_names: self.report_names,
            deliver_within_secs: self.deliver_within_secs,
            receipts: self.receipts,
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
    let expired = if report.expired {
        format!(", {} expired (taken after its expires_at)", skipped.expired)
    } else {
        String::new()
    };
    format!(
        "job {}: sent {} of {} recipients; skipped: {} offline, {} unavailable, {} invalid{expired}",
        report.id,
        report.sent,
        report.recipients,
        skipped.offline,
        skipped.unavailable,
        skipped.invalid
    )
}

/// Only the id (and where the names went): whatever else a report carries
/// does not keep it from being recognised.
#[derive(Deserialize)]
struct ReportId {
    id: String,
    #[serde(default)]
    names: Option<NamesRef>,
}

/// The recipients the parts name, by outcome, for those outcomes that
/// have any.
fn named(parts: &[Part]) -> Vec<(&'static str, Vec<&str>)> {
    let mut named: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for part in parts {
        for (at, (outcome, names)) in part.by_outcome().into_iter().enumerate() {
            if named.len() <= at {
                named.push((outcome, Vec::new()));
            }
            named[at].1.extend(names.iter().map(String::as_str));
        }
    }
    named.retain(|(_, names)| !names.is_empty());
    named
}

/// Waits for the report of job `id` among everything routed to `reports`;
/// returns it with the parts of the names it refers to, which came first.
async fn report_for(
    mut reports: Consumer,
    id: &str,
) -> Result<(Report, Vec<u8>, Vec<Part>), SendError> {
    let mut parts: Vec<Part> = Vec::new();
    while let Some(delivery) = reports.next().await {
        let delivery = delivery.map_err(|source| SendError::Amqp {
            what: "reading reports",
            source,
        })?;
        let data = delivery.data;
        let Ok(reported) = serde_json::from_slice::<ReportId>(&data) else {
            continue;
        };
        if reported.id != id {
            continue;
        }
        if delivery.routing_key.as_str() == NAMES_KEY {
            parts.extend(serde_json::from_slice::<Part>(&data).ok());
            continue;
        }
        let set = reported.names.map(|names| names.set);
        parts.retain(|part| Some(part.set) == set);
        let report = serde_json::from_slice(&data).map_err(|e| {
            SendError::Broker(format!(
                "the report for job {id:?} is not a v1 report ({e}): {}",
                String::from_utf8_lossy(&data)
            ))
        })?;
        return Ok((report, data, parts));
    }
    Err(SendError::Broker(
        "the broker closed the report queue".into(),
    ))
}

#[cfg(test)]
mod tests;
