//! What a loaded configuration must satisfy, and the typed values read
//! from it once at start.

use std::net::SocketAddr;
use std::time::Duration;

use xmpp_parsers::jid::BareJid;

use super::{Config, ConfigError, Secret};

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        match &self.xmpp.secret {
            Some(secret) if !secret.expose().is_empty() => {}
            _ => {
                return invalid(
                    "xmpp.secret or xmpp.secret_file must give the component secret".into(),
                )
            }
        }
        if self.component_domain().is_err() {
            return invalid(format!(
                "xmpp.domain {:?} is not a valid domain",
                self.xmpp.domain
            ));
        }
        if self.server_domain().is_err() {
            return invalid("xmpp.server_domain is not a valid domain (set it explicitly)".into());
        }
        if BareJid::new(&format!(
            "{}@{}",
            self.broadcast.default_from, self.xmpp.domain
        ))
        .is_err()
        {
            return invalid(format!(
                "broadcast.default_from {:?} is not a valid local part",
                self.broadcast.default_from
            ));
        }
        if self.broadcast.max_body_bytes == 0
            || self.broadcast.max_recipients == 0
            || self.broadcast.checkpoint_every == 0
        {
            return invalid(
                "broadcast.max_body_bytes, max_recipients and checkpoint_every must be at least 1"
                    .into(),
            );
        }
        crate::broadcast::JobLimits::from_config(self)?;
        let allowed = &self.broadcast.allowed_from;
        if !allowed.is_empty() && !allowed.contains(&self.broadcast.default_from) {
            return invalid(format!(
                "broadcast.default_from {:?} must be one of broadcast.allowed_from",
                self.broadcast.default_from
            ));
        }
        if self.http_listen().is_err() {
            return invalid(format!(
                "http.listen {:?} is not an address such as 127.0.0.1:9102 (or empty to turn it off)",
                self.http.listen
            ));
        }
        if self.amqp.prefetch == 0 {
            return invalid("amqp.prefetch must be at least 1".into());
        }
        crate::amqp::tls::check(&self.amqp).map_err(ConfigError::Invalid)?;
        if self.xmpp.keepalive_secs == 0 || self.xmpp.read_timeout_secs <= self.xmpp.keepalive_secs
        {
            return invalid("xmpp.read_timeout_secs must exceed xmpp.keepalive_secs (> 0)".into());
        }
        Ok(())
    }

    pub fn component_domain(&self) -> Result<BareJid, ConfigError> {
        BareJid::new(&self.xmpp.domain)
            .ok()
            .filter(|jid| jid.node().is_none())
            .ok_or_else(|| ConfigError::Invalid(format!("bad domain {}", self.xmpp.domain)))
    }

    pub fn server_domain(&self) -> Result<BareJid, ConfigError> {
        let domain = match &self.xmpp.server_domain {
            Some(domain) => domain.clone(),
            None => match self.xmpp.domain.split_once('.') {
                Some((_, rest)) => rest.to_string(),
                None => String::new(),
            },
        };
        BareJid::new(&domain)
            .ok()
            .filter(|jid| jid.node().is_none())
            .ok_or_else(|| ConfigError::Invalid(format!("bad server domain {domain:?}")))
    }

    pub fn secret(&self) -> &Secret {
        // validate() guarantees presence; an empty secret would fail the handshake.
        static EMPTY: Secret = Secret(String::new());
        self.xmpp.secret.as_ref().unwrap_or(&EMPTY)
    }

    /// A warning when `xmpp.secret_file` can be read by users other than
    /// its owner (and root). Not an error: some secret stores mount files
    /// world-readable inside a container where nobody else runs.
    pub fn secret_file_warning(&self) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.xmpp.secret_file.as_ref()?;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o077 != 0).then(|| {
            format!(
                "xmpp.secret_file {} is readable by other users (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            )
        })
    }

    /// The HTTP endpoint's address; `None` when it is turned off.
    pub fn http_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let listen = self.http.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid(format!("bad http.listen {listen:?}")))
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.xmpp.keepalive_secs)
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.xmpp.read_timeout_secs)
    }

    pub fn unknown_probe_ttl(&self) -> Duration {
        Duration::from_secs(self.xmpp.unknown_probe_ttl_secs)
    }

    /// The JID users put on their roster to share presence with Herald
    /// (the default sender), from which unknown recipients are probed.
    pub fn roster_contact(&self) -> Result<BareJid, ConfigError> {
        let contact = format!("{}@{}", self.broadcast.default_from, self.xmpp.domain);
        BareJid::new(&contact)
            .map_err(|_| ConfigError::Invalid(format!("bad default sender {contact:?}")))
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.xmpp.connect_timeout_secs)
    }
}
