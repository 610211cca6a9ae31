//! What the core needs of the configuration, in types; built once from
//! the configuration by [`crate::config::Config::settings`].

use std::time::Duration;

use xmpp_parsers::jid::BareJid;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Herald's own domain, e.g. `broadcast.example.com`.
    pub domain: BareJid,
    /// The server's domain: barriers go there.
    pub server: BareJid,
    /// The domains whose users count (never empty): presence, messages and
    /// probes of other domains' users are ignored.
    pub user_domains: Vec<BareJid>,
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
    /// Jobs in flight (taken and not settled) at most: `amqp.prefetch`.
    pub max_in_flight: usize,
    /// Longest pause between retries of a refused publish or failed commit.
    pub max_backoff: Duration,
    /// Operators who may run the ad-hoc commands.
    pub admins: Vec<BareJid>,
    /// What each producer (broker user) may do.
    pub producers: crate::producers::Producers,
    /// Tells this run's ad-hoc session ids (and so the ids of the jobs
    /// they queue) from an earlier run's: the start time, set once when
    /// the configuration is read.
    pub run: String,
    /// Recipients waiting in all jobs' windows at most.
    pub max_deferred: usize,
    /// Largest part of a final report's names, in bytes.
    pub names_part_bytes: usize,
    /// Publish a `message.receipt` event for every delivery receipt counted.
    pub receipt_events: bool,
    /// How long the server may take to read the stanzas waiting for it
    /// (see `read_window`).
    pub server_queue: Duration,
    /// Stanzas written and not proven read at most, whatever the server's
    /// rate: the stream queue's high water.
    pub max_unread: usize,
}

impl Settings {
    /// Whether users of `domain` are Herald's to serve.
    pub fn serves(&self, domain: &str) -> bool {
        serves(&self.user_domains, domain)
    }

    /// Whether `user` may run the ad-hoc commands.
    pub fn is_admin(&self, user: &BareJid) -> bool {
        self.admins.contains(user)
    }
}

/// Whether `domain` is one of `user_domains` (a handful: a scan is fastest).
pub fn serves(user_domains: &[BareJid], domain: &str) -> bool {
    user_domains
        .iter()
        .any(|served| served.domain().as_str() == domain)
}
