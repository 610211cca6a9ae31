//! Your first broadcast, seen from both ends: logs in as an XMPP user,
//! becomes available, publishes a job for that user on the jobs queue, and
//! prints the message as the user receives it and the report Herald sends
//! back. `deploy/local-stack.sh` runs it against a local stack.
//!
//! ```text
//! cargo run --example first_broadcast -- alice@localhost alice-password 127.0.0.1:5222
//! ```

use std::time::Duration;

use futures_util::StreamExt;
use herald_testkit::c2s::XmppUser;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use xmpp_parsers::jid::BareJid;

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let jid = BareJid::new(&args.next().unwrap_or_else(|| "alice@localhost".into()))?;
    let password = args.next().unwrap_or_else(|| "alice".into());
    let server = args.next().unwrap_or_else(|| "127.0.0.1:5222".into());
    let amqp_url = std::env::var("HERALD_AMQP__URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());

    let broker = Connection::connect(&amqp_url, ConnectionProperties::default()).await?;
    let channel = broker.create_channel().await?;
    let reports = report_queue(&channel).await?;

    let user = jid.node().map(|n| n.to_string()).unwrap_or_default();
    // The c2s client Herald's tests log users in with.
    let login = XmppUser::connect(
        &server,
        jid.domain().as_str(),
        &user,
        &password,
        "first-broadcast",
    );
    let mut client = tokio::time::timeout(Duration::from_secs(20), login)
        .await?
        .map_err(|e| format!("login as {jid} failed: {e}"))?;
    client.send_presence(None, 0).await;
    println!("{} is online and available", client.jid());
    // Let the server route the presence to Herald before the job arrives.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let id = format!("first-{}", std::process::id());
    let job = serde_json::json!({
        "id": id,
        "to": [jid.to_string()],
        "subject": "Herald",
        "body": "Hello from your first Herald broadcast!"
    });
    channel
        .basic_publish(
            "".into(),
            "broadcast.jobs".into(),
            BasicPublishOptions::default(),
            job.to_string().as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
    println!("published job {id}");

    let (_, received, _) = client
        .next_message(Duration::from_secs(20))
        .await
        .ok_or("no message within 20 s")?;
    println!("{jid} received: {received:?}");
    let mut reports = reports;
    let report = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(delivery) = reports.next().await {
            let delivery = delivery?;
            let report: serde_json::Value = serde_json::from_slice(&delivery.data)?;
            if report["id"] == id {
                return Ok::<_, Error>(report);
            }
        }
        Err("report stream ended".into())
    })
    .await??;
    println!("report: {report}");
    client.disconnect().await;
    Ok(())
}

/// A private queue bound to `job.report` on the events exchange.
async fn report_queue(channel: &lapin::Channel) -> Result<lapin::Consumer, Error> {
    channel
        .exchange_declare(
            "broadcast.events".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            "broadcast.events".into(),
            "job.report".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(channel
        .basic_consume(
            queue.name().clone(),
            "first-broadcast".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?)
}
