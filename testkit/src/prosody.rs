//! A private Prosody 0.12 for one test, an [`XmppServer`].
//!
//! [`Prosody::start`] is synchronous (it blocks the calling thread for the
//! ~0.1–0.5 s Prosody needs to come up) so it can be called from plain
//! `#[test]`s and from `#[tokio::test]`s alike; [`Drop`] stops the server.
//!
//! * Config: `deploy/prosody/prosody.cfg.lua.in`, with the ports, paths and
//!   component secret filled in, written into a fresh [`TempDir`].
//! * Listens on 127.0.0.1 only: one c2s port and one component (XEP-0114)
//!   port, both picked per run; no s2s, no HTTP, no TLS.
//! * Users are provisioned by writing Prosody's `internal` storage files
//!   directly (one account file and one roster file per user), which takes
//!   milliseconds for thousands of users. Each roster holds
//!   `herald@broadcast.localhost` with subscription `both`, so Prosody routes
//!   the user's presence (available at login, unavailable at logout or when
//!   the TCP connection drops) to the component.
//!
//! Environment knobs (all optional):
//! * `HERALD_TEST_PROSODY_BIN`: the prosody executable (default `prosody`).
//! * `HERALD_TEST_PROSODY_LOG`: Prosody's log level (default `info`;
//!   `debug` logs every stanza).
//! * `HERALD_TEST_TMPDIR`: where the per-run directory goes (default
//!   `/dev/shm` if writable, else the system temp dir).
//! * `HERALD_TEST_KEEP_PROSODY=1`: keep the temp dir (config, data, log) after
//!   the test and print where it is.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::server::{
    pick_two_free_ports, random_hex, set_log_aside, tail, temp_root, user_entry, Readiness,
    ServerProcess, StartError, XmppServer, ROSTER_CONTACT, SECOND_DOMAIN,
};

/// The config template, compiled in so a test binary is self-contained.
const CONFIG_TEMPLATE: &str = include_str!("../../deploy/prosody/prosody.cfg.lua.in");

/// How long to wait for Prosody to listen on both ports.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `stop()` waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries with fresh ports when another process grabbed one of ours.
const PORT_ATTEMPTS: usize = 3;

/// A running (or stopped) private Prosody. See the module docs.
pub struct Prosody {
    dir: Option<TempDir>,
    root: PathBuf,
    c2s_port: u16,
    component_port: u16,
    secret: String,
    passwords: HashMap<String, String>,
    process: ServerProcess,
}

impl Prosody {
    /// Starts a Prosody with `users` (local parts, e.g. `"alice"`) provisioned
    /// on `localhost`, each with a roster holding `herald@broadcast.localhost`
    /// (subscription `both`). Returns once both the c2s and the component port
    /// accept TCP connections. Panics, with the tail of Prosody's log, if
    /// Prosody is missing or does not come up within [`START_TIMEOUT`].
    ///
    /// Blocking: fine to call from async tests (it only sleeps in short steps).
    pub fn start(users: &[&str]) -> Prosody {
        let dir = tempfile::Builder::new()
            .prefix("herald-prosody-")
            .tempdir_in(temp_root())
            .expect("create temp dir for Prosody");
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("data")).expect("create Prosody data dir");
        // An empty certificate directory: Prosody only logs an error when the
        // directory it indexes at startup is missing, but keep the log clean.
        fs::create_dir_all(root.join("certs")).expect("create Prosody certs dir");

        let mut prosody = Prosody {
            dir: Some(dir),
            root,
            c2s_port: 0,
            component_port: 0,
            secret: format!("secret-{}", random_hex()),
            passwords: HashMap::new(),
            process: ServerProcess::new("Prosody"),
        };
        prosody.provision(users);

        for attempt in 1..=PORT_ATTEMPTS {
            let (c2s, component) = pick_two_free_ports();
            prosody.c2s_port = c2s;
            prosody.component_port = component;
            prosody.write_config();
            prosody.spawn();
            match prosody.wait_ready() {
                Ok(()) => return prosody,
                Err(StartError::PortInUse) if attempt < PORT_ATTEMPTS => {
                    prosody.kill();
                    let _ = fs::remove_file(prosody.log_path());
                }
                Err(e) => {
                    let msg = prosody.failure_report(&format!("{e:?}"));
                    prosody.kill();
                    panic!("{msg}");
                }
            }
        }
        unreachable!()
    }

    /// Writes the account and roster files of `users`. Prosody's internal
    /// storage keeps them as Lua source:
    /// `data/localhost/accounts/<user>.dat` = `return { ["password"] = "..."; };`
    /// and `data/localhost/roster/<user>.dat` = `return { [false] = {version, pending}; [jid] = {subscription, groups}; };`
    /// with the user name %-encoded the way Prosody's datamanager does it
    /// (every non-alphanumeric byte as `%xx`, lower-case hex).
    fn provision(&mut self, users: &[&str]) {
        let roster_body = format!(
            "return {{\n\t[false] = {{\n\t\t[\"version\"] = 1;\n\t\t[\"pending\"] = {{}};\n\t}};\n\t[{}] = {{\n\t\t[\"subscription\"] = \"both\";\n\t\t[\"groups\"] = {{}};\n\t\t[\"name\"] = \"Herald\";\n\t}};\n}};\n",
            lua_string(ROSTER_CONTACT)
        );
        for &user in users {
            let (local, domain) = user_entry(user);
            let host_dir = self.data_dir().join(encode_path_component(domain));
            let accounts = host_dir.join("accounts");
            let roster = host_dir.join("roster");
            fs::create_dir_all(&accounts).expect("create accounts dir");
            fs::create_dir_all(&roster).expect("create roster dir");
            let password = format!("pw-{local}");
            let file = format!("{}.dat", encode_path_component(local));
            fs::write(
                accounts.join(&file),
                format!(
                    "return {{\n\t[\"password\"] = {};\n}};\n",
                    lua_string(&password)
                ),
            )
            .expect("write Prosody account file");
            fs::write(roster.join(&file), &roster_body).expect("write Prosody roster file");
            self.passwords.insert(user.to_string(), password);
        }
    }

    fn write_config(&self) {
        let level = std::env::var("HERALD_TEST_PROSODY_LOG").unwrap_or_else(|_| "info".into());
        let config = CONFIG_TEMPLATE
            .replace(
                "@DATA_DIR@",
                &lua_escape(&self.data_dir().to_string_lossy()),
            )
            .replace(
                "@PID_FILE@",
                &lua_escape(&self.root.join("prosody.pid").to_string_lossy()),
            )
            .replace(
                "@LOG_FILE@",
                &lua_escape(&self.log_path().to_string_lossy()),
            )
            .replace(
                "@CERTS_DIR@",
                &lua_escape(&self.root.join("certs").to_string_lossy()),
            )
            .replace("@LOG_LEVEL@", &lua_escape(&level))
            .replace("@C2S_PORT@", &self.c2s_port.to_string())
            .replace("@COMPONENT_PORT@", &self.component_port.to_string())
            .replace("@COMPONENT_SECRET@", &lua_escape(&self.secret))
            // Last in the file: the options above stay global or the component's.
            + &format!("\nVirtualHost \"{SECOND_DOMAIN}\"\n");
        fs::write(self.config_path(), config).expect("write Prosody config");
    }

    fn spawn(&mut self) {
        let bin = std::env::var("HERALD_TEST_PROSODY_BIN").unwrap_or_else(|_| "prosody".into());
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stdout_path())
            .expect("open Prosody stdout file");
        let err = out.try_clone().expect("dup stdout file");
        let child = Command::new(&bin)
            .arg("-F")
            .arg("--config")
            .arg(self.config_path())
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{bin}` ({e}): Prosody 0.12 must be installed for these tests \
                     (Debian: apt-get install prosody; .ci/run does it)"
                )
            });
        self.process.started(child);
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let listening = [
            format!("Activated service 'c2s' on [127.0.0.1]:{}", self.c2s_port),
            format!(
                "Activated service 'component' on [127.0.0.1]:{}",
                self.component_port
            ),
        ];
        // (The component probe shows up in Prosody's log as a component
        // connection that closes at once: harmless.)
        let readiness = Readiness {
            port_in_use: "Failed to open server port",
            listening: &listening,
            addrs: [
                self.c2s_addr().parse().unwrap(),
                self.component_addr().parse().unwrap(),
            ],
        };
        self.process
            .wait_ready(&self.log_path(), &readiness, START_TIMEOUT)
    }

    /// The provisioned user names (unordered).
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.passwords.keys().map(String::as_str)
    }

    /// Prosody's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The temp dir holding config, data, pid file and logs.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("prosody.cfg.lua")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("prosody.log")
    }

    fn stdout_path(&self) -> PathBuf {
        self.root.join("prosody.stdout")
    }

    fn failure_report(&self, what: &str) -> String {
        format!(
            "Prosody did not come up ({what}) on c2s {} / component {} within {START_TIMEOUT:?}.\n\
             config: {}\n--- last lines of {} ---\n{}\n--- last lines of its stdout/stderr ---\n{}",
            self.c2s_addr(),
            self.component_addr(),
            self.config_path().display(),
            self.log_path().display(),
            self.log_tail(40),
            tail(&self.stdout_path(), 20),
        )
    }
}

impl XmppServer for Prosody {
    fn start(users: &[&str]) -> Prosody {
        Prosody::start(users)
    }

    fn name(&self) -> &'static str {
        "Prosody"
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
            .unwrap_or_else(|| panic!("user {user:?} was not provisioned on this Prosody"))
    }

    fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Takes about 1 s (Prosody's
    /// shutdown waits for a 1 s timer). `Drop` does not use this: it SIGKILLs
    /// at once.
    fn stop(&mut self) {
        self.process.stop(STOP_TIMEOUT);
    }

    fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops Prosody first if it still runs; keeps offline messages too.
    /// Panics if it does not come up, e.g. when another process took one of
    /// the ports in the meantime.
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

impl Drop for Prosody {
    fn drop(&mut self) {
        let log = self.log_path();
        self.process
            .drop_server(&log, &mut self.dir, "HERALD_TEST_KEEP_PROSODY");
    }
}

/// Prosody's datamanager encoding of a host or user name in a file path:
/// every byte that is not ASCII alphanumeric becomes `%xx` (lower-case hex).
pub fn encode_path_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Escapes text for a double-quoted Lua string.
fn lua_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn lua_string(s: &str) -> String {
    format!("\"{}\"", lua_escape(s))
}
