//! The soak's publisher: jobs at a steady rate, each recorded in the
//! ledger before it goes out, persistent and confirmed by the broker. A
//! job the broker did not confirm (a broker kill took the connection, or
//! it nacked) is published again, with the same id and body, on a new
//! connection: it may have reached the queue, and then Herald gets it
//! twice and must report it once as its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::json;

use super::ledger::{Job, Shared};
use super::schedule::Audience;
use crate::body;
use crate::broker::connect_channel;

/// Pause before connecting again after a failed publish or connect.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Longest wait for a confirm: lapin fails a pending confirm when it sees
/// its connection go, and this bounds the wait if it never sees that.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Publisher {
    pub url: String,
    pub queue: String,
    /// Bare JIDs of the swarm's users, in order.
    pub jids: Arc<Vec<String>>,
    pub audiences: Vec<Audience>,
    /// Jobs per second.
    pub rate: f64,
    pub ledger: Shared,
    pub epoch: Instant,
    /// Longest time without a confirmed publish before giving up.
    pub patience: Duration,
    /// Publishes made again because the first was not confirmed.
    pub republished: Arc<AtomicU64>,
}

/// A connection with a channel in confirm mode.
struct Link {
    connection: Connection,
    channel: Channel,
}

impl Publisher {
    /// Publishes every job at its time from now; returns once the broker
    /// confirmed the last one.
    pub async fn run(self) -> Result<(), String> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        let mut link = None;
        let start = Instant::now();
        for (seq, &audience) in self.audiences.iter().enumerate() {
            let due = start + Duration::from_secs_f64(seq as f64 / self.rate);
            tokio::time::sleep_until(due.into()).await;
            let id = format!("soak-{seq}");
            let to: Vec<&str> = audience
                .users(self.jids.len())
                .map(|user| self.jids[user].as_str())
                .collect();
            let payload = serde_json::to_vec(&json!({
                "id": id,
                "to": to,
                "body": body::encode(seq as u64),
            }))
            .expect("a job serializes");
            self.ledger.lock().unwrap().jobs.push(Job {
                id,
                audience,
                published_ns: self.epoch.elapsed().as_nanos() as u64,
            });
            let since = Instant::now();
            loop {
                let outcome = match &link {
                    Some(link) => publish(link, &self.queue, &payload, &properties).await,
                    None => Err("no connection".to_string()),
                };
                match outcome {
                    Ok(()) => break,
                    Err(e) if since.elapsed() > self.patience => {
                        return Err(format!(
                            "job {seq} not confirmed for {:?}: {e}",
                            self.patience
                        ));
                    }
                    Err(e) => {
                        if link.is_some() {
                            eprintln!("soak: job {seq} not confirmed ({e}); publishing it again");
                            self.republished.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(old) = link.take() {
                            let _ = old.connection.close(200, "again".into()).await;
                        }
                        tokio::time::sleep(RETRY_PAUSE).await;
                        link = connect(&self.url).await.ok();
                    }
                }
            }
        }
        if let Some(link) = link {
            let _ = link.connection.close(200, "done".into()).await;
        }
        Ok(())
    }
}

async fn connect(url: &str) -> Result<Link, String> {
    let (connection, channel) = connect_channel(url, "publishing").await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("confirm_select: {e}"))?;
    Ok(Link {
        connection,
        channel,
    })
}

/// One publish and its confirm: an error unless the broker acked it.
async fn publish(
    link: &Link,
    queue: &str,
    payload: &[u8],
    properties: &BasicProperties,
) -> Result<(), String> {
    let pending = link
        .channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            payload,
            properties.clone(),
        )
        .await
        .map_err(|e| format!("publish: {e}"))?;
    let confirm = tokio::time::timeout(CONFIRM_TIMEOUT, pending)
        .await
        .map_err(|_| format!("no confirm within {CONFIRM_TIMEOUT:?}"))?
        .map_err(|e| format!("confirm: {e}"))?;
    if confirm.is_nack() {
        return Err("the broker nacked it".into());
    }
    Ok(())
}
