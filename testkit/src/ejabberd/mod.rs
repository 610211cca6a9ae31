//! A private ejabberd 23.01 for one test, an [`XmppServer`].
//!
//! [`Ejabberd::start`] is synchronous like [`crate::prosody::Prosody::start`]
//! (ejabberd needs about a second to come up); [`Drop`] kills the node.
//!
//! * Config: `deploy/ejabberd/ejabberd.yml.in`, with the ports, log level
//!   and component secret filled in, written into a fresh [`TempDir`]
//!   (under `/dev/shm` when possible) that also holds the Mnesia directory
//!   and the logs.
//! * ejabberd runs as a plain Erlang node, not through ejabberdctl or a
//!   service: `erl -sname herald-ejabberd-<random>@localhost -s ejabberd`
//!   with a random cookie, the distribution listener bound to 127.0.0.1, and
//!   the node registered with the epmd on 127.0.0.1:4369 (RabbitMQ's, when it
//!   runs; otherwise the harness starts one with `epmd -daemon`, bound to
//!   loopback, and leaves it running for later tests). The unique node name
//!   lets any number of tests run their own ejabberd at once.
//! * Listens on 127.0.0.1 only: one c2s port and one component (XEP-0114)
//!   port, both picked per run; no s2s, no HTTP; TLS only on the component port of
//!   [`Ejabberd::start_with_component_tls`].
//! * [`EjabberdCluster`] boots several such nodes and joins them into one
//!   Mnesia cluster serving the same domains.
//! * Users are provisioned once the node is up, by one RPC from a short-lived
//!   hidden Erlang node: a function that loops inside the ejabberd node over
//!   the user list, calling `ejabberd_auth:try_register/3` and
//!   `mod_roster:set_roster/1` (`herald@broadcast.localhost`, subscription
//!   `both`) per user, then syncs the two tables to disk so that a node
//!   killed later still has them when it starts again. About 1 ms per user
//!   (10,000 users: about 12 s on a busy two-core machine).
//!
//! Environment knobs (all optional):
//! * `HERALD_TEST_ERL`: the erl executable (default `erl`).
//! * `HERALD_TEST_EJABBERD_LIBS`: the directory holding `ejabberd-*/ebin`
//!   (default: found under /usr/lib, e.g. Debian's /usr/lib/x86_64-linux-gnu).
//! * `HERALD_TEST_EJABBERD_LOG`: ejabberd's log level (default `info`;
//!   `debug` logs every stanza).
//! * `HERALD_TEST_TMPDIR`: where the per-run directory goes (default
//!   `/dev/shm` if writable, else the system temp dir).
//! * `HERALD_TEST_KEEP_EJABBERD=1`: keep the per-run directory (config,
//!   Mnesia, logs) after the test and print where it is.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;

use crate::certs::TestPki;
use crate::erlang::ensure_epmd;
use crate::server::{
    pick_two_free_ports, random_hex, set_log_aside, tail, temp_root, user_entry, Readiness,
    ServerProcess, StartError, XmppServer, SECOND_DOMAIN,
};

/// The config template, compiled in so a test binary is self-contained.
const CONFIG_TEMPLATE: &str = include_str!("../../../deploy/ejabberd/ejabberd.yml.in");

/// How long to wait for ejabberd to listen on both ports. An Erlang node
/// boots in 5-10 s on a quiet machine; with tests starting several at once
/// on two busy cores it has taken over 30 s.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `stop()` waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Tries with fresh ports when another process grabbed one of ours.
const PORT_ATTEMPTS: usize = 3;

mod cluster;
mod erl;
pub mod on_cluster;
mod provision;

pub use cluster::EjabberdCluster;
use erl::{ejabberd_libs, erlang_string};

/// What the nodes of one ejabberd (a single node, or the nodes of a
/// cluster) share: the Erlang cookie, the component secret and the users'
/// passwords.
#[derive(Clone)]
struct Shared {
    cookie: String,
    secret: String,
    passwords: HashMap<String, String>,
}

impl Shared {
    /// Fresh cookie and secret; `users` with password `pw-<local part>`.
    fn new(users: &[&str]) -> Shared {
        let passwords = users
            .iter()
            .map(|&user| {
                let (local, _) = user_entry(user);
                (user.to_string(), format!("pw-{local}"))
            })
            .collect();
        Shared {
            cookie: format!("herald-{}", random_hex()),
            secret: format!("secret-{}", random_hex()),
            passwords,
        }
    }
}

/// A running (or stopped) private ejabberd node. See the module docs.
pub struct Ejabberd {
    dir: Option<TempDir>,
    root: PathBuf,
    node: String,
    cookie: String,
    libs: Option<PathBuf>,
    c2s_port: u16,
    component_port: u16,
    secret: String,
    passwords: HashMap<String, String>,
    /// The PKI of a component listener that speaks TLS.
    component_tls: Option<Box<TestPki>>,
    process: ServerProcess,
}

impl Ejabberd {
    /// Starts an ejabberd node with `users` (local parts, e.g. `"alice"`)
    /// provisioned on `localhost` with password `pw-<user>`, each with a
    /// roster holding `herald@broadcast.localhost` (subscription `both`).
    /// Returns once both the c2s and the component port accept TCP
    /// connections and every user is provisioned. Panics, with the tail of
    /// ejabberd's log, if ejabberd or Erlang is missing or does not come up
    /// within [`START_TIMEOUT`].
    ///
    /// Blocking: fine to call from async tests (it only sleeps in short steps).
    pub fn start(users: &[&str]) -> Ejabberd {
        Self::start_configured(users, None)
    }

    /// As [`Ejabberd::start`], but the component listener speaks TLS from
    /// the first byte (`tls: true`) with `pki`'s server certificate.
    pub fn start_with_component_tls(users: &[&str], pki: &TestPki) -> Ejabberd {
        Self::start_configured(users, Some(Box::new(pki.clone())))
    }

    fn start_configured(users: &[&str], component_tls: Option<Box<TestPki>>) -> Ejabberd {
        let mut ejabberd = Ejabberd::boot(Shared::new(users), component_tls);
        ejabberd.provision();
        ejabberd
    }

    /// Boots a node with `shared`'s cookie, secret and passwords, with no
    /// users provisioned yet; returns once it listens. Panics like
    /// [`Ejabberd::start`].
    fn boot(shared: Shared, component_tls: Option<Box<TestPki>>) -> Ejabberd {
        let libs = ejabberd_libs().unwrap_or_else(|e| panic!("{e}"));
        ensure_epmd();
        let dir = tempfile::Builder::new()
            .prefix("herald-ejabberd-")
            .tempdir_in(temp_root())
            .expect("create temp dir for ejabberd");
        let root = dir.path().to_path_buf();
        let mut ejabberd = Ejabberd {
            dir: Some(dir),
            root,
            node: format!("herald-ejabberd-{}@localhost", random_hex()),
            cookie: shared.cookie,
            libs,
            c2s_port: 0,
            component_port: 0,
            secret: shared.secret,
            passwords: shared.passwords,
            component_tls,
            process: ServerProcess::new("ejabberd"),
        };

        for attempt in 1..=PORT_ATTEMPTS {
            let (c2s, component) = pick_two_free_ports();
            ejabberd.c2s_port = c2s;
            ejabberd.component_port = component;
            ejabberd.write_config();
            ejabberd.spawn();
            match ejabberd.wait_ready() {
                Ok(()) => break,
                Err(StartError::PortInUse) if attempt < PORT_ATTEMPTS => {
                    ejabberd.kill();
                    let _ = fs::remove_file(ejabberd.log_path());
                }
                Err(e) => {
                    let msg = ejabberd.failure_report(&format!("{e:?}"));
                    ejabberd.kill();
                    panic!("{msg}");
                }
            }
        }
        ejabberd
    }

    fn write_config(&self) {
        let level = std::env::var("HERALD_TEST_EJABBERD_LOG").unwrap_or_else(|_| "info".into());
        assert!(
            level.chars().all(|c| c.is_ascii_lowercase()),
            "HERALD_TEST_EJABBERD_LOG must be an ejabberd log level such as info or debug"
        );
        let mut config = CONFIG_TEMPLATE
            .replace("@LOG_LEVEL@", &level)
            .replace("@C2S_PORT@", &self.c2s_port.to_string())
            .replace("@COMPONENT_PORT@", &self.component_port.to_string())
            // The secret is hex: nothing to escape in a YAML string.
            .replace("@COMPONENT_SECRET@", &self.secret);
        let hosts = "hosts:\n  - localhost\n";
        assert!(config.contains(hosts), "the template lists its hosts");
        config = config.replace(hosts, &format!("{hosts}  - {SECOND_DOMAIN}\n"));
        if let Some(pki) = &self.component_tls {
            let service = "    module: ejabberd_service\n";
            assert!(config.contains(service), "the template names the service");
            // The listener's own certificate and key, in one file: ejabberd
            // cannot pick one from `certfiles` by name before the handshake.
            let combined = self.root.join("component.pem");
            let pem = [&pki.server_cert, &pki.server_key]
                .map(|file| fs::read_to_string(file).expect("read test PKI"))
                .concat();
            fs::write(&combined, pem).expect("write component certificate");
            config = config.replace(
                service,
                &format!(
                    "{service}    tls: true\n    certfile: \"{}\"\n",
                    combined.display()
                ),
            );
            // With its CA: ejabberd drops a certificate it cannot chain.
            config.push_str("\ncertfiles:\n");
            for file in [&pki.server_cert, &pki.server_key, &pki.ca_cert] {
                config.push_str(&format!("  - \"{}\"\n", file.display()));
            }
        }
        fs::write(self.config_path(), config).expect("write ejabberd config");
    }

    fn spawn(&mut self) {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stdout_path())
            .expect("open ejabberd stdout file");
        let err = out.try_clone().expect("dup stdout file");
        let mnesia_dir = erlang_string(&self.root.join("mnesia").to_string_lossy());
        let child = self
            .erl()
            .args(["-sname", &self.node, "-setcookie", &self.cookie])
            .args(["-noshell", "-noinput"])
            .args(["-kernel", "inet_dist_use_interface", "{127,0,0,1}"])
            .args(["-mnesia", "dir", &mnesia_dir])
            // Log to the file only (the console gets critical messages), and
            // never rotate it: a long test keeps its whole log.
            .args(["-ejabberd", "quiet", "true", "log_rotate_size", "infinity"])
            .args(["-s", "ejabberd"])
            .env("EJABBERD_CONFIG_PATH", self.config_path())
            .env("EJABBERD_LOG_PATH", self.log_path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run erl ({e}): Erlang and ejabberd 23.01 must be installed for these \
                     tests (Debian: apt-get install ejabberd; .ci/run does it)"
                )
            });
        self.process.started(child);
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        // Listeners are announced once ejabberd and its modules have started.
        let listening = [
            format!(
                "Start accepting TCP connections at 127.0.0.1:{} for ejabberd_c2s",
                self.c2s_port
            ),
            format!(
                "Start accepting {} connections at 127.0.0.1:{} for ejabberd_service",
                if self.component_tls.is_some() {
                    "TLS"
                } else {
                    "TCP"
                },
                self.component_port
            ),
        ];
        let readiness = Readiness {
            // "Failed to open socket at 127.0.0.1:PORT for ejabberd_c2s:
            // address already in use"; the node then stops.
            port_in_use: "address already in use",
            listening: &listening,
            addrs: [
                self.c2s_addr().parse().unwrap(),
                self.component_addr().parse().unwrap(),
            ],
        };
        self.process
            .wait_ready(&self.log_path(), &readiness, START_TIMEOUT)
    }

    /// The Erlang node's name, "herald-ejabberd-<hex>@localhost".
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's OS pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("ejabberd.yml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("ejabberd.log")
    }

    fn stdout_path(&self) -> PathBuf {
        self.root.join("ejabberd.stdout")
    }

    fn failure_report(&self, what: &str) -> String {
        format!(
            "ejabberd did not come up ({what}) on c2s {} / component {} within {START_TIMEOUT:?}.\n\
             node: {}, config: {}\n--- last lines of {} ---\n{}\n\
             --- last lines of its stdout/stderr ---\n{}",
            self.c2s_addr(),
            self.component_addr(),
            self.node,
            self.config_path().display(),
            self.log_path().display(),
            self.log_tail(40),
            tail(&self.stdout_path(), 20),
        )
    }
}

impl XmppServer for Ejabberd {
    fn start(users: &[&str]) -> Ejabberd {
        Ejabberd::start(users)
    }

    fn name(&self) -> &'static str {
        "ejabberd"
    }

    fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    fn component_port(&self) -> u16 {
        self.component_port
    }

    fn component_secret(&self) -> &str {
        &self.secret
    }

    fn password(&self, user: &str) -> &str {
        self.passwords
            .get(user)
            .unwrap_or_else(|| panic!("user {user:?} was not provisioned on this ejabberd"))
    }

    fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// SIGTERM (the Erlang runtime then stops its applications in order),
    /// wait up to 15 s, then SIGKILL. Takes about 1 s. `Drop` does not use
    /// this: it SIGKILLs at once.
    fn stop(&mut self) {
        self.process.stop(STOP_TIMEOUT);
    }

    fn kill(&mut self) {
        self.process.kill();
    }

    /// Same node name (Mnesia's schema belongs to it), so the users and
    /// rosters in the Mnesia directory are found again. Stops the node first
    /// if it still runs. Panics if it does not come up, e.g. when another
    /// process took one of the ports in the meantime.
    fn start_again(&mut self) {
        self.stop();
        set_log_aside(&self.log_path());
        self.spawn();
        if let Err(e) = self.wait_ready() {
            let msg = self.failure_report(&format!("start_again: {e:?}"));
            self.kill();
            panic!("{msg}");
        }
    }

    fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        let log = self.log_path();
        self.process
            .drop_server(&log, &mut self.dir, "HERALD_TEST_KEEP_EJABBERD");
    }
}
