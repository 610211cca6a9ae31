//! A configuration parsed once into typed values: [`Config::settings`]
//! checks every key and returns what Herald runs on, so that nothing
//! downstream parses a key or handles an error for it again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use xmpp_parsers::jid::BareJid;

use super::{Config, ConfigError, Secret, StoreBackend};
use crate::amqp::{store_stream, LinkSettings, StoreStream};
use crate::broadcast::JobLimits;
use crate::producers::Unlisted;
use crate::xmpp::{Endpoint, LinkTls, ServerAddress};

/// Everything Herald runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What the core decides with.
    pub core: crate::core::Settings,
    /// What a broadcast job may be.
    pub limits: JobLimits,
    /// Recipients between a job's checkpoints.
    pub checkpoint_every: usize,
    /// Publish a `presence.changed` event for every presence change.
    pub presence_events: bool,
    /// The XMPP server's component listeners, tried in turn (never empty).
    pub servers: Vec<ServerAddress>,
    /// A session to each of `servers` at once, rather than one at a time.
    pub every_node: bool,
    /// As whom, and with which timeouts and TLS, to connect to them.
    pub endpoint: Endpoint,
    pub secret: Secret,
    /// Longest pause between reconnection attempts to the XMPP server.
    pub max_backoff: Duration,
    /// Stanzas waiting to be written above which jobs wait in the broker.
    pub outbound_high_water: usize,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub http: Option<SocketAddr>,
    pub amqp: LinkSettings,
    pub store: StoreSettings,
}

/// Where the store lives ([`super::StoreBackend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    File(PathBuf),
    /// The link reads and appends it ([`LinkSettings::store`]).
    Stream,
}

impl Config {
    /// Checks every key and parses the configuration into [`Settings`].
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let xmpp = &self.xmpp;
        let secret = match &xmpp.secret {
            Some(secret) if !secret.expose().is_empty() => secret.clone(),
            _ => {
                return invalid(
                    "xmpp.secret or xmpp.secret_file must give the component secret".into(),
                )
            }
        };
        let Some(domain) = parse_domain(&xmpp.domain) else {
            return invalid(format!(
                "xmpp.domain {:?} is not a valid domain",
                xmpp.domain
            ));
        };
        let server = match &xmpp.server_domain {
            Some(server) => server.as_str(),
            None => xmpp.domain.split_once('.').map_or("", |(_, rest)| rest),
        };
        let Some(server) = parse_domain(server) else {
            return invalid("xmpp.server_domain is not a valid domain (set it explicitly)".into());
        };
        let mut user_domains = Vec::new();
        for name in &xmpp.user_domains {
            match parse_domain(name) {
                Some(user_domain) if user_domain != domain => user_domains.push(user_domain),
                _ => {
                    return invalid(format!(
                        "xmpp.user_domains: {name:?} is not a domain of the server's users"
                    ))
                }
            }
        }
        if user_domains.is_empty() {
            user_domains.push(server.clone());
        }
        let broadcast = &self.broadcast;
        let Ok(contact) = BareJid::new(&format!("{}@{}", broadcast.default_from, xmpp.domain))
        else {
            return invalid(format!(
                "broadcast.default_from {:?} is not a valid local part",
                broadcast.default_from
            ));
        };
        if broadcast.max_body_bytes == 0
            || broadcast.max_recipients == 0
            || broadcast.checkpoint_every == 0
        {
            return invalid(
                "broadcast.max_body_bytes, max_recipients and checkpoint_every must be at least 1"
                    .into(),
            );
        }
        if broadcast.names_part_bytes < crate::broadcast::names::MIN_PART_BYTES {
            return invalid(format!(
                "broadcast.names_part_bytes must be at least {}",
                crate::broadcast::names::MIN_PART_BYTES
            ));
        }
        let limits = self.job_limits()?;
        let allowed = &broadcast.allowed_from;
        if !allowed.is_empty() && !allowed.contains(&broadcast.default_from) {
            return invalid(format!(
                "broadcast.default_from {:?} must be one of broadcast.allowed_from",
                broadcast.default_from
            ));
        }
        let listen = self.http.listen.trim();
        let http = match listen {
            "" => None,
            listen => match listen.parse() {
                Ok(address) => Some(address),
                Err(_) => {
                    return invalid(format!(
                        "http.listen {listen:?} is not an address such as 127.0.0.1:9102 (or empty to turn it off)"
                    ))
                }
            },
        };
        if self.store.backend == StoreBackend::Stream && self.store.stream_max_bytes < 64 << 20 {
            return invalid(
                "store.stream_max_bytes must be at least 67108864 (64 MiB): the stream holds \
                 its last snapshot whole and what was appended since"
                    .into(),
            );
        }
        if self.amqp.prefetch == 0 {
            return invalid("amqp.prefetch must be at least 1".into());
        }
        let brokers = crate::amqp::addresses(&self.amqp).map_err(ConfigError::Invalid)?;
        let mut own_users: Vec<String> = brokers.iter().filter_map(|b| b.user()).collect();
        own_users.sort();
        own_users.dedup();
        let producers = self.producers(own_users)?;
        crate::amqp::tls::check(&self.amqp, &brokers).map_err(ConfigError::Invalid)?;
        let servers = crate::xmpp::addresses(xmpp).map_err(ConfigError::Invalid)?;
        let tls = LinkTls::from_config(xmpp, server.as_str()).map_err(ConfigError::Invalid)?;
        if xmpp.server_queue_ms == 0 {
            return invalid("xmpp.server_queue_ms must be at least 1".into());
        }
        if xmpp.keepalive_secs == 0 || xmpp.read_timeout_secs <= xmpp.keepalive_secs {
            return invalid("xmpp.read_timeout_secs must exceed xmpp.keepalive_secs (> 0)".into());
        }
        let mut admins = Vec::with_capacity(xmpp.admins.len());
        for admin in &xmpp.admins {
            match BareJid::new(admin) {
                Ok(jid) if jid.node().is_some() => admins.push(jid),
                _ => {
                    return invalid(format!(
                        "xmpp.admins: {admin:?} is not a user's bare JID (user@domain)"
                    ))
                }
            }
        }
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        Ok(Settings {
            core: crate::core::Settings {
                domain: domain.clone(),
                server,
                user_domains,
                contact,
                name: xmpp.name.clone(),
                keepalive: Duration::from_secs(xmpp.keepalive_secs),
                probe_settle: Duration::from_millis(xmpp.probe_settle_ms),
                unknown_probe_ttl: Duration::from_secs(xmpp.unknown_probe_ttl_secs),
                user_events_per_sec: xmpp.user_events_per_sec,
                user_events_burst: xmpp.user_events_burst,
                remember_jobs: self.store.remember_jobs,
                max_in_flight: usize::from(self.amqp.prefetch),
                max_backoff: Duration::from_secs(self.amqp.max_backoff_secs.max(1)),
                admins,
                producers,
                run: format!("{run:x}"),
                max_deferred: broadcast.max_deferred,
                names_part_bytes: broadcast.names_part_bytes,
                receipt_events: self.amqp.receipt_events,
                server_queue: Duration::from_millis(xmpp.server_queue_ms),
                max_unread: xmpp.outbound_high_water,
            },
            limits,
            checkpoint_every: broadcast.checkpoint_every,
            presence_events: self.amqp.presence_events,
            servers,
            every_node: xmpp.connect_every_node,
            endpoint: Endpoint {
                domain,
                connect_timeout: Duration::from_secs(xmpp.connect_timeout_secs),
                read_timeout: Duration::from_secs(xmpp.read_timeout_secs),
                tls,
            },
            secret,
            max_backoff: Duration::from_secs(xmpp.max_backoff_secs),
            outbound_high_water: xmpp.outbound_high_water,
            http,
            amqp: LinkSettings {
                brokers,
                config: self.amqp.clone(),
                store: (self.store.backend == StoreBackend::Stream).then(|| StoreStream {
                    queue: store_stream(&self.amqp.jobs_queue),
                    max_bytes: self.store.stream_max_bytes,
                    remember_jobs: self.store.remember_jobs,
                }),
            },
            store: match self.store.backend {
                StoreBackend::File => StoreSettings::File(self.store.path.clone()),
                StoreBackend::Stream => StoreSettings::Stream,
            },
        })
    }

    /// Checks the configuration (what `herald check-config` does).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.settings().map(|_| ())
    }

    /// What a broadcast job may be; all `herald send` needs besides the
    /// broker, where the component secret may be unknown.
    pub fn job_limits(&self) -> Result<JobLimits, ConfigError> {
        let component_domain = parse_domain(&self.xmpp.domain).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "xmpp.domain {:?} is not a valid domain",
                self.xmpp.domain
            ))
        })?;
        JobLimits::new(&self.broadcast, component_domain)
    }

    /// What an operator should hear about before Herald runs: a secret
    /// file others can read, a plaintext link that leaves this machine,
    /// producers listed while unlisted ones may still do anything.
    /// Not errors: some secret stores mount files world-readable inside a
    /// container where nobody else runs, and some networks are private.
    pub fn warnings(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mut warnings = Vec::new();
        let xmpp = &self.xmpp;
        if let Some(path) = &xmpp.secret_file {
            if let Ok(metadata) = std::fs::metadata(path) {
                let mode = metadata.permissions().mode();
                if mode & 0o077 != 0 {
                    warnings.push(format!(
                        "xmpp.secret_file {} is readable by other users (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    ));
                }
            }
        }
        let servers = crate::xmpp::addresses(xmpp).unwrap_or_default();
        let remote = servers
            .iter()
            .find(|server| !crate::xmpp::tls::is_loopback(server.host()));
        if let (false, Some(server)) = (xmpp.tls, remote) {
            warnings.push(format!(
                "the component link to {} is plaintext: the handshake and every message cross \
                 the network in clear; set xmpp.tls = true where the server offers TLS",
                server.host()
            ));
        }
        let producers = &self.producers;
        if !producers.users.is_empty() && producers.unlisted == Unlisted::Allow {
            warnings.push(
                "producers.users lists broker users but producers.unlisted is \"allow\": a \
                 producer escapes its entry by publishing without user_id; set \
                 producers.unlisted = \"refuse\""
                    .to_string(),
            );
        }
        warnings
    }
}

/// A bare domain (no local part), if `text` is one.
fn parse_domain(text: &str) -> Option<BareJid> {
    BareJid::new(text).ok().filter(|jid| jid.node().is_none())
}
