//! Runs the real `herald` binary against a test's XMPP server and RabbitMQ,
//! with queue and exchange names of its own so tests can run in parallel.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald::config::Secret;

use crate::amqp::amqp_url;
use crate::server::XmppServer;

mod cli;
pub mod config;
mod log;

pub use cli::herald_cli;
pub use config::{herald_bin, Names, XmppTarget};
pub use log::ProcessLog;

pub struct Herald {
    child: Option<Child>,
    /// The binary to run; `None`: the one Cargo built ([`herald_bin`]).
    bin: Option<PathBuf>,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: ProcessLog,
    /// "taking jobs" lines logged before the current process started.
    ready_lines: usize,
}

impl Herald {
    /// Writes a config for `server` and `names` into `dir` (which also
    /// holds the store, so a later start in the same dir finds it) and
    /// starts Herald; returns once it takes jobs.
    pub fn start(server: &impl XmppServer, names: &Names, dir: &Path) -> Herald {
        Self::start_with_env(server, names, dir, &[])
    }

    /// Like [`Herald::start`], with extra `HERALD_*` environment variables
    /// that override the written config.
    pub fn start_with_env(
        server: &impl XmppServer,
        names: &Names,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Herald {
        Self::start_at(&XmppTarget::of(server), names, dir, env)
    }

    /// Like [`Herald::start_with_env`], for any component listener (a
    /// scripted server, say) rather than a test XMPP server.
    pub fn start_at(
        target: &XmppTarget,
        names: &Names,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Herald {
        let mut herald = Self::launch_at(target, names, dir, env);
        herald.wait_ready();
        herald
    }

    /// Like [`Herald::start_with_env`], on the brokers `urls` (`amqp.urls`:
    /// the nodes of a cluster, tried in turn) rather than the shared one.
    pub fn start_on_brokers(
        server: &impl XmppServer,
        names: &Names,
        dir: &Path,
        urls: &[String],
        env: &[(&str, &str)],
    ) -> Herald {
        let mut config = test_config(&XmppTarget::of(server), names, dir);
        config.amqp.url = None;
        config.amqp.urls = urls.iter().map(Secret::new).collect();
        Self::start_written(&config, dir, env)
    }

    /// Like [`Herald::start_with_env`], attached to the component
    /// listeners `servers` (`xmpp.servers`: the nodes of a cluster that
    /// serves `server`'s domains with its secret, tried in turn) rather
    /// than to `server`'s alone.
    pub fn start_on_servers(
        server: &impl XmppServer,
        servers: &[String],
        names: &Names,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Herald {
        let mut config = test_config(&XmppTarget::of(server), names, dir);
        config.xmpp.host = None;
        config.xmpp.port = None;
        config.xmpp.servers = servers.to_vec();
        Self::start_written(&config, dir, env)
    }

    /// Writes `config` into `dir` and starts Herald on it; returns once it
    /// takes jobs.
    fn start_written(config: &herald::config::Config, dir: &Path, env: &[(&str, &str)]) -> Herald {
        let path = dir.join("herald.toml");
        config::write(config, &path).unwrap_or_else(|e| panic!("{e}"));
        let mut herald = Herald::new(None, path, env);
        herald.spawn();
        herald.wait_ready();
        herald
    }

    /// Like [`Herald::start_with_env`] but returns at once, without waiting
    /// for Herald to take jobs (for tests where it cannot).
    pub fn launch_with_env(
        server: &impl XmppServer,
        names: &Names,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Herald {
        Self::launch_at(&XmppTarget::of(server), names, dir, env)
    }

    /// Like [`Herald::start_at`] but returns at once, without waiting for
    /// Herald to take jobs.
    pub fn launch_at(
        target: &XmppTarget,
        names: &Names,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Herald {
        let config = dir.join("herald.toml");
        config::write(&test_config(target, names, dir), &config).unwrap_or_else(|e| panic!("{e}"));
        let mut herald = Herald::new(None, config, env);
        herald.spawn();
        herald
    }

    /// Runs `bin` (an installed Herald: from a package, or copied out of an
    /// image) with the configuration file `config` as it is, `env` on top
    /// as an operator's environment would be; returns once it takes jobs.
    pub fn start_installed(bin: &Path, config: &Path, env: &[(&str, &str)]) -> Herald {
        let mut herald = Herald::new(Some(bin.to_path_buf()), config.to_path_buf(), env);
        herald.spawn();
        herald.wait_ready();
        herald
    }

    /// Not started yet: `bin` (default: the one Cargo built) with `config`.
    fn new(bin: Option<PathBuf>, config: PathBuf, env: &[(&str, &str)]) -> Herald {
        Herald {
            child: None,
            bin,
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: ProcessLog::new(None),
            ready_lines: 0,
        }
    }

    fn wait_ready(&mut self) {
        self.wait_log_count("taking jobs", self.ready_lines + 1, Duration::from_secs(30));
        self.ready_lines += 1;
    }

    fn spawn(&mut self) {
        let bin = herald_bin(self.bin.clone()).unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&self.config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald");
        self.log.capture(&mut child);
        self.child = Some(child);
        self.ready_lines = self.log_count("taking jobs");
    }

    /// Starts Herald again with the same config and store (and `env`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop Herald before restarting it");
        self.spawn();
        self.wait_ready();
    }

    /// Starts Herald again with the same config and store, with `env`
    /// replacing the environment overrides it had; returns at once, without
    /// waiting for it to take jobs.
    pub fn relaunch_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "stop Herald before restarting it");
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.spawn();
    }

    /// Address of the HTTP endpoint of the running process, from its log.
    pub fn http_addr(&self) -> String {
        self.log.metrics_addr().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The current /metrics text.
    pub fn metrics(&self) -> String {
        let (status, body) = crate::http::get(&self.http_addr(), "/metrics");
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        body
    }

    /// The HTTP status of /readyz.
    pub fn readyz(&self) -> u16 {
        crate::http::get(&self.http_addr(), "/readyz").0
    }

    /// Waits until /readyz answers `status`; panics with the log otherwise.
    pub fn wait_readyz(&mut self, status: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.readyz() != status {
            assert!(self.is_running(), "herald exited:\n{}", self.log_text());
            if Instant::now() > deadline {
                panic!(
                    "/readyz did not answer {status} within {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the metric `series` reads `value`; panics otherwise.
    pub fn wait_metric(&mut self, series: &str, value: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = crate::http::value(&self.metrics(), series);
            if now == value {
                return;
            }
            assert!(self.is_running(), "herald exited:\n{}", self.log_text());
            assert!(
                Instant::now() < deadline,
                "{series} stayed {now}, expected {value}, within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The configuration file Herald runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_count(&self, needle: &str) -> usize {
        self.log.count(needle)
    }

    pub fn log_text(&self) -> String {
        self.log.text()
    }

    /// Every log line that contains `needle`, oldest first.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log.lines_with(needle)
    }

    /// Waits until `needle` appears in `count` log lines; panics with the log otherwise.
    pub fn wait_log_count(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log_count(needle) < count {
            if !self.is_running() {
                panic!(
                    "herald is not running; waited for {needle:?}:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "no {needle:?} in herald's log within {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// SIGKILL (a crash: no drain, no goodbye), then waits for the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL herald");
            child.wait().expect("wait for herald");
        }
    }

    /// SIGTERM, then waits; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        crate::server::send_sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("herald did not stop on SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- test panicked; last lines of Herald's log ---\n{}",
                self.log.tail(60)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Herald's config for a test: its store in `dir` (so a later start in the
/// same dir finds it); short keepalives, timeouts and backoffs, so that
/// tests see a dead connection and a reconnection within seconds; debug logs
/// for the tests that read them.
fn test_config(target: &XmppTarget, names: &Names, dir: &Path) -> herald::config::Config {
    let mut config = config::config(target, &amqp_url(), names, &dir.join("herald.store"));
    config.xmpp.keepalive_secs = 5;
    config.xmpp.read_timeout_secs = 60;
    config.xmpp.probe_settle_ms = 300;
    config.xmpp.max_backoff_secs = 2;
    config.amqp.max_backoff_secs = 2;
    config.log.level = "herald=debug,info".into();
    config
}
