//! The jobs a connection delivered and Herald has not settled: each one
//! handed to the loop as a [`Delivery`], its properties kept for a dead
//! letter, and its acknowledgement or requeue sent on its lane's channel.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::{BasicProperties, Channel};

use crate::core::{Delivery, JobId, Lane};

/// Of each lane's unsettled deliveries: what a dead letter keeps.
#[derive(Default)]
pub struct Unsettled {
    kept: [BTreeMap<u64, BasicProperties>; 2],
}

impl Unsettled {
    /// A job of connection `generation` and `lane`, as the loop takes it.
    pub fn delivered(
        &mut self,
        delivery: lapin::message::Delivery,
        generation: u64,
        lane: Lane,
    ) -> Delivery {
        let id = JobId {
            generation,
            lane,
            tag: delivery.delivery_tag,
        };
        let now = SystemTime::now();
        let age = published_age(&delivery.properties, now);
        let user_id = user_id(&delivery.properties);
        self.kept[lane.index()].insert(id.tag, delivery.properties);
        Delivery {
            id,
            payload: delivery.data,
            redelivered: delivery.redelivered,
            age,
            received_at: now,
            user_id,
        }
    }

    /// The properties of `job`, for its dead letter.
    pub fn properties(&self, job: JobId) -> Option<BasicProperties> {
        self.kept[job.lane.index()].get(&job.tag).cloned()
    }

    /// Acknowledges `job` (with `multiple`, every earlier one of its lane
    /// too) on `channel`, its lane's.
    pub fn ack(&mut self, channel: &Channel, job: JobId, multiple: bool) {
        let kept = &mut self.kept[job.lane.index()];
        if multiple {
            *kept = kept.split_off(&(job.tag + 1));
        } else {
            kept.remove(&job.tag);
        }
        send_now(channel.basic_ack(job.tag, BasicAckOptions { multiple }));
    }

    /// Gives `job` back to its queue, on `channel`, its lane's.
    pub fn requeue(&mut self, channel: &Channel, job: JobId) {
        self.kept[job.lane.index()].remove(&job.tag);
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        send_now(channel.basic_nack(job.tag, options));
    }
}

/// The message's AMQP `user_id`, which the broker checked against the
/// user of the connection that published it.
pub fn user_id(properties: &BasicProperties) -> Option<String> {
    properties.user_id().as_ref().map(|user| user.to_string())
}

/// How long ago the job was published, from its AMQP `timestamp` (seconds
/// since the epoch) and the time `now`, if its publisher set one.
fn published_age(properties: &BasicProperties, now: SystemTime) -> Option<Duration> {
    let seconds = (*properties.timestamp())?;
    let at = UNIX_EPOCH + Duration::from_secs(seconds);
    // A publisher's clock ahead of ours would give negative durations.
    now.duration_since(at).ok()
}

/// Hands an ack or nack to lapin without waiting for it to be written.
/// lapin queues the frame on the first poll, so frames go out in the order
/// they are handed over (an ack `multiple` never overtakes a nack before
/// it); waiting for each to be written would hold up the link task for a
/// round trip to lapin's I/O thread per frame. One that fails is lost with
/// its channel, and the broker then redelivers the jobs it covered.
fn send_now(frame: impl std::future::Future<Output = lapin::Result<()>>) {
    if let Some(Err(e)) = frame.now_or_never() {
        tracing::warn!(error = %e, "acknowledgement not sent; the broker will redeliver those jobs");
    }
}
