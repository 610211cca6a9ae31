//! How the harness runs Erlang for ejabberd: the `erl` command with the
//! environment every node needs, where ejabberd's application lives, and
//! scripts evaluated in a short-lived hidden node that talks to a running
//! ejabberd node (provisioning users, joining a cluster).

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::Ejabberd;
use crate::server::random_hex;

impl Ejabberd {
    /// An `erl` command with the environment every node here needs.
    pub(super) fn erl(&self) -> Command {
        let bin = std::env::var("HERALD_TEST_ERL").unwrap_or_else(|_| "erl".into());
        let mut command = Command::new(bin);
        command
            .current_dir(&self.root)
            // Should an epmd have to be started by erl after all: loopback only.
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_CRASH_DUMP_BYTES", "0");
        if let Some(libs) = &self.libs {
            command.env("ERL_LIBS", libs);
        }
        command
    }

    /// Evaluates `script` in a hidden node with this node's cookie, the
    /// variables `env` set, and `HERALD_EJABBERD_NODE` naming this node.
    /// Panics if erl cannot run; the script's exit status is the caller's.
    pub(super) fn eval_hidden(&self, script: &str, env: &[(&str, &OsStr)]) -> Output {
        self.erl()
            .args(["-sname", &format!("herald-ctl-{}@localhost", random_hex())])
            .args([
                "-setcookie",
                &self.cookie,
                "-hidden",
                "-noshell",
                "-noinput",
            ])
            .args(["-kernel", "inet_dist_use_interface", "{127,0,0,1}"])
            .args(["-eval", script])
            .env("HERALD_EJABBERD_NODE", &self.node)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run erl against the ejabberd node: {e}"))
    }
}

/// The directory to put in `ERL_LIBS` so that Erlang finds ejabberd's
/// application: `HERALD_TEST_EJABBERD_LIBS`, else the directory under
/// /usr/lib (or Erlang's own lib directory) that holds `ejabberd-*/ebin`.
/// Debian puts it in /usr/lib/<multiarch triplet>, outside Erlang's default
/// code path; its dependencies (p1_xmpp, fast_yaml, ...) are in the default
/// path.
pub(super) fn ejabberd_libs() -> Result<Option<PathBuf>, String> {
    if let Some(dir) = std::env::var_os("HERALD_TEST_EJABBERD_LIBS") {
        return Ok(Some(PathBuf::from(dir)));
    }
    let mut candidates = vec![
        PathBuf::from("/usr/lib/erlang/lib"),
        PathBuf::from("/usr/local/lib/erlang/lib"),
    ];
    if let Ok(entries) = fs::read_dir("/usr/lib") {
        candidates.extend(entries.flatten().map(|e| e.path()));
    }
    for dir in candidates {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let holds_ejabberd = entries.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("ejabberd-")
                && e.path().join("ebin/ejabberd.app").is_file()
        });
        if holds_ejabberd {
            return Ok(Some(dir));
        }
    }
    Err(
        "ejabberd is not installed (no ejabberd-*/ebin/ejabberd.app under /usr/lib): \
         ejabberd 23.01 must be installed for these tests (Debian: apt-get install ejabberd; \
         .ci/run does it), or set HERALD_TEST_EJABBERD_LIBS"
            .to_string(),
    )
}

/// An Erlang string literal ("...") for a command-line term.
pub(super) fn erlang_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
