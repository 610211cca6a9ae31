//! Job contract v1: the JSON a producer puts on the jobs queue
//! ([`RawJob`]), parsed and validated into a [`Job`] that can only produce
//! well-formed stanzas. Pure code: no I/O.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use xmpp_parsers::jid::BareJid;

use crate::config::{BroadcastConfig, ConfigError};
use crate::presence::Policy;

/// Why a job was dead-lettered. The text goes into the dead letter's
/// `x-herald-error` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("not a valid job: {0}")]
    Json(String),
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("recipient #{index} {jid:?} is not a valid JID: {reason}")]
    Recipient {
        index: usize,
        jid: String,
        reason: String,
    },
}

fn field_error(field: &'static str, reason: impl Into<String>) -> JobError {
    JobError::Field {
        field,
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// Stored offline by the server if the user left in the meantime.
    #[default]
    Chat,
    /// Stored offline by the server if the user left in the meantime.
    Normal,
    /// Dropped by the server if the user has no available resource.
    Headline,
}

impl From<MessageKind> for xmpp_parsers::message::MessageType {
    fn from(kind: MessageKind) -> Self {
        use xmpp_parsers::message::MessageType;
        match kind {
            MessageKind::Chat => MessageType::Chat,
            MessageKind::Normal => MessageType::Normal,
            MessageKind::Headline => MessageType::Headline,
        }
    }
}

/// What a job asks servers to keep of its messages, as XEP-0334 hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Storage {
    /// Whatever the server keeps by default (archive, offline storage).
    #[default]
    Default,
    /// Not archived (XEP-0313); may still wait in offline storage.
    NoPermanentStore,
    /// Neither archived nor stored offline: worthless later.
    NoStore,
}

impl Storage {
    fn is_default(&self) -> bool {
        *self == Storage::Default
    }
}

mod recipients;

pub use recipients::{Recipient, Recipients, Texts, TooLarge};

/// A job on the wire, as a producer writes it (field names and defaults
/// of docs/jobs.md), before validation: `herald send` writes it with a
/// `String` per recipient, [`Job::parse`] reads `to` into one buffer
/// ([`Texts`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob<To = Vec<String>> {
    pub id: String,
    #[serde(default)]
    pub to: To,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: MessageKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default)]
    pub policy: Policy,
    /// RFC 3339: a job taken after this sends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Storage::is_default")]
    pub storage: Storage,
    /// Groups whose members are recipients too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Everyone who shares presence with Herald is a recipient too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_subscribers: bool,
    /// The report names the recipients per outcome, in parts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_names: bool,
    /// Recipients not reachable when the job goes out get it as soon as
    /// they are, within this many seconds; a final report follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_within_secs: Option<u64>,
    /// Messages ask clients for delivery receipts (XEP-0184), counted in
    /// the final report.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub receipts: bool,
}

/// A validated job: every string in it is safe to put into XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    /// Shared with the messages queued to them, which name their
    /// recipient by position.
    pub recipients: Arc<Recipients>,
    pub body: String,
    pub subject: Option<String>,
    pub kind: MessageKind,
    pub from: BareJid,
    pub policy: Policy,
    /// Taken after this, the job is reported expired and sends nothing.
    pub expires_at: Option<SystemTime>,
    pub storage: Storage,
    /// Groups named (each once, as written) whose members are to be added
    /// to the recipients: [`crate::broadcast::audience`] does it, when the
    /// job is examined.
    pub groups: Vec<String>,
    /// Every subscriber is to be added to the recipients too.
    pub all_subscribers: bool,
    /// Its report names the recipients per outcome
    /// ([`crate::broadcast::names`]).
    pub names: bool,
    /// Recipients it cannot reach when it goes out wait this long for
    /// their presence to allow it (see [`crate::handler::Deferral`]).
    pub deliver_within: Option<Duration>,
    /// Its messages ask for delivery receipts, counted until its window
    /// ends (or `broadcast.receipts_window_secs` without one).
    pub receipts: bool,
}

/// What the deployment allows a job.
#[derive(Debug, Clone)]
pub struct JobLimits {
    pub component_domain: BareJid,
    /// Whom a job without `from` is sent from (`broadcast.default_from` at
    /// the component's domain), parsed once.
    pub default_sender: BareJid,
    pub max_body_bytes: usize,
    pub max_recipients: usize,
    /// Local parts a job may send from (normalised); empty: any.
    pub allowed_from: Vec<String>,
    /// Largest part of a report that names recipients, in bytes.
    pub names_part_bytes: usize,
    /// Longest window a job may ask for.
    pub max_deliver_within: Duration,
    /// How long receipts are counted for a job without a window.
    pub receipts_window: Duration,
}

impl JobLimits {
    /// The limits of the deployment `config` describes.
    /// The limits `broadcast` sets, for a component on `component_domain`.
    pub fn new(
        broadcast: &BroadcastConfig,
        component_domain: BareJid,
    ) -> Result<JobLimits, ConfigError> {
        let allowed_from = broadcast
            .allowed_from
            .iter()
            .map(|local| {
                sender_jid(local, &component_domain)
                    .ok()
                    .and_then(|jid| jid.node().map(|node| node.to_string()))
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "broadcast.allowed_from: {local:?} is not a valid local part"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        let default_sender =
            sender_jid(&broadcast.default_from, &component_domain).map_err(|_| {
                ConfigError::Invalid(format!(
                    "broadcast.default_from: {:?} is not a valid local part",
                    broadcast.default_from
                ))
            })?;
        Ok(JobLimits {
            component_domain,
            default_sender,
            max_body_bytes: broadcast.max_body_bytes,
            max_recipients: broadcast.max_recipients,
            allowed_from,
            names_part_bytes: broadcast.names_part_bytes,
            max_deliver_within: Duration::from_secs(broadcast.max_deliver_within_secs),
            receipts_window: Duration::from_secs(broadcast.receipts_window_secs),
        })
    }
}

impl Job {
    /// Whether its walk records each recipient's outcome: to name them,
    /// or to know who waits in its window.
    pub fn keeps_outcomes(&self) -> bool {
        self.names || self.deliver_within.is_some()
    }
}

pub const MAX_ID_CHARS: usize = 256;
/// Most groups one job may name.
pub const MAX_GROUPS: usize = 1_000;

impl Job {
    pub fn parse(payload: &[u8], limits: &JobLimits) -> Result<Job, JobError> {
        // serde would also read a struct from a JSON array of its fields.
        if payload.trim_ascii_start().first() != Some(&b'{') {
            return Err(JobError::Json("a job is a JSON object".into()));
        }
        let raw: RawJob<Texts> =
            serde_json::from_slice(payload).map_err(|e| JobError::Json(e.to_string()))?;
        raw.validate(limits)
    }
}

/// Whether `id` can be a job's `id` (a cancellation names one by it).
pub fn check_id(id: &str) -> Result<(), JobError> {
    if id.trim().is_empty() {
        return Err(field_error("id", "must not be empty"));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(field_error(
            "id",
            format!("longer than {MAX_ID_CHARS} characters"),
        ));
    }
    check_xml_text("id", id)
}

impl RawJob<Texts> {
    fn validate(self, limits: &JobLimits) -> Result<Job, JobError> {
        check_id(&self.id)?;
        if self.body.trim().is_empty() {
            return Err(field_error("body", "must not be empty"));
        }
        if self.body.len() > limits.max_body_bytes {
            return Err(field_error(
                "body",
                format!(
                    "{} bytes, over the limit of {}",
                    self.body.len(),
                    limits.max_body_bytes
                ),
            ));
        }
        check_xml_text("body", &self.body)?;
        let subject = self.subject.filter(|s| !s.is_empty());
        if let Some(subject) = &subject {
            if subject.len() > limits.max_body_bytes {
                return Err(field_error("subject", "over the body size limit"));
            }
            check_xml_text("subject", subject)?;
        }
        let expires_at = self.expires_at.as_deref().map(deadline).transpose()?;
        let deliver_within = self.deliver_within_secs.map(Duration::from_secs);
        if let Some(within) = deliver_within.filter(|w| *w > limits.max_deliver_within) {
            return Err(field_error(
                "deliver_within_secs",
                format!(
                    "{} seconds, over this deployment's limit of {} (broadcast.max_deliver_within_secs)",
                    within.as_secs(),
                    limits.max_deliver_within.as_secs()
                ),
            ));
        }
        if self.to.len() > limits.max_recipients {
            return Err(field_error(
                "to",
                format!(
                    "{} recipients, over the limit of {}",
                    self.to.len(),
                    limits.max_recipients
                ),
            ));
        }
        let from = match self.from {
            Some(local) => sender_jid(&local, &limits.component_domain)?,
            None => limits.default_sender.clone(),
        };
        let node = from.node().map(|node| node.as_str()).unwrap_or_default();
        if !limits.allowed_from.is_empty() && !limits.allowed_from.iter().any(|a| a == node) {
            return Err(field_error(
                "from",
                format!("{node:?} is not one of the senders allowed by broadcast.allowed_from"),
            ));
        }
        if self.groups.len() > MAX_GROUPS {
            return Err(field_error(
                "groups",
                format!(
                    "{} groups, over the limit of {MAX_GROUPS}",
                    self.groups.len()
                ),
            ));
        }
        let mut groups: Vec<String> = Vec::with_capacity(self.groups.len());
        for name in self.groups {
            crate::groups::check_name(&name).map_err(|reason| field_error("groups", reason))?;
            if !groups.contains(&name) {
                groups.push(name);
            }
        }
        let recipients = Recipients::parse(self.to, &limits.component_domain)?;
        Ok(Job {
            id: self.id,
            recipients: Arc::new(recipients),
            body: self.body,
            subject,
            kind: self.kind,
            from,
            policy: self.policy,
            expires_at,
            storage: self.storage,
            groups,
            all_subscribers: self.all_subscribers,
            names: self.report_names,
            deliver_within: deliver_within.filter(|within| !within.is_zero()),
            receipts: self.receipts,
        })
    }
}

/// An `expires_at` as the wall-clock time it names.
fn deadline(text: &str) -> Result<SystemTime, JobError> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        field_error(
            "expires_at",
            format!("{:?} is not an RFC 3339 date-time: {e}", truncated(text)),
        )
    })?;
    Ok(at.into())
}

fn sender_jid(local: &str, domain: &BareJid) -> Result<BareJid, JobError> {
    if local.is_empty() || local.contains(['@', '/']) {
        return Err(field_error(
            "from",
            "must be a bare local part such as \"alerts\"",
        ));
    }
    BareJid::new(&format!("{local}@{domain}"))
        .map_err(|e| field_error("from", format!("{local:?} is not a valid local part: {e}")))
}

fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Refuses characters XML 1.0 does not allow in a document.
fn check_xml_text(field: &'static str, text: &str) -> Result<(), JobError> {
    match text.char_indices().find(|(_, c)| !is_xml_char(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(field_error(
            field,
            format!(
                "character U+{:04X} at byte {at} is not allowed in XML",
                c as u32
            ),
        )),
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests;
