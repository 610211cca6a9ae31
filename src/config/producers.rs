//! `[producers]`: what each broker user may do with Herald (see
//! [`crate::producers`]), checked once at start.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};
use crate::producers::{Allowed, Grant, Producers, Rate, Unlisted, ANY};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducersConfig {
    /// What a job or request may do that carries no AMQP `user_id`, or
    /// one not in `users`: `allow` (anything, as before) or `refuse`.
    pub unlisted: Unlisted,
    /// Per broker user (the AMQP `user_id`), what it may do.
    pub users: BTreeMap<String, ProducerConfig>,
}

/// What one broker user may do; every list may hold `"*"` (any), and an
/// empty one allows nothing.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Local parts its jobs may send as (their `from`, or else
    /// `broadcast.default_from`).
    pub from: Vec<String>,
    /// Groups its jobs may name.
    pub groups: Vec<String>,
    /// Whether its jobs may go to all subscribers.
    pub all_subscribers: bool,
    /// Control operations it may ask for (`status`, `group.put`, ...).
    pub control: Vec<String>,
    /// Most recipients of one of its jobs; none: no limit of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_recipients: Option<usize>,
    /// Jobs per second on average; none: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs_per_sec: Option<f64>,
    /// Jobs at once above the average; by default `jobs_per_sec` (at least 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs_burst: Option<u32>,
}

impl Config {
    /// The producers and their grants; `own` are the broker users Herald
    /// itself connects as, whose jobs always pass.
    pub(super) fn producers(&self, own: Vec<String>) -> Result<Producers, ConfigError> {
        let config = &self.producers;
        let mut users = HashMap::with_capacity(config.users.len());
        for (user, producer) in &config.users {
            if own.contains(user) {
                return Err(invalid(format!(
                    "producers.users.{user}: Herald connects to the broker as {user:?} \
                     (amqp.url), and the jobs it queues itself must pass: its own user may \
                     do anything and is not listed"
                )));
            }
            users.insert(user.clone(), grant(user, producer, &self.xmpp.domain)?);
        }
        Ok(Producers::new(users, own, config.unlisted))
    }
}

/// `domain`: Herald's, on which senders' local parts are checked and
/// normalised as a job's `from` is (`Alerts` is `alerts`).
fn grant(user: &str, producer: &ProducerConfig, domain: &str) -> Result<Grant, ConfigError> {
    let key = |name: &str| format!("producers.users.{user}.{name}");
    let mut from = Vec::with_capacity(producer.from.len());
    for local in &producer.from {
        if local == ANY {
            from.push(local.clone());
            continue;
        }
        let jid = xmpp_parsers::jid::BareJid::new(&format!("{local}@{domain}"));
        match jid.ok().filter(|_| !local.contains(['@', '/'])) {
            Some(jid) => from.extend(jid.node().map(|node| node.to_string())),
            None => {
                return Err(invalid(format!(
                    "{}: {local:?} is not a valid local part (or \"*\")",
                    key("from")
                )))
            }
        }
    }
    for group in producer.groups.iter().filter(|group| *group != ANY) {
        crate::groups::check_name(group)
            .map_err(|reason| invalid(format!("{}: {reason}", key("groups"))))?;
    }
    for op in producer.control.iter().filter(|op| *op != ANY) {
        if !crate::control::ops().any(|known| known == op) {
            return Err(invalid(format!(
                "{}: {op:?} is no control operation; known: {} (or \"*\")",
                key("control"),
                crate::control::ops_listed()
            )));
        }
    }
    if producer.max_recipients == Some(0) {
        return Err(invalid(format!(
            "{} must be at least 1",
            key("max_recipients")
        )));
    }
    let rate = match (producer.jobs_per_sec, producer.jobs_burst) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(invalid(format!(
                "{} needs {}",
                key("jobs_burst"),
                key("jobs_per_sec")
            )))
        }
        (Some(per_sec), _) if !(per_sec.is_finite() && per_sec > 0.0) => {
            return Err(invalid(format!("{} must be above 0", key("jobs_per_sec"))))
        }
        (Some(_), Some(0)) => {
            return Err(invalid(format!("{} must be at least 1", key("jobs_burst"))))
        }
        (Some(per_sec), burst) => Some(Rate {
            per_sec,
            burst: burst.map_or(per_sec.max(1.0), f64::from),
        }),
    };
    Ok(Grant {
        from: Allowed::of(&from),
        groups: Allowed::of(&producer.groups),
        all_subscribers: producer.all_subscribers,
        control: Allowed::of(&producer.control),
        max_recipients: producer.max_recipients,
        rate,
    })
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}
