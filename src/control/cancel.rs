//! The `cancel` request: a job, by its `id`, is to send nothing more.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Request, RequestError};
use crate::broadcast::job::check_id;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelFields {
    #[serde(rename = "op")]
    _op: IgnoredAny,
    id: String,
}

pub(super) fn parse(value: Value) -> Result<Request, RequestError> {
    let fields: CancelFields =
        serde_json::from_value(value).map_err(|e| RequestError::InvalidRequest(e.to_string()))?;
    // As a job's id is checked: no job could have any other.
    check_id(&fields.id).map_err(|e| RequestError::InvalidRequest(e.to_string()))?;
    Ok(Request::Cancel { id: fields.id })
}

/// Where the job stood when the cancellation came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelState {
    /// Its messages were going out: it stopped, and `report` is the report
    /// it is published with.
    InProgress,
    /// Herald has not taken it (yet): when it comes up it sends nothing
    /// and is reported cancelled.
    Pending,
    /// Every message of it was already sent (or it was reported as a
    /// duplicate, expired, or cancelled before): nothing to cancel.
    Completed,
}

/// The answer to `cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelResult {
    pub id: String,
    pub state: CancelState,
    /// For `in_progress`: the job's report, as it will be published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
}
