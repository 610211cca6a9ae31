//! Herald's configuration for a test or a load-test run. It is Herald's own
//! [`Config`], built from Herald's defaults and serialized to TOML, so a
//! written config always has the shape Herald reads and a renamed key breaks
//! the build, not the run.

use std::path::{Path, PathBuf};

use herald::config::{Config, Secret};

use crate::server::XmppServer;

/// Where Herald connects: a component listener, the domains and the secret.
#[derive(Debug, Clone)]
pub struct XmppTarget {
    pub host: String,
    pub port: u16,
    /// The component's own domain.
    pub domain: String,
    pub server_domain: String,
    pub secret: String,
}

impl XmppTarget {
    /// The component listener of a test XMPP server.
    pub fn of(server: &(impl XmppServer + ?Sized)) -> XmppTarget {
        XmppTarget {
            host: "127.0.0.1".into(),
            port: server.component_port(),
            domain: server.component_domain().into(),
            server_domain: server.domain().into(),
            secret: server.component_secret().into(),
        }
    }
}

/// The AMQP names Herald uses.
#[derive(Debug, Clone)]
pub struct Names {
    pub jobs: String,
    pub urgent: String,
    pub dead: String,
    pub events: String,
    pub control: String,
}

impl Names {
    /// Names no other test uses, so that tests can run in parallel.
    pub fn unique() -> Names {
        Names::under(&crate::amqp::unique_name("herald-test"))
    }

    /// `<base>.jobs`, `<base>.urgent`, `<base>.jobs.dead`, `<base>.events`
    /// and `<base>.control`.
    pub fn under(base: &str) -> Names {
        Names {
            jobs: format!("{base}.jobs"),
            urgent: format!("{base}.urgent"),
            dead: format!("{base}.jobs.dead"),
            events: format!("{base}.events"),
            control: format!("{base}.control"),
        }
    }
}

/// Herald's defaults pointed at `xmpp`, the broker at `amqp_url` with
/// `names`, the store at `store`, and HTTP on a free loopback port (its
/// address is read from Herald's log).
pub fn config(xmpp: &XmppTarget, amqp_url: &str, names: &Names, store: &Path) -> Config {
    let mut config = Config::default();
    config.xmpp.host = Some(xmpp.host.clone());
    config.xmpp.port = Some(xmpp.port);
    config.xmpp.domain = xmpp.domain.clone();
    config.xmpp.server_domain = Some(xmpp.server_domain.clone());
    config.xmpp.secret = Some(Secret::new(&xmpp.secret));
    config.amqp.url = Some(Secret::new(amqp_url));
    config.amqp.jobs_queue = names.jobs.clone();
    config.amqp.urgent_queue = names.urgent.clone();
    config.amqp.dead_letter_queue = names.dead.clone();
    config.amqp.events_exchange = names.events.clone();
    config.amqp.control_queue = names.control.clone();
    config.http.listen = "127.0.0.1:0".into();
    config.store.path = store.to_path_buf();
    config
}

/// `config` as the TOML text of a config file.
pub fn to_toml(config: &Config) -> String {
    toml::to_string(config).expect("Herald's config serializes to TOML")
}

/// Writes `config` to the file `path`.
pub fn write(config: &Config, path: &Path) -> Result<(), String> {
    std::fs::write(path, to_toml(config)).map_err(|e| format!("write {}: {e}", path.display()))
}

/// The Herald binary: `explicit` if given, else the one Cargo built into the
/// same target directory as the running program (the load test lives beside
/// it, a test binary one level down, in `deps/`).
pub fn herald_bin(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    let bin = match explicit {
        Some(bin) => bin,
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
            let beside = exe.with_file_name("herald");
            match exe.parent().and_then(Path::parent) {
                Some(up) if !beside.is_file() => up.join("herald"),
                _ => beside,
            }
        }
    };
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no Herald binary at {} (build it with cargo build -p herald, --release for the load test, or name one)",
            bin.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> XmppTarget {
        XmppTarget {
            host: "127.0.0.1".into(),
            port: 5347,
            domain: "broadcast.localhost".into(),
            server_domain: "localhost".into(),
            secret: "s3cret".into(),
        }
    }

    fn names() -> Names {
        Names {
            jobs: "run.jobs".into(),
            urgent: "run.urgent".into(),
            dead: "run.jobs.dead".into(),
            events: "run.events".into(),
            control: "run.control".into(),
        }
    }

    /// What is written reads back, through Herald's own loader, as the
    /// config it was written from.
    #[test]
    fn written_config_reads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let mut written = config(
            &target(),
            "amqp://127.0.0.1",
            &names(),
            Path::new("/tmp/x/herald.store"),
        );
        written.amqp.prefetch = 64;
        written.broadcast.max_recipients = 200_000;
        let path = dir.path().join("herald.toml");
        write(&written, &path).unwrap();
        let read = Config::load(Some(&path)).expect("Herald loads the written config");
        assert_eq!(format!("{read:?}"), format!("{written:?}"));
        assert_eq!(
            read.xmpp.secret.as_ref().expect("a secret").expose(),
            "s3cret"
        );
        assert_eq!(
            read.amqp.url.as_ref().map(Secret::expose),
            Some("amqp://127.0.0.1")
        );
        assert_eq!(to_toml(&read), to_toml(&written));
    }

    #[test]
    fn secrets_are_written_but_never_debug_printed() {
        let text = to_toml(&config(
            &target(),
            "amqp://u:pw@h",
            &names(),
            Path::new("s"),
        ));
        assert!(text.contains("s3cret") && text.contains("amqp://u:pw@h"));
        let debug = format!(
            "{:?}",
            config(&target(), "amqp://u:pw@h", &names(), Path::new("s"))
        );
        assert!(!debug.contains("s3cret") && !debug.contains("pw@h"));
    }
}
