//! What a test XMPP server offers whichever server it is ([`XmppServer`],
//! implemented by [`crate::prosody::Prosody`] and [`crate::ejabberd::Ejabberd`]),
//! and the process plumbing both harnesses share.
//!
//! Both provision the same world: users on `localhost` (or, named
//! `user@second.localhost`, on a second virtual host, [`SECOND_DOMAIN`]) with
//! password `pw-<user>`, each with [`ROSTER_CONTACT`] on the roster with
//! subscription `both`, and one component domain, [`COMPONENT_DOMAIN`], with
//! a secret picked per run. A test written against `impl XmppServer` runs unchanged on
//! either server.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// The XMPP domain of the test users.
pub const DOMAIN: &str = "localhost";
/// A second virtual host both servers serve, for tests of several domains.
pub const SECOND_DOMAIN: &str = "second.localhost";
/// The domain of the component (Herald) on the test server.
pub const COMPONENT_DOMAIN: &str = "broadcast.localhost";
/// The contact every provisioned roster holds (subscription `both`).
pub const ROSTER_CONTACT: &str = "herald@broadcast.localhost";

/// A private XMPP server for one test, on loopback, with ports picked per run.
pub trait XmppServer {
    /// Starts a server with `users` (local parts, e.g. `"alice"`) provisioned
    /// on [`DOMAIN`] with password `pw-<user>` and [`ROSTER_CONTACT`] on their
    /// roster (subscription `both`). Returns once the c2s and the component
    /// port accept connections; panics with the server's log otherwise, or
    /// when the server is not installed. Blocking, in short sleeps: fine to
    /// call from async tests.
    fn start(users: &[&str]) -> Self
    where
        Self: Sized;

    /// The server's name for messages: "Prosody", "ejabberd".
    fn name(&self) -> &'static str;

    fn c2s_port(&self) -> u16;

    fn component_port(&self) -> u16;

    /// The component secret (random per `start`).
    fn component_secret(&self) -> &str;

    /// The password of a provisioned user. Panics for unknown users.
    fn password(&self, user: &str) -> &str;

    /// The last `lines` lines of the server's log.
    fn log_tail(&self, lines: usize) -> String;

    /// Graceful stop: the server closes its streams (the component sees the
    /// stream end, users go offline). Idempotent.
    fn stop(&mut self);

    /// Hard crash: SIGKILL at once, no stream close. Idempotent.
    fn kill(&mut self);

    /// Starts the server again after `stop()`/`kill()` with the same ports,
    /// data (users, rosters) and secret.
    fn start_again(&mut self);

    fn is_running(&mut self) -> bool;

    /// "127.0.0.1:PORT" of the c2s listener.
    fn c2s_addr(&self) -> String {
        format!("127.0.0.1:{}", self.c2s_port())
    }

    /// "127.0.0.1:PORT" of the component (XEP-0114) listener.
    fn component_addr(&self) -> String {
        format!("127.0.0.1:{}", self.component_port())
    }

    /// The users' domain: "localhost".
    fn domain(&self) -> &'static str {
        DOMAIN
    }

    /// The component's domain: "broadcast.localhost".
    fn component_domain(&self) -> &'static str {
        COMPONENT_DOMAIN
    }

    /// "user@localhost" ("user@second.localhost" stays as it is).
    fn jid(&self, user: &str) -> String {
        let (local, domain) = user_entry(user);
        format!("{local}@{domain}")
    }
}

/// A test user as the harnesses take it, `name` (on [`DOMAIN`]) or
/// `name@second.localhost`: its local part and domain. Panics otherwise.
pub fn user_entry(user: &str) -> (&str, &str) {
    let (local, domain) = user.split_once('@').unwrap_or((user, DOMAIN));
    assert!(
        domain == DOMAIN || domain == SECOND_DOMAIN,
        "test user {user:?} must be on {DOMAIN} or {SECOND_DOMAIN}"
    );
    check_user_name(local);
    (local, domain)
}

/// Panics unless `user` is a plain lower-case XMPP local part, the only kind
/// the harnesses write into storage files and Erlang terms.
pub fn check_user_name(user: &str) {
    assert!(
        !user.is_empty()
            && user == user.to_lowercase()
            && !user.contains(['@', '/', '"', '\'', '&', ':', '<', '>', ' ', '\t', '\n', '\\']),
        "test user name {user:?} must be a lower-case XMPP local part"
    );
}

/// Where the per-run directories go: `HERALD_TEST_TMPDIR`, else `/dev/shm`
/// (tmpfs) when writable, else the system temp dir. Creating thousands of
/// small files takes ~0.5 ms each on this machine's /tmp (ext4) but ~20 us on
/// tmpfs, which is what makes provisioning 10k+ users instant.
pub fn temp_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_TEST_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// Two distinct free loopback ports. Both listeners are held until both are
/// known, so the two differ; the server binds them a few ms later (a race
/// with other processes is detected from its log and retried).
pub fn pick_two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// SIGTERM by pid (see [`send_signal`]).
pub fn send_sigterm(pid: u32) {
    send_signal(pid, "TERM");
}

/// Sends signal `name` ("TERM", "STOP", "CONT"...) to `pid`. Whether the
/// signal was delivered.
pub fn send_signal(pid: u32, name: &str) -> bool {
    signal_target(name, &pid.to_string())
}

/// [`send_signal`] for a process a test relies on: panics if it is gone.
pub fn signal(pid: u32, name: &str) {
    assert!(send_signal(pid, name), "kill -s {name} {pid}");
}

/// SIGKILL to every process of the group `pgid` leads (a server whose
/// start script runs the real server as its child).
pub fn kill_group(pgid: u32) {
    signal_target("KILL", &format!("-{pgid}"));
}

/// `kill -s signal -- target` via the shell's builtin (no libc dependency;
/// `sh` is always there, unlike /usr/bin/kill).
fn signal_target(signal: &str, target: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" -- \"$2\" 2>/dev/null",
            "sh",
            signal,
            target,
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// The last `lines` lines of a text file, or why it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// 16 random-enough hex digits (node names, cookies, secrets, AMQP names)
/// without extra crates: std's per-process random hash keys mixed with the
/// time, the pid and a counter.
pub fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// Why a server did not come up.
#[derive(Debug)]
pub enum StartError {
    PortInUse,
    Exited(String),
    Timeout,
}

/// What a server's log says while it starts.
pub struct Readiness<'a> {
    /// A line that means a port was taken (the harness then retries).
    pub port_in_use: &'a str,
    /// Lines that all appear once both listeners are up.
    pub listening: &'a [String],
    /// The c2s and component addresses, probed over TCP once announced.
    pub addrs: [SocketAddr; 2],
}

/// A server process a harness started; it is only ever stopped by its pid.
pub struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    /// The child leads a process group of its own (spawned with
    /// `process_group(0)`): killing it kills the group, so a start script's
    /// server process does not outlive it.
    group: bool,
}

impl ServerProcess {
    pub fn new(name: &'static str) -> Self {
        ServerProcess {
            name,
            child: None,
            group: false,
        }
    }

    /// For a child spawned as the leader of a new process group.
    pub fn new_group(name: &'static str) -> Self {
        ServerProcess {
            group: true,
            ..Self::new(name)
        }
    }

    pub fn started(&mut self, child: Child) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.child = Some(child);
    }

    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// Waits until `log` shows `ready`'s listening lines and both addresses
    /// accept, or the server exits, reports a taken port, or `timeout` ends.
    pub fn wait_ready(
        &mut self,
        log: &Path,
        ready: &Readiness<'_>,
        timeout: Duration,
    ) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        let mut up = [false, false];
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            if text.contains(ready.port_in_use) {
                return Err(StartError::PortInUse);
            }
            let child = self.child.as_mut().expect("server started");
            if let Some(status) = child.try_wait().expect("wait on the server") {
                return Err(StartError::Exited(status.to_string()));
            }
            // Listeners are announced in the log before they accept; the TCP
            // probe then confirms.
            if ready.listening.iter().all(|line| text.contains(line)) {
                for (up, addr) in up.iter_mut().zip(&ready.addrs) {
                    if !*up {
                        *up = TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok();
                    }
                }
                if up == [true, true] {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(StartError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL.
    pub fn stop(&mut self, timeout: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        send_sigterm(child.id());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "{} (pid {}) ignored SIGTERM for {timeout:?}; killing it",
            self.name,
            child.id()
        );
        self.child = Some(child);
        self.kill();
    }

    /// SIGKILL at once (to the whole group for a group leader).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.group {
                kill_group(child.id());
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What a harness's `Drop` does: after a panic, print the log's tail
    /// (the likeliest clue); SIGKILL (nothing of the server's state matters
    /// any more, and a graceful stop takes about a second); keep the
    /// directory when `keep_var` is "1".
    pub fn drop_server(&mut self, log: &Path, dir: &mut Option<TempDir>, keep_var: &str) {
        if std::thread::panicking() {
            eprintln!(
                "--- test panicked; last lines of {}'s log ({}) ---\n{}",
                self.name,
                log.display(),
                tail(log, 30)
            );
        }
        self.kill();
        if std::env::var_os(keep_var).is_some_and(|v| v == "1") {
            if let Some(dir) = dir.take() {
                eprintln!("keeping {}'s directory {}", self.name, dir.keep().display());
            }
        }
    }
}

/// Moves `log` aside to `log.N` (the first free N), so that a restarted
/// server's readiness and port errors are read from its own lines only.
pub fn set_log_aside(log: &Path) {
    let mut n = 1;
    let aside = |n: usize| PathBuf::from(format!("{}.{n}", log.display()));
    while aside(n).exists() {
        n += 1;
    }
    let _ = fs::rename(log, aside(n));
}
