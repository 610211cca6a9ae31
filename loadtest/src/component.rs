//! The component under test, as a child process: Herald (the workspace's
//! release binary with a generated config) or the Node.js baseline
//! (loadtest/baseline-node). Both consume the same jobs queue and publish
//! reports to the same kind of events exchange.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::server::XmppServer;

/// Log lines kept per component, for error messages.
const LOG_LINES: usize = 200;
/// How long a component may take to connect and start consuming.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ComponentKind {
    Herald,
    Baseline,
}

impl ComponentKind {
    pub fn name(self) -> &'static str {
        match self {
            ComponentKind::Herald => "herald",
            ComponentKind::Baseline => "baseline",
        }
    }
}

/// The AMQP names of one run (unique, so runs and tests never share them).
#[derive(Debug, Clone)]
pub struct AmqpNames {
    pub url: String,
    pub jobs: String,
    pub dead: String,
    pub events: String,
}

impl AmqpNames {
    pub fn unique(url: &str) -> AmqpNames {
        let base = format!("herald-loadtest-{}", crate::harness::random_hex());
        AmqpNames {
            url: url.to_string(),
            jobs: format!("{base}.jobs"),
            dead: format!("{base}.jobs.dead"),
            events: format!("{base}.events"),
        }
    }

    /// Removes the run's queues and exchange from the broker (best effort).
    pub async fn delete(&self) {
        let Ok(connection) = Connection::connect(&self.url, ConnectionProperties::default()).await
        else {
            return;
        };
        if let Ok(channel) = connection.create_channel().await {
            for queue in [&self.jobs, &self.dead] {
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            let _ = channel
                .exchange_delete(
                    self.events.as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = connection.close(200, "done".into()).await;
    }
}

/// A running component. Dropping it kills the process.
pub struct Component {
    kind: ComponentKind,
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
}

impl Component {
    /// Starts Herald with a config for `server` and `names` (info logging,
    /// presence events off, HTTP on a free port, Herald's default prefetch
    /// unless `prefetch` says otherwise) and waits until it takes jobs.
    pub async fn start_herald(
        bin: &Path,
        server: &dyn XmppServer,
        names: &AmqpNames,
        prefetch: Option<u32>,
    ) -> Result<Component, String> {
        let dir = temp_dir()?;
        let config = dir.path().join("herald.toml");
        let text = format!(
            r#"[xmpp]
host = "127.0.0.1"
port = {port}
domain = "{domain}"
server_domain = "{server_domain}"
secret = "{secret}"

[amqp]
url = "{url}"
jobs_queue = "{jobs}"
dead_letter_queue = "{dead}"
events_exchange = "{events}"
presence_events = false
{prefetch}

[http]
listen = "127.0.0.1:0"

[store]
path = "{store}"

[log]
level = "info"
"#,
            port = server.component_port(),
            domain = server.component_domain(),
            server_domain = server.domain(),
            secret = server.component_secret(),
            url = names.url,
            jobs = names.jobs,
            dead = names.dead,
            events = names.events,
            store = dir.path().join("herald.redb").display(),
            prefetch = prefetch
                .map(|n| format!("prefetch = {n}"))
                .unwrap_or_default(),
        );
        std::fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;
        let mut command = Command::new(bin);
        command
            .arg("--config")
            .arg(&config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        let component = Component::spawn(ComponentKind::Herald, command, dir)?;
        component.wait_log("taking jobs").await?;
        Ok(component)
    }

    /// Starts the Node.js baseline in `dir` (after `npm ci` there) and
    /// waits for its `baseline ready` line.
    pub async fn start_baseline(
        dir: &Path,
        server: &dyn XmppServer,
        names: &AmqpNames,
        prefetch: u32,
    ) -> Result<Component, String> {
        let mut command = Command::new("node");
        command
            .arg("component.js")
            .current_dir(dir)
            .env("XMPP_HOST", "127.0.0.1")
            .env("XMPP_PORT", server.component_port().to_string())
            .env("XMPP_DOMAIN", server.component_domain())
            .env("XMPP_SECRET", server.component_secret())
            .env("AMQP_URL", &names.url)
            .env("JOBS_QUEUE", &names.jobs)
            .env("EVENTS_EXCHANGE", &names.events)
            .env("DEAD_LETTER_QUEUE", &names.dead)
            .env("PREFETCH", prefetch.to_string());
        let component = Component::spawn(ComponentKind::Baseline, command, temp_dir()?)?;
        component.wait_log("baseline ready").await?;
        Ok(component)
    }

    fn spawn(
        kind: ComponentKind,
        mut command: Command,
        dir: tempfile::TempDir,
    ) -> Result<Component, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e} ({command:?})", kind.name()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for pipe in pipes.into_iter().flatten() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        Ok(Component {
            kind,
            child,
            log,
            _dir: dir,
        })
    }

    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the component logged.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        let skip = log.len().saturating_sub(30);
        log.iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn find_log(&self, needle: &str) -> Option<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    fn find_last_log(&self, needle: &str) -> Option<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|l| l.contains(needle))
            .cloned()
    }

    async fn wait_log(&self, needle: &str) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while self.find_log(needle).is_none() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} logged no {needle:?} within {START_TIMEOUT:?}:\n{}",
                    self.kind.name(),
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits until the component has seen at least `resources` online
    /// resources, i.e. every swarm user's presence: Herald's
    /// `herald_online_resources` on /metrics; the baseline's latest
    /// `baseline presence users=N resources=M` line (printed at most once a
    /// second when its presence book changed).
    pub async fn wait_online_resources(
        &self,
        resources: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let metrics_addr = match self.kind {
            ComponentKind::Herald => Some(self.metrics_addr()?),
            ComponentKind::Baseline => None,
        };
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        while Instant::now() < deadline {
            seen = match &metrics_addr {
                Some(addr) => {
                    let metrics = http_get(addr, "/metrics").await?;
                    metric_value(&metrics, "herald_online_resources").unwrap_or(0.0) as usize
                }
                None => self
                    .find_last_log("baseline presence ")
                    .and_then(|line| resources_in_presence_line(&line))
                    .unwrap_or(0),
            };
            if seen >= resources {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{} saw {seen} of {resources} online resources after {timeout:?}",
            self.kind.name()
        ))
    }

    /// Herald's HTTP address, from its "serving /metrics" log line.
    fn metrics_addr(&self) -> Result<String, String> {
        let line = self
            .find_log("serving /metrics")
            .ok_or("Herald logged no metrics address")?;
        line.split("address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .ok_or_else(|| format!("no address in {line:?}"))
    }

    /// Freezes the component (SIGSTOP): it takes nothing from its sockets
    /// until [`Component::resume`].
    pub fn pause(&self) -> Result<(), String> {
        let pid = self.child.id();
        if crate::harness::server::send_signal(pid, "STOP") {
            Ok(())
        } else {
            Err(format!("cannot pause {} (pid {pid})", self.kind.name()))
        }
    }

    /// Lets a paused component go on (SIGCONT).
    pub fn resume(&self) {
        crate::harness::server::send_signal(self.child.id(), "CONT");
    }

    /// SIGTERM by pid, then SIGKILL after a grace period.
    pub async fn stop(mut self) {
        let pid = self.child.id();
        crate::harness::server::send_sigterm(pid);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "{} (pid {pid}) ignored SIGTERM; killing it",
            self.kind.name()
        );
        // Drop kills it.
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The component's own directory (config, log, Herald's store). It is on
/// the system's temp dir, normally a disk, not on the servers' tmpfs: the
/// store's commits then cost what they cost in production.
fn temp_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("herald-loadtest-")
        .tempdir_in(std::env::temp_dir())
        .map_err(|e| format!("temp dir: {e}"))
}

/// The Herald binary next to this one (both live in the workspace's target
/// directory), unless `explicit` names one.
pub fn herald_bin(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    let bin = match explicit {
        Some(bin) => bin,
        None => std::env::current_exe()
            .map_err(|e| format!("own path: {e}"))?
            .with_file_name("herald"),
    };
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no Herald binary at {} (build it: cargo build --release -p herald, or pass --herald-bin)",
            bin.display()
        ))
    }
}

/// A plain HTTP/1.0 GET; returns the body.
async fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .map_err(|_| format!("GET {path}: timed out"))?
    .map_err(|e| format!("GET {path}: {e}"))?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// M in the baseline's `baseline presence users=N resources=M` line.
fn resources_in_presence_line(line: &str) -> Option<usize> {
    line.split("resources=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The value of one series (a name, with its labels if any) in the
/// Prometheus text format.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_gauge() {
        let text = "# HELP herald_online_resources_x other\nherald_online_resources_x 5\n\
                    # TYPE herald_online_resources gauge\nherald_online_resources 10000\n";
        assert_eq!(metric_value(text, "herald_online_resources"), Some(10000.0));
        assert_eq!(metric_value(text, "herald_online_users"), None);
    }

    #[test]
    fn reads_the_baseline_presence_count() {
        let line = "baseline presence users=9998 resources=10000";
        assert_eq!(resources_in_presence_line(line), Some(10_000));
        assert_eq!(resources_in_presence_line("baseline ready domain=x"), None);
    }
}
