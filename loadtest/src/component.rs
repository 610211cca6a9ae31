//! The component under test, as a child process: Herald (the workspace's
//! release binary with a generated config) or the Node.js baseline
//! (loadtest/baseline-node). Both consume the same jobs queue and publish
//! reports to the same kind of events exchange (see [`crate::broker`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::broker::Names;
use herald::config::Config;
use herald_testkit::herald::{config, ProcessLog, XmppTarget};
use herald_testkit::http::series_value;

/// Log lines kept per component, for error messages.
pub const LOG_LINES: usize = 200;
/// Log lines an error message quotes by default.
pub const ERROR_LOG_LINES: usize = 30;
/// Herald's store file, in the component's directory.
const STORE_FILE: &str = "herald.store";
/// How long a component may take to connect and start consuming.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ComponentKind {
    Herald,
    /// Herald with a session to every node of an ejabberd cluster
    /// (`xmpp.connect_every_node`).
    HeraldEveryNode,
    Baseline,
}

impl ComponentKind {
    pub fn name(self) -> &'static str {
        match self {
            ComponentKind::Herald => "herald",
            ComponentKind::HeraldEveryNode => "herald-every-node",
            ComponentKind::Baseline => "baseline",
        }
    }

    pub fn is_herald(self) -> bool {
        self != ComponentKind::Baseline
    }
}

/// A running component. Dropping it kills the process.
pub struct Component {
    kind: ComponentKind,
    child: Child,
    log: ProcessLog,
    /// Herald's /metrics address, kept from its log line, which later
    /// lines push out of the log tail.
    metrics_addr: Option<String>,
    dir: tempfile::TempDir,
    /// Herald's binary, for its command line (`herald presence`).
    bin: Option<PathBuf>,
}

impl Component {
    /// Starts Herald with `settings`, its config file and store in a new
    /// directory under `parent` (removed when the component is dropped),
    /// and waits until it takes jobs.
    pub async fn start_herald(
        bin: &Path,
        settings: &Config,
        parent: &Path,
    ) -> Result<Component, String> {
        let dir = temp_dir_in(parent)?;
        let file = dir.path().join("herald.toml");
        let mut settings = settings.clone();
        settings.store.path = dir.path().join(STORE_FILE);
        config::write(&settings, &file)?;
        let command = herald_command(bin, &file);
        let mut component = Component::spawn(ComponentKind::Herald, command, dir)?;
        component.bin = Some(bin.to_path_buf());
        component.wait_log("taking jobs").await?;
        component.metrics_addr = Some(component.log.metrics_addr()?);
        Ok(component)
    }

    /// Names the component as the run measures it.
    pub fn measured_as(mut self, kind: ComponentKind) -> Component {
        self.kind = kind;
        self
    }

    /// Starts the Node.js baseline in `dir` (after `npm ci` there) and
    /// waits for its `baseline ready` line.
    pub async fn start_baseline(
        dir: &Path,
        xmpp: &XmppTarget,
        amqp_url: &str,
        names: &Names,
        prefetch: u32,
    ) -> Result<Component, String> {
        let mut command = Command::new("node");
        command
            .arg("component.js")
            .current_dir(dir)
            .env("XMPP_HOST", &xmpp.host)
            .env("XMPP_PORT", xmpp.port.to_string())
            .env("XMPP_DOMAIN", &xmpp.domain)
            .env("XMPP_SECRET", &xmpp.secret)
            .env("AMQP_URL", amqp_url)
            .env("JOBS_QUEUE", &names.component.jobs)
            .env("EVENTS_EXCHANGE", &names.component.events)
            .env("DEAD_LETTER_QUEUE", &names.component.dead)
            .env("PREFETCH", prefetch.to_string());
        let dir = temp_dir_in(&std::env::temp_dir())?;
        let component = Component::spawn(ComponentKind::Baseline, command, dir)?;
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
        let log = ProcessLog::new(Some(LOG_LINES));
        log.capture(&mut child);
        Ok(Component {
            kind,
            child,
            log,
            metrics_addr: None,
            dir,
            bin: None,
        })
    }

    /// SIGKILL, then Herald started again at once on the same config file
    /// and store, as a supervisor would; waits until it takes jobs again.
    pub async fn kill_and_restart(&mut self) -> Result<(), String> {
        let bin = self.bin.clone().ok_or("only Herald restarts")?;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut command = herald_command(&bin, &self.dir.path().join("herald.toml"));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.child = command
            .spawn()
            .map_err(|e| format!("cannot start herald again: {e}"))?;
        self.log = ProcessLog::new(Some(LOG_LINES));
        self.log.capture(&mut self.child);
        self.wait_log("taking jobs").await?;
        self.metrics_addr = Some(self.log.metrics_addr()?);
        Ok(())
    }

    /// Runs `herald --config <its file> ARGS` against this Herald and
    /// returns what it printed (JSON); None for the baseline.
    pub async fn herald_command(&self, args: &[String]) -> Option<Result<String, String>> {
        let bin = self.bin.as_ref()?;
        let output = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(self.dir.path().join("herald.toml"))
            .args(args)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output()
            .await;
        Some(match output {
            Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
            Ok(out) => Err(format!(
                "herald {}: {}: {}",
                args.first().map_or("", String::as_str),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run herald: {e}")),
        })
    }

    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines the component logged (at most [`LOG_LINES`]).
    pub fn log_tail(&self, lines: usize) -> String {
        self.log.tail(lines)
    }

    /// The lines of the kept log (the last [`LOG_LINES`]) holding `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        self.log.lines_with(needle)
    }

    /// An error once the process has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.kind.name())),
            Err(e) => Err(format!("{}: {e}", self.kind.name())),
        }
    }

    /// Herald's store, in the component's directory.
    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join(STORE_FILE)
    }

    async fn wait_log(&self, needle: &str) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while self.log.first(needle).is_none() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} logged no {needle:?} within {START_TIMEOUT:?}:\n{}",
                    self.kind.name(),
                    self.log_tail(ERROR_LOG_LINES)
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
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        while Instant::now() < deadline {
            seen = match self.kind {
                ComponentKind::Herald | ComponentKind::HeraldEveryNode => {
                    self.metric("herald_online_resources").await?.unwrap_or(0.0) as usize
                }
                ComponentKind::Baseline => self
                    .log
                    .last("baseline presence ")
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

    /// The value of one series of Herald's /metrics, if it has it.
    pub async fn metric(&self, series: &str) -> Result<Option<f64>, String> {
        let addr = self
            .metrics_addr
            .as_deref()
            .ok_or_else(|| format!("{} serves no /metrics", self.kind.name()))?;
        Ok(series_value(&http_get(addr, "/metrics").await?, series))
    }

    /// Freezes the component (SIGSTOP): it takes nothing from its sockets
    /// until [`Component::resume`].
    pub fn pause(&self) -> Result<(), String> {
        let pid = self.child.id();
        if herald_testkit::server::send_signal(pid, "STOP") {
            Ok(())
        } else {
            Err(format!("cannot pause {} (pid {pid})", self.kind.name()))
        }
    }

    /// Lets a paused component go on (SIGCONT).
    pub fn resume(&self) {
        herald_testkit::server::send_signal(self.child.id(), "CONT");
    }

    /// SIGTERM by pid, then SIGKILL after a grace period.
    pub async fn stop(mut self) {
        let pid = self.child.id();
        herald_testkit::server::send_sigterm(pid);
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

/// Herald on the config file `file`, logging without colours at its
/// configured level.
fn herald_command(bin: &Path, file: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("--config")
        .arg(file)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    command
}

/// A new directory for the component (config, Herald's store) under
/// `parent`. Runs put it on the system's temp dir, normally a disk, not on
/// the servers' tmpfs: the store's commits then cost what they cost in
/// production.
fn temp_dir_in(parent: &Path) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("herald-loadtest-")
        .tempdir_in(parent)
        .map_err(|e| format!("temp dir in {}: {e}", parent.display()))
}

/// A plain HTTP/1.0 GET on loopback; returns the body of a 200 answer.
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
    ok_body(&response)
        .map(str::to_string)
        .map_err(|e| format!("GET {path}: {e}"))
}

/// The body of an HTTP answer whose status is 200.
fn ok_body(response: &str) -> Result<&str, String> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP answer")?;
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body)
    } else {
        Err(status.to_string())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_body_of_200_answers_only() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nherald_ready 1\n";
        assert_eq!(ok_body(ok), Ok("herald_ready 1\n"));
        let missing = "HTTP/1.0 404 Not Found\r\n\r\n";
        assert_eq!(ok_body(missing), Err("HTTP/1.0 404 Not Found".to_string()));
        assert!(ok_body("HTTP/1.1 200 OK").is_err());
    }

    #[test]
    fn reads_the_baseline_presence_count() {
        let line = "baseline presence users=9998 resources=10000";
        assert_eq!(resources_in_presence_line(line), Some(10_000));
        assert_eq!(resources_in_presence_line("baseline ready domain=x"), None);
    }
}
