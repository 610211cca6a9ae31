//! What the core needs of the configuration, parsed once into types.

use std::time::Duration;

use xmpp_parsers::jid::BareJid;

use crate::config::{Config, ConfigError};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Herald's own domain, e.g. `broadcast.example.com`.
    pub domain: BareJid,
    /// The server's domain: barriers go there, and only its users count.
    pub server: BareJid,
    /// The JID users have on their roster; strangers are probed from it.
    pub contact: BareJid,
    /// Name shown in service discovery.
    pub name: String,
    pub keepalive: Duration,
    /// Time allowed, after a barrier behind probes, for late answers.
    pub probe_settle: Duration,
    /// How long a probe nobody answered stands; zero turns probing of
    /// unknown recipients off.
    pub unknown_probe_ttl: Duration,
    pub user_events_per_sec: u32,
    pub user_events_burst: u32,
    /// Completed jobs remembered by key.
    pub remember_jobs: usize,
    /// Longest pause between retries of a refused publish or failed commit.
    pub max_backoff: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        let xmpp = &config.xmpp;
        Ok(Settings {
            domain: config.component_domain()?,
            server: config.server_domain()?,
            contact: config.roster_contact()?,
            name: xmpp.name.clone(),
            keepalive: Duration::from_secs(xmpp.keepalive_secs),
            probe_settle: Duration::from_millis(xmpp.probe_settle_ms),
            unknown_probe_ttl: Duration::from_secs(xmpp.unknown_probe_ttl_secs),
            user_events_per_sec: xmpp.user_events_per_sec,
            user_events_burst: xmpp.user_events_burst,
            remember_jobs: config.store.remember_jobs,
            max_backoff: Duration::from_secs(config.amqp.max_backoff_secs.max(1)),
        })
    }
}
