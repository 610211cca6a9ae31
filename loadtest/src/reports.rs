//! The component's job reports, read for the whole run: a run is accurate
//! only when every job was reported once and the reports account for
//! every recipient, as they would for an application waiting on them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;

use crate::component::AmqpNames;

/// The routing key both components publish reports with.
const REPORT_KEY: &str = "job.report";

/// What the reports said so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportCounts {
    /// Distinct job ids reported.
    pub jobs: u64,
    /// Messages sent, summed over the first report of each job.
    pub sent: u64,
    /// Reports whose counts do not add up to their recipients, repeated
    /// reports of a job, and payloads that are not reports.
    pub faulty: u64,
}

#[derive(Deserialize)]
struct Report {
    id: String,
    recipients: u64,
    sent: u64,
    skipped: Skipped,
}

#[derive(Deserialize)]
struct Skipped {
    offline: u64,
    unavailable: u64,
    invalid: u64,
}

#[derive(Debug, Default)]
struct Tally {
    ids: HashSet<String>,
    counts: ReportCounts,
}

impl Tally {
    fn add(&mut self, payload: &[u8]) {
        let Ok(report) = serde_json::from_slice::<Report>(payload) else {
            self.counts.faulty += 1;
            return;
        };
        let s = &report.skipped;
        let adds_up = report.sent + s.offline + s.unavailable + s.invalid == report.recipients;
        if !adds_up || !self.ids.insert(report.id) {
            self.counts.faulty += 1;
            return;
        }
        self.counts.jobs += 1;
        self.counts.sent += report.sent;
    }
}

/// A queue bound to the run's events exchange for reports, and its
/// consumer. Declared before the component starts, so no report is missed.
pub struct ReportTap {
    connection: Connection,
    tally: Arc<Mutex<Tally>>,
}

impl ReportTap {
    pub async fn bind(names: &AmqpNames) -> Result<ReportTap, String> {
        let amqp = |e: lapin::Error| format!("report queue: {e}");
        let connection = Connection::connect(&names.url, ConnectionProperties::default())
            .await
            .map_err(|e| format!("connect to RabbitMQ at {}: {e}", names.url))?;
        let channel = connection.create_channel().await.map_err(amqp)?;
        // The components declare the same exchange, the same way.
        channel
            .exchange_declare(
                names.events.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        // Exclusive: the broker deletes it with this connection.
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        channel
            .queue_bind(
                queue.name().clone(),
                names.events.as_str().into(),
                REPORT_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        let mut consumer = channel
            .basic_consume(
                queue.name().clone(),
                "loadtest-reports".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        let tally = Arc::new(Mutex::new(Tally::default()));
        let seen = Arc::clone(&tally);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                seen.lock().expect("report tally").add(&delivery.data);
            }
        });
        Ok(ReportTap { connection, tally })
    }

    pub fn counts(&self) -> ReportCounts {
        self.tally.lock().expect("report tally").counts.clone()
    }

    /// Waits until `jobs` jobs are reported, or no new report came for
    /// `idle`; returns the counts then.
    pub async fn wait_for(&self, jobs: u64, idle: Duration) -> ReportCounts {
        let mut last = self.counts();
        let mut last_change = Instant::now();
        while last.jobs < jobs && last_change.elapsed() < idle {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.counts();
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
        last
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, recipients: u64, sent: u64, offline: u64) -> Vec<u8> {
        format!(
            r#"{{"id":"{id}","recipients":{recipients},"sent":{sent},
                "skipped":{{"offline":{offline},"unavailable":0,"invalid":0}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn counts_each_job_once_and_flags_what_does_not_add_up() {
        let mut tally = Tally::default();
        tally.add(&report("a", 3, 2, 1));
        tally.add(&report("b", 1, 1, 0));
        tally.add(&report("b", 1, 1, 0)); // a second report of b
        tally.add(&report("c", 5, 2, 1)); // two recipients unaccounted for
        tally.add(b"not a report");
        assert_eq!(
            tally.counts,
            ReportCounts {
                jobs: 2,
                sent: 3,
                faulty: 3
            }
        );
    }

    #[test]
    fn reads_a_duplicate_flag_and_possible_duplicates_without_complaint() {
        let mut tally = Tally::default();
        tally.add(
            br#"{"id":"a","recipients":1,"sent":1,"possible_duplicates":1,
                 "skipped":{"offline":0,"unavailable":0,"invalid":0}}"#,
        );
        assert_eq!(tally.counts.jobs, 1);
        assert_eq!(tally.counts.faulty, 0);
    }
}
