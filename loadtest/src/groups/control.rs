//! The groups made through Herald's control plane as an application makes
//! them: one `group.put` request each on the control queue, answered by
//! RabbitMQ's direct reply-to, all published at once and timed until the
//! last answer.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald::send::control::{direct_replies, request_properties};
use lapin::options::BasicPublishOptions;
use serde_json::{json, Value};

use crate::broker::Broker;

/// The name of group `seq`.
pub fn group_name(seq: usize) -> String {
    format!("loadtest-{seq:05}")
}

/// Puts group `seq` for each of `groups` (its members' bare JIDs) and
/// waits for every answer, each at most `wait` after the one before;
/// returns how long from the first request to the last answer.
pub async fn put_groups(
    broker: &Broker,
    groups: &[Vec<&str>],
    wait: Duration,
) -> Result<Duration, String> {
    let requests: Vec<Vec<u8>> = groups
        .iter()
        .enumerate()
        .map(|(seq, members)| {
            let request = json!({"op": "group.put", "group": group_name(seq), "members": members});
            serde_json::to_vec(&request).expect("a request serializes")
        })
        .collect();
    let connection = broker.publishing_connection().await?;
    let outcome = async {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("AMQP channel: {e}"))?;
        let mut replies = direct_replies(&channel)
            .await
            .map_err(|e| format!("consuming direct replies: {e}"))?;
        let queue = broker.names().component.control.as_str();
        let start = Instant::now();
        for (seq, request) in requests.iter().enumerate() {
            let properties = request_properties(&seq.to_string());
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    request,
                    properties,
                )
                .await
                .map_err(|e| format!("publish group.put {seq}: {e}"))?;
        }
        for answered in 0..groups.len() {
            let delivery = tokio::time::timeout(wait, replies.next())
                .await
                .map_err(|_| format!("{answered} of {} groups answered", groups.len()))?
                .ok_or("the broker closed the reply consumer")?
                .map_err(|e| format!("reading a reply: {e}"))?;
            let reply: Value = serde_json::from_slice(&delivery.data)
                .map_err(|e| format!("a reply that is not JSON: {e}"))?;
            check(&reply, groups)?;
        }
        Ok(start.elapsed())
    }
    .await;
    let _ = connection.close(200, "done".into()).await;
    outcome
}

/// An answer says its group holds exactly the members it was given.
fn check(reply: &Value, groups: &[Vec<&str>]) -> Result<(), String> {
    let result = &reply["result"];
    let size = result["group"]
        .as_str()
        .and_then(|name| name.strip_prefix("loadtest-")?.parse::<usize>().ok())
        .and_then(|seq| groups.get(seq))
        .map(Vec::len);
    match size {
        Some(size) if reply["ok"] == true && result["size"] == size => Ok(()),
        _ => Err(format!("group.put answered {reply}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_must_hold_its_group_whole() {
        let groups = vec![vec!["a@localhost", "b@localhost"]];
        let answer = |size: usize| json!({"ok": true, "result": {"group": group_name(0), "size": size, "added": size, "removed": 0}});
        assert_eq!(check(&answer(2), &groups), Ok(()));
        assert!(check(&answer(1), &groups).is_err());
        let refused = json!({"ok": false, "error": {"code": "forbidden", "message": "no"}});
        assert!(check(&refused, &groups).is_err());
    }
}
