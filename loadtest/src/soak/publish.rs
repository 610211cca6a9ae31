//! The soak's publisher: jobs at a steady rate, each recorded in the
//! ledger before it goes out, persistent and confirmed by the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection};
use serde_json::json;

use super::ledger::{Job, Shared};
use super::schedule::Audience;
use crate::body;

pub struct Publisher {
    pub queue: String,
    /// Bare JIDs of the swarm's users, in order.
    pub jids: Arc<Vec<String>>,
    pub audiences: Vec<Audience>,
    /// Jobs per second.
    pub rate: f64,
    pub ledger: Shared,
    pub epoch: Instant,
}

impl Publisher {
    /// Publishes every job at its time from now; returns once the broker
    /// confirmed the last one.
    pub async fn run(self, connection: &Connection) -> Result<(), String> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("publishing channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("confirm_select: {e}"))?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
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
            let confirm = channel
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    properties.clone(),
                )
                .await
                .map_err(|e| format!("publish job {seq}: {e}"))?
                .await
                .map_err(|e| format!("confirm of job {seq}: {e}"))?;
            if confirm.is_nack() {
                return Err(format!("the broker nacked job {seq}"));
            }
        }
        Ok(())
    }
}
