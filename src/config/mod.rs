//! Configuration: one TOML file, every key overridable from the environment
//! (`HERALD_<SECTION>__<KEY>`, e.g. `HERALD_XMPP__SECRET`), validated once at
//! start so that the event loop never meets a bad value.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Everything that can go wrong before Herald starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("cannot read the XMPP secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Keys whose environment variables are taken exactly as written. figment
/// reads other values like TOML, which would turn a secret `0012345678` into
/// the number 12345678 (refused, and its leading zeros lost), `true` into a
/// boolean and `"x"` into `x`. (`amqp.urls` is a list, read like TOML: its
/// URLs are quoted strings there.)
const VERBATIM_KEYS: [&str; 2] = ["xmpp.secret", "amqp.url"];

/// A secret that never shows up in logs or `Debug` output.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub xmpp: XmppConfig,
    pub amqp: AmqpConfig,
    pub broadcast: BroadcastConfig,
    pub producers: ProducersConfig,
    pub store: StoreConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct XmppConfig {
    /// Host of the XMPP server's component listener. When neither this,
    /// `port` nor `servers` is set: [`crate::xmpp::DEFAULT_HOST`].
    pub host: Option<String>,
    /// Port of the component listener (Prosody and ejabberd: 5347, Openfire:
    /// 5275); by default [`crate::xmpp::DEFAULT_PORT`].
    pub port: Option<u16>,
    /// The component listeners (`host:port`) of the nodes of one server
    /// cluster serving the domain, tried in turn: on a failed connect or a
    /// lost stream Herald goes on to the next. Instead of `host` and
    /// `port`, not beside them.
    pub servers: Vec<String>,
    /// Keep a session to every node in `servers` at once, one stream over
    /// them all, rather than one node at a time: ejabberd only (Prosody
    /// and Openfire refuse a second session for a domain).
    pub connect_every_node: bool,
    /// The subdomain Herald binds, e.g. `broadcast.example.com`.
    pub domain: String,
    /// The server's own domain, used as the target of barrier and keepalive
    /// pings. Defaults to `domain` without its first label.
    pub server_domain: Option<String>,
    /// The domains whose users Herald serves (virtual hosts of the server);
    /// presence and messages of other domains' users are ignored. Empty:
    /// `server_domain` alone.
    pub user_domains: Vec<String>,
    /// Shared secret of the component listener. Prefer `secret_file`.
    pub secret: Option<Secret>,
    /// File holding the shared secret (surrounding whitespace is ignored).
    pub secret_file: Option<PathBuf>,
    /// Speak TLS from the first byte: ejabberd's `ejabberd_service`
    /// listener with `tls: true`, Openfire's SSL component port (5276).
    pub tls: bool,
    /// PEM file of certificate authorities to trust for the server's
    /// certificate besides the system's (a private CA, a self-signed server).
    pub tls_ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry; by default the
    /// server's domain (`server_domain`).
    pub tls_server_name: Option<String>,
    /// Seconds between keepalive pings to the server.
    pub keepalive_secs: u64,
    /// Seconds of silence from the server after which the stream counts as dead.
    pub read_timeout_secs: u64,
    /// Seconds to wait for the TCP connection and the handshake.
    pub connect_timeout_secs: u64,
    /// Longest pause between reconnection attempts.
    pub max_backoff_secs: u64,
    /// Milliseconds to wait, after the server answered the post-connect
    /// barrier, for presence answers to probes before taking jobs.
    pub probe_settle_ms: u64,
    /// Seconds during which a job recipient Herald knew nothing about, and
    /// probed without learning anything (offline, or no subscription), is
    /// not probed again; 0 turns probing of unknown recipients off (they
    /// then count as offline until their presence reaches Herald).
    pub unknown_probe_ttl_secs: u64,
    /// Stanzas waiting to be written above which Herald stops taking jobs;
    /// also the most stanzas written and not yet proven read.
    pub outbound_high_water: usize,
    /// Milliseconds of the server's reading that Herald keeps queued ahead
    /// of it, beyond what its answers take to come back: about the longest
    /// an urgent message waits behind a big job's messages. Lower favours
    /// the urgent lane, higher a big job's rate on a server whose rate
    /// varies.
    pub server_queue_ms: u64,
    /// Events (`message.received`, `presence.changed`) one user can cause
    /// per second on average; more are dropped (the presence book is always
    /// updated).
    pub user_events_per_sec: u32,
    /// Events one user can cause at once, above the average rate.
    pub user_events_burst: u32,
    /// Name shown in service discovery.
    pub name: String,
    /// Bare JIDs of the operators who may run Herald's ad-hoc commands
    /// (XEP-0050) from their XMPP client; empty: nobody may.
    pub admins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// The broker: one RabbitMQ node. When neither this nor `urls` is set:
    /// [`crate::amqp::DEFAULT_URL`].
    pub url: Option<Secret>,
    /// The nodes of one RabbitMQ cluster, tried in turn: on a failed
    /// connect or a lost connection Herald goes on to the next. Instead of
    /// `url`, not beside it.
    pub urls: Vec<Secret>,
    /// The type of the queues Herald declares.
    pub queue_type: QueueType,
    pub jobs_queue: String,
    /// Queue of urgent jobs, declared like the jobs queue: taken before
    /// the jobs queue's, and fanned out between the slices of a job in
    /// progress.
    pub urgent_queue: String,
    pub dead_letter_queue: String,
    /// Queue of control requests (request/reply: presence, online users,
    /// status), declared like the jobs queue; see docs/control.md.
    pub control_queue: String,
    pub events_exchange: String,
    pub prefetch: u16,
    /// Publish a `presence.changed` event for every presence change.
    pub presence_events: bool,
    /// Publish a `message.receipt` event for every delivery receipt counted.
    pub receipt_events: bool,
    /// Longest pause between reconnection attempts to the broker.
    pub max_backoff_secs: u64,
    /// PEM file of certificate authorities to trust for an `amqps://`
    /// broker besides the system's (a private CA, a self-signed broker).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain) to present to a
    /// broker that asks for one; needs `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's unencrypted private key.
    pub tls_key_file: Option<PathBuf>,
}

/// The RabbitMQ queue type of the jobs and dead-letter queues. RabbitMQ
/// cannot change the type of an existing queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// A queue on one node (RabbitMQ's default).
    Classic,
    /// A queue replicated across a cluster's nodes (Raft): it survives the
    /// loss of a minority of them.
    Quorum,
}

impl QueueType {
    /// The value of the `x-queue-type` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BroadcastConfig {
    /// Local part used as sender when a job has no `from`.
    pub default_from: String,
    /// Largest accepted body, in bytes (Prosody refuses component stanzas over 512 KiB).
    pub max_body_bytes: usize,
    /// Largest accepted number of recipients in one job.
    pub max_recipients: usize,
    /// Local parts a job's `from` may name (the default sender must be one
    /// of them); empty: any valid local part.
    pub allowed_from: Vec<String>,
    /// Recipients between the checkpoints of a job: once the server has
    /// read a checkpoint's messages, a redelivered job resumes after it.
    pub checkpoint_every: usize,
    /// Largest part, in bytes, of a report that names the recipients
    /// (`report_names`); at least 16 KiB.
    pub names_part_bytes: usize,
    /// Longest window a job may ask for (`deliver_within_secs`).
    pub max_deliver_within_secs: u64,
    /// Recipients waiting in all windows at most: a job that would go
    /// over it waits for nobody, and its report says why.
    pub max_deferred: usize,
    /// How long delivery receipts are counted for a job with `receipts`
    /// and no window of its own.
    pub receipts_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz;
    /// an empty string turns it off.
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `herald=debug,info`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for XmppConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            servers: Vec::new(),
            connect_every_node: false,
            domain: "broadcast.localhost".into(),
            server_domain: None,
            user_domains: Vec::new(),
            secret: None,
            secret_file: None,
            tls: false,
            tls_ca_file: None,
            tls_server_name: None,
            keepalive_secs: 30,
            read_timeout_secs: 120,
            connect_timeout_secs: 10,
            max_backoff_secs: 30,
            probe_settle_ms: 500,
            unknown_probe_ttl_secs: 300,
            outbound_high_water: 20_000,
            server_queue_ms: 50,
            user_events_per_sec: 10,
            user_events_burst: 50,
            name: "Herald broadcast".into(),
            admins: Vec::new(),
        }
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: None,
            urls: Vec::new(),
            queue_type: QueueType::Classic,
            jobs_queue: "broadcast.jobs".into(),
            urgent_queue: "broadcast.urgent".into(),
            dead_letter_queue: "broadcast.jobs.dead".into(),
            control_queue: "broadcast.control".into(),
            events_exchange: "broadcast.events".into(),
            prefetch: 2048,
            presence_events: true,
            receipt_events: true,
            max_backoff_secs: 30,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            default_from: "herald".into(),
            max_body_bytes: 64 * 1024,
            max_recipients: 100_000,
            allowed_from: Vec::new(),
            checkpoint_every: 1000,
            names_part_bytes: 256 * 1024,
            max_deliver_within_secs: 7 * 24 * 3600,
            max_deferred: 1_000_000,
            receipts_window_secs: 300,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9102".into(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Defaults, then the TOML file (if any), then `HERALD_*` environment
    /// variables; the result is validated and the secret resolved.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = Self::read(path)?;
        config.resolve_secret()?;
        config.validate()?;
        Ok(config)
    }

    /// The same layers as [`Config::load`], but neither resolved nor
    /// validated: for tools that use only the broker side of a deployment
    /// (`herald send`) where the component secret is not available.
    pub fn read(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only HERALD_<SECTION>__<KEY>: HERALD_CONFIG and other HERALD_* names are not keys.
        let env = Env::prefixed("HERALD_")
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        figment = figment.merge(env.clone().ignore(&VERBATIM_KEYS));
        for (key, value) in env.only(&VERBATIM_KEYS).iter() {
            figment = figment.merge(Serialized::default(key.as_str(), value));
        }
        Ok(figment.extract().map_err(Box::new)?)
    }

    fn resolve_secret(&mut self) -> Result<(), ConfigError> {
        if self.xmpp.secret.is_some() {
            return Ok(());
        }
        if let Some(path) = &self.xmpp.secret_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                path: path.clone(),
                source,
            })?;
            self.xmpp.secret = Some(Secret::new(text.trim()));
        }
        Ok(())
    }
}

mod producers;
mod settings;
mod store;

pub use producers::{ProducerConfig, ProducersConfig};
pub use settings::{Settings, StoreSettings};
pub use store::{StoreBackend, StoreConfig};
#[cfg(test)]
mod tests;
