//! What one job did, seen from outside Herald: the reports published for
//! it and the copies of its message each user got. For tests that break
//! something mid-job, where a job may be processed more than once.

use std::time::Duration;

use serde_json::Value;

use crate::amqp::EventTap;
use crate::c2s::XmppUser;
use crate::events::{next_report, report_within};
use crate::server::ROSTER_CONTACT;

/// Every report of job `id`: waits for the first, then takes more until
/// none comes for a while.
pub async fn reports_of(tap: &mut EventTap, id: &str) -> Vec<Value> {
    let mut reports = vec![next_report(tap, id).await];
    while let Some(more) = report_within(tap, id, Duration::from_secs(2)).await {
        reports.push(more);
    }
    reports
}

/// The job's own report among `reports`: there must be exactly one, and
/// any other must be marked as a duplicate's.
pub fn own_report(reports: &[Value]) -> Value {
    let own: Vec<&Value> = reports
        .iter()
        .filter(|r| r.get("duplicate").is_none())
        .collect();
    assert_eq!(own.len(), 1, "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r.get("duplicate").is_none() || r["duplicate"] == true),
        "{reports:?}"
    );
    own[0].clone()
}

/// Collects what `users` receive within `window`; each must have got the
/// message `body` from Herald at least once, whole, and nothing else.
/// Returns how many got it more than once, which `report` must allow.
pub async fn assert_everyone_got_it(
    users: &mut [XmppUser],
    body: &str,
    window: Duration,
    report: &Value,
) -> usize {
    let received =
        futures_util::future::join_all(users.iter_mut().map(|user| user.collect_messages(window)))
            .await;
    let mut twice = 0;
    for (user, received) in users.iter().zip(&received) {
        assert!(!received.is_empty(), "{} got nothing", user.jid());
        for message in received {
            assert!(
                message.body == body && message.from == ROSTER_CONTACT,
                "{} got {:?}",
                user.jid(),
                message.stanza
            );
        }
        twice += usize::from(received.len() > 1);
    }
    let possible = report["possible_duplicates"].as_u64().unwrap_or(0) as usize;
    assert!(
        twice <= possible,
        "{twice} users got the message twice, the report allows {possible}: {report}"
    );
    twice
}
