//! Waiting for Herald's own events on a tap of its events exchange.

use std::time::Duration;

use serde_json::Value;

use crate::amqp::EventTap;

/// How long to wait for an event Herald must publish.
pub const EVENT_WAIT: Duration = Duration::from_secs(20);

/// Waits until Herald publishes `presence.changed` for `jid` with `show`
/// (`None`: unavailable). This is how tests know Herald has seen a presence.
pub async fn await_presence(tap: &mut EventTap, jid: &str, show: Option<&str>) {
    let seen = tap
        .next_matching("presence.changed", EVENT_WAIT, |event| {
            event["jid"] == jid
                && event["available"] == show.is_some()
                && event["show"] == show.map_or(Value::Null, Value::from)
        })
        .await;
    assert!(seen.is_some(), "no presence.changed for {jid} ({show:?})");
}

/// The next `job.report` for job `id` within `timeout`, skipping others.
pub async fn report_within(tap: &mut EventTap, id: &str, timeout: Duration) -> Option<Value> {
    tap.next_matching("job.report", timeout, |report| report["id"] == id)
        .await
}

/// The next `job.report` for job `id`; panics if none comes.
pub async fn next_report(tap: &mut EventTap, id: &str) -> Value {
    report_within(tap, id, EVENT_WAIT)
        .await
        .unwrap_or_else(|| panic!("no job.report for {id}"))
}
