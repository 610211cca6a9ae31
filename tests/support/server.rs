//! What a test XMPP server offers whichever server it is ([`XmppServer`],
//! implemented by [`super::prosody::Prosody`] and [`super::ejabberd::Ejabberd`]),
//! and the process plumbing both harnesses share.
//!
//! Both provision the same world: users on `localhost` with password
//! `pw-<user>`, each with [`ROSTER_CONTACT`] on the roster with subscription
//! `both`, and one component domain, [`COMPONENT_DOMAIN`], with a secret
//! picked per run. A test written against `impl XmppServer` runs unchanged on
//! either server.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The XMPP domain of the test users.
pub const DOMAIN: &str = "localhost";
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

    /// "user@localhost".
    fn jid(&self, user: &str) -> String {
        format!("{user}@{DOMAIN}")
    }
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

/// SIGTERM by pid via the shell's `kill` builtin (no libc dependency; `sh` is
/// always there, unlike /usr/bin/kill).
pub fn send_sigterm(pid: u32) {
    let _ = Command::new("sh")
        .args([
            "-c",
            "kill -TERM \"$1\" 2>/dev/null",
            "sh",
            &pid.to_string(),
        ])
        .status();
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
