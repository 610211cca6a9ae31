//! A private RabbitMQ node for one test, for the tests that stop, restart or
//! reconfigure the broker: the shared broker on 127.0.0.1:5672 is never
//! touched (other tests, and other people, use it), but for the users of
//! [`BrokerUser`], each a test's own and deleted after it.
//!
//! * `rabbitmq-server` runs from RabbitMQ's own scripts directory (Debian:
//!   `/usr/lib/rabbitmq/bin`), not through `/usr/sbin/rabbitmq-server`, whose
//!   wrapper switches to the `rabbitmq` user and drops the environment.
//! * Everything is its own: a unique node name (`herald-<hex>@localhost`),
//!   the AMQP port, the distribution port (and the AMQPS port when asked),
//!   all on 127.0.0.1 and picked per run; the config file, the Mnesia and log
//!   directories, the pid file, the enabled-plugins file (none) and `HOME`
//!   (hence a fresh Erlang cookie) in a temp dir. The node registers with the
//!   epmd on 127.0.0.1:4369 (started bound to loopback if none answers).
//! * The script is the leader of a process group of its own: SIGTERM to it
//!   stops the node gracefully (the script forwards it and waits), and a kill
//!   takes the whole group, so no Erlang node outlives the test.
//! * [`PrivateBroker::start_again`] boots the same node on the same data
//!   directory: durable queues and persistent messages survive.
//! * [`PrivateCluster`] boots several such nodes with one Erlang cookie and
//!   joins them into one RabbitMQ cluster.
//!
//! A cold boot takes about 5–10 s on a busy two-core machine (RabbitMQ
//! 3.10); a graceful stop about 2.5 s.
//!
//! Environment knobs (all optional):
//! * `HERALD_TEST_RABBITMQ_SCRIPTS`: the directory holding `rabbitmq-server`
//!   and `rabbitmqctl` (default `/usr/lib/rabbitmq/bin`).
//! * `HERALD_TEST_KEEP_RABBITMQ=1`: keep the temp dir (config, Mnesia, log).

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::erlang::ensure_epmd;
use crate::server::{
    random_hex, set_log_aside, tail, temp_root, Readiness, ServerProcess, StartError,
};

mod cluster;
mod user;

pub use cluster::PrivateCluster;
pub use user::BrokerUser;

/// How long to wait for the node to boot and listen.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a graceful stop may take before the node is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries with fresh ports when another process grabbed one of ours.
const PORT_ATTEMPTS: usize = 3;

/// A TLS listener's files (PEM), for [`PrivateBroker::start_with_tls`].
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that client certificates must be issued by.
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse clients without a certificate issued by `ca_cert`.
    pub require_client_cert: bool,
}

/// A running (or stopped) private RabbitMQ node. See the module docs.
pub struct PrivateBroker {
    dir: Option<TempDir>,
    root: PathBuf,
    node: String,
    port: u16,
    tls_port: Option<u16>,
    dist_port: u16,
    tls: Option<TlsFiles>,
    process: ServerProcess,
}

impl PrivateBroker {
    /// Boots a node with a plain AMQP listener; returns once it accepts
    /// connections. Panics with the node's log if it does not come up.
    /// Blocking (short sleeps): fine to call from async tests.
    pub fn start() -> PrivateBroker {
        Self::boot(None, None)
    }

    /// Like [`PrivateBroker::start`], with an AMQPS listener too, serving
    /// `tls.cert` (and asking for a client certificate if `tls` says so).
    pub fn start_with_tls(tls: TlsFiles) -> PrivateBroker {
        Self::boot(Some(tls), None)
    }

    /// Boots a node; with `cookie`, that Erlang cookie rather than a fresh
    /// one (nodes of one cluster share theirs).
    fn boot(tls: Option<TlsFiles>, cookie: Option<&str>) -> PrivateBroker {
        let dir = tempfile::Builder::new()
            .prefix("herald-rabbitmq-")
            .tempdir_in(temp_root())
            .expect("create temp dir for RabbitMQ");
        let root = dir.path().to_path_buf();
        fs::write(root.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        if let Some(cookie) = cookie {
            write_cookie(&root, cookie);
        }
        let mut broker = PrivateBroker {
            dir: Some(dir),
            root,
            node: format!("herald-{}@localhost", random_hex()),
            port: 0,
            tls_port: None,
            dist_port: 0,
            tls,
            process: ServerProcess::new_group("RabbitMQ"),
        };
        ensure_epmd();
        for attempt in 1..=PORT_ATTEMPTS {
            let [port, tls_port, dist_port] = free_ports();
            broker.port = port;
            broker.dist_port = dist_port;
            broker.tls_port = broker.tls.is_some().then_some(tls_port);
            broker.write_config();
            broker.spawn();
            match broker.wait_ready() {
                Ok(()) => return broker,
                Err(StartError::PortInUse) if attempt < PORT_ATTEMPTS => {
                    broker.process.kill();
                    set_log_aside(&broker.log_path());
                }
                Err(e) => {
                    let report = broker.failure_report(&format!("{e:?}"));
                    broker.process.kill();
                    panic!("{report}");
                }
            }
        }
        unreachable!()
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` (guest may log in over loopback).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.address())
    }

    /// `127.0.0.1:PORT`, the AMQP listener (as Herald logs the broker it
    /// connected to).
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `amqps://guest:guest@localhost:PORT/%2f`: the host name is the one
    /// the test certificate is issued for.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started without TLS");
        format!("amqps://guest:guest@localhost:{port}/%2f")
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("log").join(format!("{}.log", self.node))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// Waits until the node's log (since it last started) has `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .contains(needle)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in RabbitMQ's log within {timeout:?}:\n{}",
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Graceful stop: the broker closes its connections, durable queues and
    /// persistent messages are kept. Idempotent.
    pub fn stop(&mut self) {
        self.process.stop(STOP_TIMEOUT);
    }

    /// Hard crash: SIGKILL to the node and its script at once. Idempotent.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Boots the same node again (after `stop()`/`kill()`) with the same
    /// ports and data directory; returns once it accepts connections.
    pub fn start_again(&mut self) {
        self.stop();
        set_log_aside(&self.log_path());
        self.spawn();
        if let Err(e) = self.wait_ready() {
            let report = self.failure_report(&format!("start_again: {e:?}"));
            self.kill();
            panic!("{report}");
        }
    }

    /// Runs `rabbitmqctl` against this node (e.g. to raise an alarm) and
    /// returns its output; panics if it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let scripts = scripts_dir();
        let output = Command::new(scripts.join("rabbitmqctl"))
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // The node's cookie is in its HOME.
            .env("HOME", &self.root)
            .env("LANG", "C.UTF-8")
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_CTL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .output()
            .expect("run rabbitmqctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} failed:\n{text}"
        );
        text
    }

    fn write_config(&self) {
        let mut config = format!("listeners.tcp.1 = 127.0.0.1:{}\n", self.port);
        if let (Some(tls), Some(port)) = (&self.tls, self.tls_port) {
            config.push_str(&format!(
                "listeners.ssl.1 = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = {}\n\
                 ssl_options.fail_if_no_peer_cert = {}\n",
                tls.ca_cert.display(),
                tls.cert.display(),
                tls.key.display(),
                if tls.require_client_cert {
                    "verify_peer"
                } else {
                    "verify_none"
                },
                tls.require_client_cert,
            ));
        }
        fs::write(self.config_path(), config).expect("write rabbitmq.conf");
    }

    fn spawn(&mut self) {
        let script = scripts_dir().join("rabbitmq-server");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("rabbitmq.stdout"))
            .expect("open RabbitMQ stdout file");
        let err = out.try_clone().expect("dup stdout file");
        let root = &self.root;
        let child = Command::new(&script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root)
            .env("LANG", "C.UTF-8")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", self.config_path())
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                root.join("advanced.config"),
            )
            .env("RABBITMQ_CONF_ENV_FILE", root.join("rabbitmq-env.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                root.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", root.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", root.join("log"))
            .env("RABBITMQ_PID_FILE", root.join("rabbitmq.pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): RabbitMQ must be installed for these tests \
                     (Debian: apt-get install rabbitmq-server; .ci/run does it)",
                    script.display()
                )
            });
        self.process.started(child);
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let mut listening = vec![
            format!("started TCP listener on 127.0.0.1:{}", self.port),
            "Server startup complete".to_string(),
        ];
        let amqp = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let mut addrs = [amqp, amqp];
        if let Some(port) = self.tls_port {
            listening.push(format!("started TLS (SSL) listener on 127.0.0.1:{port}"));
            addrs[1] = format!("127.0.0.1:{port}").parse().unwrap();
        }
        let readiness = Readiness {
            port_in_use: "eaddrinuse",
            listening: &listening,
            addrs,
        };
        self.process
            .wait_ready(&self.log_path(), &readiness, START_TIMEOUT)
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("rabbitmq.conf")
    }

    fn failure_report(&self, what: &str) -> String {
        format!(
            "RabbitMQ node {} did not come up ({what}) on 127.0.0.1:{} within {START_TIMEOUT:?}.\n\
             --- last lines of {} ---\n{}\n--- last lines of its stdout/stderr ---\n{}",
            self.node,
            self.port,
            self.log_path().display(),
            self.log_tail(40),
            tail(&self.root.join("rabbitmq.stdout"), 20),
        )
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let log = self.log_path();
        self.process
            .drop_server(&log, &mut self.dir, "HERALD_TEST_KEEP_RABBITMQ");
    }
}

/// The Erlang cookie of the node whose `HOME` is `home` (and of the
/// `rabbitmqctl` calls that run with that `HOME`); Erlang refuses a cookie
/// file others can read.
fn write_cookie(home: &std::path::Path, cookie: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = home.join(".erlang.cookie");
    fs::write(&path, cookie).expect("write .erlang.cookie");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod .erlang.cookie");
}

/// Three distinct free loopback ports (AMQP, AMQPS, Erlang distribution),
/// all held until all are known.
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().unwrap().port();
    [port(0), port(1), port(2)]
}

/// Where RabbitMQ's own scripts are (see the module docs).
fn scripts_dir() -> PathBuf {
    std::env::var_os("HERALD_TEST_RABBITMQ_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin"))
}
