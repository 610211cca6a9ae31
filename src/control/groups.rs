//! The group operations of the control plane: `group.put`, `group.add`,
//! `group.remove`, `group.delete`, `group.get` and `group.list`, their
//! checks and their results.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use xmpp_parsers::jid::{BareJid, Jid};

use super::{page_limit, paged, Request, RequestError};
use crate::groups::{self, GroupChange};

/// Most members one request may carry.
pub const MAX_REQUEST_MEMBERS: usize = 100_000;

/// The group operations, as `op` names them.
pub const OPS: [&str; 6] = [
    "group.put",
    "group.add",
    "group.remove",
    "group.delete",
    "group.get",
    "group.list",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersFields {
    #[serde(rename = "op")]
    _op: IgnoredAny,
    group: String,
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFields {
    #[serde(rename = "op")]
    _op: IgnoredAny,
    group: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetFields {
    #[serde(rename = "op")]
    _op: IgnoredAny,
    group: String,
    limit: Option<usize>,
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFields {
    #[serde(rename = "op")]
    _op: IgnoredAny,
    limit: Option<usize>,
    after: Option<String>,
}

/// Parses the request of the group operation `op` (one of [`OPS`]).
pub(super) fn parse(op: &str, value: Value) -> Result<Request, RequestError> {
    let invalid = |e: serde_json::Error| RequestError::InvalidRequest(e.to_string());
    let request = match op {
        "group.put" | "group.add" | "group.remove" => {
            let fields: MembersFields = serde_json::from_value(value).map_err(invalid)?;
            let name = checked_name(fields.group)?;
            let members = members(fields.members)?;
            Request::Group(match op {
                "group.put" => GroupChange::Put { name, members },
                "group.add" => GroupChange::Add { name, members },
                _ => GroupChange::Remove { name, members },
            })
        }
        "group.delete" => {
            let fields: GroupFields = serde_json::from_value(value).map_err(invalid)?;
            Request::Group(GroupChange::Delete {
                name: checked_name(fields.group)?,
            })
        }
        "group.get" => {
            let fields: GetFields = serde_json::from_value(value).map_err(invalid)?;
            let after = fields
                .after
                .map(|after| {
                    BareJid::new(&after).map_err(|e| {
                        RequestError::InvalidRequest(format!(
                            "after {after:?}: not a bare JID: {e}"
                        ))
                    })
                })
                .transpose()?;
            Request::GroupGet {
                name: checked_name(fields.group)?,
                limit: page_limit(fields.limit)?,
                after,
            }
        }
        _ => {
            let fields: ListFields = serde_json::from_value(value).map_err(invalid)?;
            Request::GroupList {
                limit: page_limit(fields.limit)?,
                after: fields.after,
            }
        }
    };
    Ok(request)
}

fn checked_name(name: String) -> Result<String, RequestError> {
    groups::check_name(&name).map_err(RequestError::InvalidRequest)?;
    Ok(name)
}

/// The members as bare JIDs of users; the first that is not one refuses
/// the request, named with its place in the list.
fn members(members: Vec<String>) -> Result<Vec<BareJid>, RequestError> {
    if members.len() > MAX_REQUEST_MEMBERS {
        return Err(RequestError::InvalidRequest(format!(
            "{} members; at most {MAX_REQUEST_MEMBERS} per request (add the rest with group.add)",
            members.len()
        )));
    }
    members
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let refuse = |reason: String| {
                let shown: String = text.chars().take(64).collect();
                RequestError::InvalidRequest(format!("members[{index}] {shown:?}: {reason}"))
            };
            match Jid::new(text).map(Jid::try_into_full) {
                Ok(Err(bare)) if bare.node().is_some() => Ok(bare),
                Ok(Err(_)) => Err(refuse("a user's JID has a local part (user@domain)".into())),
                Ok(Ok(_)) => Err(refuse("a member is a bare JID, without a resource".into())),
                Err(e) => Err(refuse(format!("not a JID: {e}"))),
            }
        })
        .collect()
}

/// The body of a group request, as [`parse`] reads it; None for other requests.
pub(super) fn to_json(request: &Request) -> Option<Value> {
    let strings =
        |members: &[BareJid]| -> Vec<String> { members.iter().map(|m| m.to_string()).collect() };
    let value = match request {
        Request::Group(GroupChange::Put { name, members }) => {
            json!({"op": "group.put", "group": name, "members": strings(members)})
        }
        Request::Group(GroupChange::Add { name, members }) => {
            json!({"op": "group.add", "group": name, "members": strings(members)})
        }
        Request::Group(GroupChange::Remove { name, members }) => {
            json!({"op": "group.remove", "group": name, "members": strings(members)})
        }
        Request::Group(GroupChange::Delete { name }) => {
            json!({"op": "group.delete", "group": name})
        }
        Request::GroupGet { name, limit, after } => paged(
            json!({"op": "group.get", "group": name, "limit": limit}),
            after.as_ref().map(|after| after.as_str()),
        ),
        Request::GroupList { limit, after } => paged(
            json!({"op": "group.list", "limit": limit}),
            after.as_deref(),
        ),
        Request::Presence { .. }
        | Request::Online { .. }
        | Request::Status
        | Request::Cancel { .. } => return None,
    };
    Some(value)
}

/// The answer to `group.put`, `group.add` and `group.remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChanged {
    pub group: String,
    /// Members after the change.
    pub size: usize,
    /// Members that were not in the group before.
    pub added: usize,
    /// Members that were in it and are no longer.
    pub removed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDeleted {
    pub group: String,
    /// False if there was no such group (deleting it again is not an error).
    pub deleted: bool,
    /// The members it had.
    pub removed: usize,
}

/// The answer to `group.get`: a page of members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPage {
    pub group: String,
    /// Members, all pages together.
    pub size: usize,
    /// This page, in JID order.
    pub members: Vec<String>,
    /// The `after` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub name: String,
    pub size: usize,
}

/// The answer to `group.list`: a page of groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupList {
    /// Groups, all pages together.
    pub total: usize,
    /// This page, in name order.
    pub groups: Vec<GroupSummary>,
    /// The `after` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
