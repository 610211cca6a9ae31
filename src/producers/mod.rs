//! Who may do what. A job or control request may carry the AMQP `user_id`
//! property, which RabbitMQ checks against the user of the connection that
//! published it: it names the broker user, the producer, beyond doubt.
//! `[producers]` in the configuration says what each listed broker user
//! may do (which senders, which groups, all subscribers or not, which
//! control operations, how many recipients per job, how many jobs per
//! second), and what a message without `user_id`, or of a user not listed,
//! may do. Pure: the core asks it when it takes a job or a request, and
//! the time is a parameter ([`Rates::take`]).

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What a message from no listed producer may do: one without `user_id`,
/// or whose user is not in `producers.users`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unlisted {
    /// Anything, as before producers could be listed.
    #[default]
    Allow,
    /// Nothing: jobs are dead-lettered, requests answered `forbidden`.
    Refuse,
}

/// Names a producer may use: any, or those listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Any,
    Only(Vec<String>),
}

impl Allowed {
    /// `"*"` among `names` allows any.
    pub fn of(names: &[String]) -> Allowed {
        if names.iter().any(|name| name == ANY) {
            Allowed::Any
        } else {
            Allowed::Only(names.to_vec())
        }
    }

    pub fn allows(&self, name: &str) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(names) => names.iter().any(|allowed| allowed == name),
        }
    }
}

/// In a list of `[producers.users.<user>]`: any name.
pub const ANY: &str = "*";

/// Jobs per second on average, and at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

/// What one listed broker user may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The local parts its jobs may send as (`from`, or else
    /// `broadcast.default_from`).
    pub from: Allowed,
    /// The groups its jobs may address.
    pub groups: Allowed,
    pub all_subscribers: bool,
    /// The control operations it may ask for (`status`, `group.put`, ...).
    pub control: Allowed,
    /// Most recipients of one job, as its report counts them.
    pub max_recipients: Option<usize>,
    pub rate: Option<Rate>,
}

/// Why a producer's job or request is refused: a dead letter's
/// `x-herald-error`, or a `forbidden` reply's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused: no AMQP user_id, and producers.unlisted is \"refuse\"")]
    NoUserId,
    #[error("refused: broker user {0:?} is not in producers.users, and producers.unlisted is \"refuse\"")]
    Unlisted(String),
    #[error(
        "refused: broker user {user:?} may not send as {from:?} (producers.users.{user}.from)"
    )]
    From { user: String, from: String },
    #[error("refused: broker user {user:?} may not address group {group:?} (producers.users.{user}.groups)")]
    Group { user: String, group: String },
    #[error("refused: broker user {user:?} may not address all subscribers (producers.users.{user}.all_subscribers)")]
    AllSubscribers { user: String },
    #[error("refused: {count} recipients; broker user {user:?} may address at most {max} in one job (producers.users.{user}.max_recipients)")]
    Recipients {
        user: String,
        count: usize,
        max: usize,
    },
    #[error("rate limit: broker user {user:?} published jobs faster than producers.users.{user}.jobs_per_sec allows; publish this one again later")]
    RateLimited { user: String },
    #[error(
        "refused: broker user {user:?} may not ask for {op:?} (producers.users.{user}.control)"
    )]
    Operation { user: String, op: String },
}

impl Refusal {
    /// Every [`Refusal::reason`], so that each is counted from zero.
    pub const REASONS: [&'static str; 8] = [
        "no_user_id",
        "unlisted",
        "from",
        "group",
        "all_subscribers",
        "recipients",
        "rate_limited",
        "operation",
    ];

    /// What kind of refusal it is, as `herald_refusals_total` labels it:
    /// one of a fixed few, never the producer's own words.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoUserId => "no_user_id",
            Refusal::Unlisted(_) => "unlisted",
            Refusal::From { .. } => "from",
            Refusal::Group { .. } => "group",
            Refusal::AllSubscribers { .. } => "all_subscribers",
            Refusal::Recipients { .. } => "recipients",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Operation { .. } => "operation",
        }
    }
}

/// A listed producer and what it may do.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    pub user: &'a str,
    pub grant: &'a Grant,
}

impl Listed<'_> {
    /// What a job says of itself: its sender's local part, its groups and
    /// whether it goes to all subscribers.
    pub fn check_job(
        &self,
        from: &str,
        groups: &[String],
        all_subscribers: bool,
    ) -> Result<(), Refusal> {
        let user = self.user.to_string();
        if !self.grant.from.allows(from) {
            let from = from.to_string();
            return Err(Refusal::From { user, from });
        }
        if let Some(group) = groups.iter().find(|g| !self.grant.groups.allows(g)) {
            let group = group.clone();
            return Err(Refusal::Group { user, group });
        }
        if all_subscribers && !self.grant.all_subscribers {
            return Err(Refusal::AllSubscribers { user });
        }
        Ok(())
    }

    /// A job of `count` recipients: its `to`, its groups' members and
    /// (with `all_subscribers`) the subscribers, each user once.
    pub fn check_recipients(&self, count: usize) -> Result<(), Refusal> {
        match self.grant.max_recipients {
            Some(max) if count > max => Err(Refusal::Recipients {
                user: self.user.to_string(),
                count,
                max,
            }),
            _ => Ok(()),
        }
    }

    /// Whether it needs the recipients counted ([`Listed::check_recipients`]).
    pub fn limits_recipients(&self) -> bool {
        self.grant.max_recipients.is_some()
    }
}

/// Every listed producer, Herald's own broker users, and what the rest may
/// do. Built once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Producers {
    users: HashMap<String, Grant>,
    /// The users Herald connects to the broker as: the jobs it queues
    /// itself (operators' ad-hoc broadcasts) carry one of them, and pass.
    own: Vec<String>,
    unlisted: Unlisted,
}

impl Producers {
    pub fn new(users: HashMap<String, Grant>, own: Vec<String>, unlisted: Unlisted) -> Self {
        Producers {
            users,
            own,
            unlisted,
        }
    }

    /// The listed producer of a message with `user_id`, if it is one
    /// (Herald's own users never are: they may do anything).
    pub fn listed(&self, user_id: Option<&str>) -> Option<Listed<'_>> {
        let (user, grant) = self.users.get_key_value(user_id?)?;
        Some(Listed { user, grant })
    }

    /// Whether a message with `user_id` may be taken at all: refused only
    /// when it is from no listed producer (nor Herald) and
    /// `producers.unlisted` is `refuse`.
    pub fn admit(&self, user_id: Option<&str>) -> Result<Option<Listed<'_>>, Refusal> {
        if let Some(listed) = self.listed(user_id) {
            return Ok(Some(listed));
        }
        match user_id {
            Some(user) if self.own.iter().any(|own| own == user) => Ok(None),
            _ if self.unlisted == Unlisted::Allow => Ok(None),
            Some(user) => Err(Refusal::Unlisted(user.to_string())),
            None => Err(Refusal::NoUserId),
        }
    }

    /// Whether a message with `user_id` may ask for control operation `op`.
    pub fn check_request(&self, user_id: Option<&str>, op: &str) -> Result<(), Refusal> {
        match self.admit(user_id)? {
            Some(listed) if !listed.grant.control.allows(op) => Err(Refusal::Operation {
                user: listed.user.to_string(),
                op: op.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// Each rate-limited producer's token bucket. Memory is bounded by the
/// listed producers: only they have a rate.
#[derive(Debug, Default)]
pub struct Rates {
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Rates {
    /// Takes a job of `listed` at `now`, if its rate allows one more.
    pub fn take(&mut self, listed: Listed<'_>, now: Instant) -> Result<(), Refusal> {
        let Some(rate) = listed.grant.rate else {
            return Ok(());
        };
        let bucket = self
            .buckets
            .entry(listed.user.to_string())
            .or_insert(Bucket {
                tokens: rate.burst,
                at: now,
            });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_sec).min(rate.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refusal::RateLimited {
                user: listed.user.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests;
