//! The load test's side of RabbitMQ in one run: the run's queue and
//! exchange names, their declarations, a consumer of the component's job
//! reports for the whole run, and the clean-up.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::job_reports::{ReportCounts, ReportTally};

/// The routing key Herald and the baseline publish reports with.
const REPORT_KEY: &str = "job.report";

/// The queue and exchange names of one run: the component's, and a queue
/// for reports.
#[derive(Debug, Clone)]
pub struct Names {
    /// What the component is configured with.
    pub component: herald_testkit::herald::Names,
    /// Bound to the events exchange for reports; the components know
    /// nothing of it.
    pub reports: String,
}

impl Names {
    /// Names under `<prefix>-<random hex>`, so runs and tests never share
    /// them.
    pub fn unique(prefix: &str) -> Names {
        let base = herald_testkit::amqp::unique_name(prefix);
        Names {
            component: herald_testkit::herald::Names::under(&base),
            reports: format!("{base}.reports"),
        }
    }
}

pub struct Broker {
    url: String,
    names: Names,
    connection: Connection,
    channel: Channel,
    reports: Arc<Mutex<ReportTally>>,
}

impl Broker {
    /// Connects, declares the jobs queue and the events exchange as the
    /// components do, and consumes a reports queue bound to the exchange.
    /// Before any component starts, so no report is missed.
    pub async fn connect(url: &str, names: Names) -> Result<Broker, String> {
        Broker::connect_declaring(url, names, FieldTable::default()).await
    }

    /// [`Broker::connect`], the jobs queue declared with `jobs_arguments`
    /// (its type), as the component will declare it.
    pub async fn connect_declaring(
        url: &str,
        names: Names,
        jobs_arguments: FieldTable,
    ) -> Result<Broker, String> {
        let (connection, channel) = connect_channel(url, "the load test's").await?;
        let broker = Broker {
            url: url.to_string(),
            names,
            channel,
            connection,
            reports: Arc::default(),
        };
        if let Err(e) = broker.declare_and_consume(jobs_arguments).await {
            broker.clean_up().await;
            return Err(e);
        }
        Ok(broker)
    }

    async fn declare_and_consume(&self, jobs_arguments: FieldTable) -> Result<(), String> {
        let names = &self.names;
        // Not durable: a persistent write per report would add to
        // RabbitMQ's share of the machine, which earlier runs were measured
        // without. Exclusive: it goes with the connection even if the load
        // test is killed.
        let reports = QueueDeclareOptions {
            exclusive: true,
            ..QueueDeclareOptions::default()
        };
        for (queue, options, arguments) in [
            (
                &names.component.jobs,
                QueueDeclareOptions::durable(),
                jobs_arguments,
            ),
            (&names.reports, reports, FieldTable::default()),
        ] {
            self.channel
                .queue_declare(queue.as_str().into(), options, arguments)
                .await
                .map_err(amqp(&format!("declare {queue}")))?;
        }
        self.channel
            .exchange_declare(
                names.component.events.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp(&format!("declare {}", names.component.events)))?;
        self.channel
            .queue_bind(
                names.reports.as_str().into(),
                names.component.events.as_str().into(),
                REPORT_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp(&format!("bind {}", names.reports)))?;
        let mut consumer = self
            .channel
            .basic_consume(
                names.reports.as_str().into(),
                "herald-loadtest-reports".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp(&format!("consume {}", names.reports)))?;
        let reports = Arc::clone(&self.reports);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                reports.lock().unwrap().add(&delivery.data);
            }
        });
        Ok(())
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn reports(&self) -> ReportCounts {
        self.reports.lock().unwrap().counts()
    }

    /// Whether the job with this id has a report.
    pub fn reported(&self, id: &str) -> bool {
        self.reports.lock().unwrap().reported(id)
    }

    /// A connection of its own for publishing jobs: RabbitMQ stops reading
    /// from a publishing connection it applies flow control to, and the
    /// reports must not wait on that.
    pub async fn publishing_connection(&self) -> Result<Connection, String> {
        Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot reach RabbitMQ at {}: {e}", self.url))
    }

    /// Deletes the run's queues (the component's too) and exchange (best
    /// effort), then closes.
    pub async fn clean_up(self) {
        let names = &self.names;
        let component = &names.component;
        // Herald declares its urgent, control and lock queues itself, and
        // its store's stream with `store.backend = "stream"`.
        let lock = format!("{}.lock", component.jobs);
        let store = herald::amqp::store_stream(&component.jobs);
        for queue in [
            &component.jobs,
            &component.urgent,
            &component.control,
            &lock,
            &store,
            &component.dead,
            &names.reports,
        ] {
            let _ = self
                .channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .channel
            .exchange_delete(
                names.component.events.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// A connection of its own to `url` and a channel on it (`what` names the
/// channel in errors).
pub async fn connect_channel(url: &str, what: &str) -> Result<(Connection, Channel), String> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot reach RabbitMQ at {url}: {e}"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("{what} channel: {e}"))?;
    Ok((connection, channel))
}

fn amqp(what: &str) -> impl Fn(lapin::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}
