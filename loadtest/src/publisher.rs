//! The job publisher: J jobs of R recipients each (or any prepared jobs)
//! into the run's jobs queue, persistent, with publisher confirms, at full
//! speed or at a set rate. Each job's publish time is recorded for latency.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use serde_json::json;

use crate::body;
use crate::broker::Broker;

/// Confirms awaited in a sliding window: enough to keep the broker busy,
/// few enough to bound memory.
const CONFIRM_WINDOW: usize = 2048;

/// What to publish.
pub struct Plan<'a> {
    pub jobs: u64,
    pub recipients_per_job: usize,
    /// Bare JIDs of the swarm's users, in order.
    pub users: &'a [String],
    /// Jobs per second; `None` for full speed.
    pub rate: Option<f64>,
}

/// The indexes (into the swarm's users) of job `seq`'s recipients:
/// consecutive users, wrapping around, `per_job` of them (at most all).
pub fn recipients(seq: u64, per_job: usize, users: usize) -> impl Iterator<Item = usize> {
    let per_job = per_job.min(users);
    let first = (seq as usize).wrapping_mul(per_job) % users.max(1);
    (0..per_job).map(move |k| (first + k) % users)
}

/// The job v1 JSON of job `seq`.
pub fn job_json(seq: u64, to: Vec<&str>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": format!("loadtest-{seq}"),
        "to": to,
        "body": body::encode(seq),
    }))
    .expect("a job serializes")
}

/// Publishes the plan to the run's jobs queue (see [`publish_payloads`]).
/// The job bodies are built before the first publish.
pub async fn publish(
    broker: &Broker,
    plan: &Plan<'_>,
    channels: usize,
    epoch: Instant,
) -> Result<(Vec<u64>, u64), String> {
    let payloads = (0..plan.jobs)
        .map(|seq| {
            let to = recipients(seq, plan.recipients_per_job, plan.users.len())
                .map(|i| plan.users[i].as_str())
                .collect();
            job_json(seq, to)
        })
        .collect();
    let queue = &broker.names().component.jobs;
    publish_payloads(
        broker,
        queue,
        Arc::new(payloads),
        channels,
        plan.rate,
        epoch,
    )
    .await
}

/// Publishes `payloads` to `queue` (one of the run's), persistent, over
/// `channels` channels at once (payload `seq` on channel `seq % channels`),
/// at `rate` jobs per second or full speed, and waits for every confirm.
/// Returns each payload's publish time in nanoseconds since `epoch`,
/// indexed by sequence number, and when the last confirm arrived.
pub async fn publish_payloads(
    broker: &Broker,
    queue: &str,
    payloads: Arc<Vec<Vec<u8>>>,
    channels: usize,
    rate: Option<f64>,
    epoch: Instant,
) -> Result<(Vec<u64>, u64), String> {
    let connection = broker.publishing_connection().await?;
    let channels = channels.max(1);
    let mut opened = Vec::with_capacity(channels);
    for _ in 0..channels {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("AMQP channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("confirm_select: {e}"))?;
        opened.push(channel);
    }

    let start = Instant::now();
    let tasks: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(first, channel)| {
            let share = Share {
                channel,
                queue: queue.to_string(),
                payloads: Arc::clone(&payloads),
                first,
                step: channels,
                rate,
            };
            tokio::spawn(share.publish(start, epoch))
        })
        .collect();
    let mut published = vec![0u64; payloads.len()];
    for task in tasks {
        let times = task.await.map_err(|e| format!("publisher task: {e}"))??;
        for (seq, at) in times {
            published[seq] = at;
        }
    }
    let confirmed = epoch.elapsed().as_nanos() as u64;
    let _ = connection.close(200, "done".into()).await;
    Ok((published, confirmed))
}

/// The jobs one channel publishes: `first`, `first + step`, ...
struct Share {
    channel: lapin::Channel,
    queue: String,
    payloads: Arc<Vec<Vec<u8>>>,
    first: usize,
    step: usize,
    rate: Option<f64>,
}

impl Share {
    async fn publish(self, start: Instant, epoch: Instant) -> Result<Vec<(usize, u64)>, String> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        let mut times = Vec::with_capacity(self.payloads.len() / self.step + 1);
        let mut pending = VecDeque::with_capacity(CONFIRM_WINDOW);
        for seq in (self.first..self.payloads.len()).step_by(self.step) {
            if let Some(rate) = self.rate {
                let due = start + Duration::from_secs_f64(seq as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            times.push((seq, epoch.elapsed().as_nanos() as u64));
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &self.payloads[seq],
                    properties.clone(),
                )
                .await
                .map_err(|e| format!("publish job {seq}: {e}"))?;
            pending.push_back(confirm);
            if pending.len() >= CONFIRM_WINDOW {
                await_confirm(pending.pop_front().unwrap()).await?;
            }
        }
        for confirm in pending {
            await_confirm(confirm).await?;
        }
        Ok(times)
    }
}

async fn await_confirm(confirm: lapin::PublisherConfirm) -> Result<(), String> {
    let confirmation = confirm
        .await
        .map_err(|e| format!("publisher confirm: {e}"))?;
    if confirmation.is_nack() {
        return Err("the broker nacked a job".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_recipient_per_job_covers_every_user_once() {
        let mut seen: Vec<usize> = (0..10).flat_map(|seq| recipients(seq, 1, 10)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn fan_out_is_capped_at_the_user_count_and_wraps() {
        assert_eq!(recipients(0, 50, 4).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(recipients(1, 3, 5).collect::<Vec<_>>(), vec![3, 4, 0]);
    }

    #[test]
    fn job_is_contract_v1_with_the_sequence_in_the_body() {
        let job: serde_json::Value =
            serde_json::from_slice(&job_json(7, vec!["u1@localhost"])).unwrap();
        assert_eq!(job["id"], "loadtest-7");
        assert_eq!(job["to"], json!(["u1@localhost"]));
        assert_eq!(
            body::decode(job["body"].as_str().unwrap().as_bytes()),
            Some(7)
        );
        assert_eq!(job.as_object().unwrap().len(), 3);
    }
}
