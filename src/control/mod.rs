//! The control plane's contract: requests an application sends to
//! `amqp.control_queue` (with `reply_to` and `correlation_id` in the AMQP
//! properties) and the replies Herald publishes back. Pure data, used by the
//! core that answers ([`crate::core`]) and by the CLI that asks
//! ([`crate::send::control`]). docs/control.md and docs/schema/control/
//! describe the same contract for other languages.

mod cancel;
mod groups;
mod presence;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use xmpp_parsers::jid::BareJid;

pub use cancel::{CancelResult, CancelState};
pub use groups::{
    GroupChanged, GroupDeleted, GroupList, GroupPage, GroupSummary, MAX_REQUEST_MEMBERS,
};
pub use presence::{timestamp, PresenceResult, UserPresence};

use crate::groups::GroupChange;

/// Most users one `presence` request may name.
pub const MAX_PRESENCE_USERS: usize = 20_000;
/// Users (or groups) in a page when the request gives no `limit`.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page of `online`, `group.get` and `group.list`.
pub const MAX_PAGE: usize = 10_000;

/// The operations other than the groups' ([`groups::OPS`]).
const OTHER_OPS: [&str; 4] = ["presence", "online", "status", "cancel"];

/// Every operation, as `op` names it.
pub fn ops() -> impl Iterator<Item = &'static str> {
    OTHER_OPS.into_iter().chain(groups::OPS)
}

/// Every operation, for a message: `presence, online, ...`.
pub fn ops_listed() -> String {
    ops().collect::<Vec<_>>().join(", ")
}

/// A request, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The presence of these users (as the request wrote them: each is
    /// checked, and answered, on its own).
    Presence {
        users: Vec<String>,
    },
    /// Online users in JID order, `limit` of them after `after`.
    Online {
        limit: usize,
        after: Option<String>,
    },
    Status,
    /// `group.put`, `group.add`, `group.remove`, `group.delete`.
    Group(GroupChange),
    /// The group's members in JID order, `limit` of them after `after`.
    GroupGet {
        name: String,
        limit: usize,
        after: Option<BareJid>,
    },
    /// Group names and sizes in name order, `limit` of them after `after`.
    GroupList {
        limit: usize,
        after: Option<String>,
    },
    /// The job with this `id` sends nothing more.
    Cancel {
        id: String,
    },
}

/// Why a request is refused; `code` is what the reply says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request is not JSON: {0}")]
    InvalidJson(String),
    #[error("unknown op {0:?}; known: {known}", known = ops_listed())]
    UnknownOp(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no group {0:?}")]
    UnknownGroup(String),
    /// A change was made but could not be saved (yet): see docs/control.md.
    #[error("{0}")]
    StoreFailed(String),
    /// The producer (the request's AMQP `user_id`) may not ask for it.
    #[error(transparent)]
    Forbidden(#[from] crate::producers::Refusal),
}

impl RequestError {
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidJson(_) => "invalid_json",
            RequestError::UnknownOp(_) => "unknown_op",
            RequestError::InvalidRequest(_) => "invalid_request",
            RequestError::UnknownGroup(_) => "unknown_group",
            RequestError::StoreFailed(_) => "store_failed",
            RequestError::Forbidden(_) => "forbidden",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceFields {
    #[serde(rename = "op")]
    _op: IgnoredAny,
    users: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnlineFields {
    #[serde(rename = "op")]
    _op: IgnoredAny,
    limit: Option<usize>,
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusFields {
    #[serde(rename = "op")]
    _op: IgnoredAny,
}

/// Parses a request's body. The op is read first so that an unknown op is
/// told apart from a known one with wrong fields.
pub fn parse(payload: &[u8]) -> Result<Request, RequestError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    let Some(op) = value.get("op") else {
        return Err(RequestError::InvalidRequest(
            "the request has no \"op\"".into(),
        ));
    };
    let Some(op) = op.as_str() else {
        return Err(RequestError::InvalidRequest(
            "\"op\" is not a string".into(),
        ));
    };
    let invalid = |e: serde_json::Error| RequestError::InvalidRequest(e.to_string());
    match op {
        "presence" => {
            let fields: PresenceFields = serde_json::from_value(value).map_err(invalid)?;
            if fields.users.len() > MAX_PRESENCE_USERS {
                return Err(RequestError::InvalidRequest(format!(
                    "{} users; at most {MAX_PRESENCE_USERS} per request",
                    fields.users.len()
                )));
            }
            Ok(Request::Presence {
                users: fields.users,
            })
        }
        "online" => {
            let fields: OnlineFields = serde_json::from_value(value).map_err(invalid)?;
            Ok(Request::Online {
                limit: page_limit(fields.limit)?,
                after: fields.after,
            })
        }
        "status" => {
            serde_json::from_value::<StatusFields>(value).map_err(invalid)?;
            Ok(Request::Status)
        }
        "cancel" => cancel::parse(value),
        op if groups::OPS.contains(&op) => {
            let op = op.to_string();
            groups::parse(&op, value)
        }
        other => Err(RequestError::UnknownOp(other.to_string())),
    }
}

/// A page's `limit`, or the default one.
fn page_limit(limit: Option<usize>) -> Result<usize, RequestError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(RequestError::InvalidRequest(format!(
            "limit {limit}: between 1 and {MAX_PAGE}"
        )));
    }
    Ok(limit)
}

/// A paged request's body with the page's start, if it has one.
pub(crate) fn paged(mut value: Value, after: Option<&str>) -> Value {
    if let Some(after) = after {
        value["after"] = after.into();
    }
    value
}

impl Request {
    /// Its operation, as `op` names it (one of [`ops`]).
    pub fn op(&self) -> &'static str {
        match self {
            Request::Presence { .. } => "presence",
            Request::Online { .. } => "online",
            Request::Status => "status",
            Request::Cancel { .. } => "cancel",
            Request::Group(GroupChange::Put { .. }) => "group.put",
            Request::Group(GroupChange::Add { .. }) => "group.add",
            Request::Group(GroupChange::Remove { .. }) => "group.remove",
            Request::Group(GroupChange::Delete { .. }) => "group.delete",
            Request::GroupGet { .. } => "group.get",
            Request::GroupList { .. } => "group.list",
        }
    }

    /// The request's body, as [`parse`] reads it.
    pub fn to_json(&self) -> Vec<u8> {
        let value = match self {
            Request::Presence { users } => serde_json::json!({"op": "presence", "users": users}),
            Request::Online { limit, after } => paged(
                serde_json::json!({"op": "online", "limit": limit}),
                after.as_deref(),
            ),
            Request::Status => serde_json::json!({"op": "status"}),
            Request::Cancel { id } => serde_json::json!({"op": "cancel", "id": id}),
            group => groups::to_json(group).unwrap_or_default(),
        };
        value.to_string().into_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUser {
    pub jid: String,
    pub available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineResult {
    /// Users online now, all pages together.
    pub online: usize,
    /// Of them, available (no `show`, or `chat`).
    pub available: usize,
    /// This page, in JID order.
    pub users: Vec<OnlineUser>,
    /// The `after` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    pub version: String,
    /// A component stream to the XMPP server is up.
    pub xmpp_connected: bool,
    /// A broker connection is up (it carried the request, unless the
    /// answer went out as that connection was lost).
    pub broker_connected: bool,
    pub online_users: usize,
    pub online_resources: usize,
    /// (user, Herald JID) pairs sharing presence.
    pub subscriptions: usize,
    pub jobs_in_flight: usize,
    /// Completed jobs remembered to answer a job published again.
    pub remembered_jobs: usize,
    /// Cancelled job ids remembered (`cancel`): a job of one of them sends
    /// nothing when it comes up.
    pub cancelled: usize,
    pub groups: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// A reply: `{"ok": true, "result": ...}` or `{"ok": false, "error": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    pub fn result(result: impl Serialize) -> Reply {
        Reply {
            ok: true,
            result: Some(serde_json::to_value(result).expect("results serialize")),
            error: None,
        }
    }

    pub fn error(error: &RequestError) -> Reply {
        Reply {
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: error.code().into(),
                message: error.to_string(),
            }),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("replies serialize")
    }
}

#[cfg(test)]
mod tests;
