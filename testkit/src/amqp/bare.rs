//! A consumer of jobs that costs next to nothing beside the broker: on
//! Herald's own AMQP client (`herald-amqp`), driven on the caller's task,
//! it takes each job, publishes one report under publisher confirms and
//! acknowledges the jobs whose reports are confirmed, several at once. The
//! load test measures the broker's own limit with it; herald-amqp's
//! `consumer_cost` example, what a client costs.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use herald_amqp::protocol::{basic, confirm};
use herald_amqp::types::FieldTable;
use herald_amqp::uri::AMQPUri;
use herald_amqp::{AMQPClass, AMQPProperties, ChannelId, Client, Event, Settings};

/// Connects to the broker at `url` (an `amqp://` URL), named `name`.
pub async fn connect(url: &str, name: &str) -> Result<Client, String> {
    let uri = AMQPUri::from_str(url)?;
    let settings = Settings {
        user: uri.authority.userinfo.username.clone(),
        password: uri.authority.userinfo.password.clone(),
        virtual_host: uri.vhost.clone(),
        name: name.into(),
        heartbeat: 0,
    };
    let address = (uri.authority.host.as_str(), uri.authority.port);
    (Client::connect(address, settings).await).map_err(|e| format!("cannot reach RabbitMQ: {e}"))
}

/// Opens a channel under publisher confirms that consumes `queue`, at
/// most `prefetch` jobs unacknowledged.
pub async fn consume(client: &mut Client, queue: &str, prefetch: u16) -> Result<ChannelId, String> {
    let failed = |e: herald_amqp::Error| format!("cannot consume {queue}: {e}");
    let channel = client.open_channel().await.map_err(failed)?;
    let qos = basic::Qos {
        prefetch_count: prefetch,
        global: false,
    };
    let select = confirm::Select { nowait: false };
    let consume = basic::Consume {
        queue: queue.into(),
        consumer_tag: "bare".into(),
        no_local: false,
        no_ack: false,
        exclusive: false,
        nowait: false,
        arguments: FieldTable::default(),
    };
    for method in [
        AMQPClass::Basic(basic::AMQPMethod::Qos(qos)),
        AMQPClass::Confirm(confirm::AMQPMethod::Select(select)),
        AMQPClass::Basic(basic::AMQPMethod::Consume(consume)),
    ] {
        client.call(channel, method).await.map_err(failed)?;
    }
    Ok(channel)
}

/// Where each job's report goes, and what it says.
#[derive(Clone, Copy)]
pub struct Reports<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub report: &'a [u8],
}

/// Takes `jobs` jobs on `channel` (from [`consume`]), reporting each and
/// acknowledging it once its report is confirmed; an error if that takes
/// over `limit`.
pub async fn report_and_acknowledge(
    client: &mut Client,
    channel: ChannelId,
    jobs: u64,
    reports: Reports<'_>,
    limit: Duration,
) -> Result<(), String> {
    let taking = take(client, channel, jobs, reports);
    match tokio::time::timeout(limit, taking).await {
        Ok(taken) => taken,
        Err(_) => Err(format!(
            "gave up on the bare consumer's {jobs} jobs after {limit:?}"
        )),
    }
}

async fn take(
    client: &mut Client,
    channel: ChannelId,
    jobs: u64,
    reports: Reports<'_>,
) -> Result<(), String> {
    let failed = |e: herald_amqp::Error| format!("the bare consumer's connection: {e}");
    // Each report's publish number, and the job it reports.
    let mut unconfirmed: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut delivered, mut acknowledged) = (0, 0);
    while acknowledged < jobs {
        match client.next_event().await.map_err(failed)? {
            Event::Delivery(delivery) => {
                let Reports {
                    exchange,
                    routing_key,
                    report,
                } = reports;
                let properties = AMQPProperties::default();
                let number = (client.connection())
                    .publish(channel, exchange, routing_key, false, properties, report)
                    .map_err(|e| e.to_string())?;
                unconfirmed.insert(
                    number.ok_or("the channel is not under confirms")?,
                    delivery.delivery_tag,
                );
                delivered = delivery.delivery_tag;
            }
            Event::Confirm {
                number,
                multiple,
                ack: true,
                ..
            } => {
                if multiple {
                    unconfirmed = unconfirmed.split_off(&(number + 1));
                } else {
                    unconfirmed.remove(&number);
                }
                // Jobs come in order, one report each: every job before the
                // first unconfirmed report's is done.
                let done = unconfirmed
                    .values()
                    .next()
                    .map_or(delivered, |first| first - 1);
                if done > acknowledged {
                    client
                        .connection()
                        .ack(channel, done, true)
                        .map_err(|e| e.to_string())?;
                    acknowledged = done;
                }
            }
            other => return Err(format!("the bare consumer's connection: {other:?}")),
        }
    }
    client.flush().await.map_err(failed)
}

/// Closes `client` as the protocol asks, within 5 s.
pub async fn close(client: Client) {
    let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
}
