//! The answer to `presence`: per user, online or not, how available, and
//! since when.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::presence::Show;

/// One user's entry in the answer to `presence`: `error` for a JID that
/// is not a bare JID, else `online` and `available`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    pub jid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    /// Online resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<usize>,
    /// The most ready `<show/>` among them, if any is online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show: Option<Show>,
    /// Since when `online` has been what it is ([`timestamp`]): when the
    /// user's first resource came online, or when Herald saw the last one
    /// go offline (absent if Herald has not seen that since it started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Of an online user, since when `available` and `show` have been what
    /// they are, when that is later than `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceResult {
    /// In the order of the request.
    pub users: Vec<UserPresence>,
}

/// A moment as the reply writes it: RFC 3339 in UTC to the millisecond,
/// `2026-12-06T12:00:00.250Z`.
pub fn timestamp(at: SystemTime) -> String {
    let at = OffsetDateTime::from(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_timestamp_is_utc_to_the_millisecond() {
        let at = UNIX_EPOCH + Duration::from_micros(1_796_558_400_250_999);
        assert_eq!(timestamp(at), "2026-12-06T12:00:00.250Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
