//! The driver over an in-memory pipe of 64 octets, against a broker
//! scripted with amq-protocol's own codec: writes that the pipe takes a
//! little at a time, and heartbeats on tokio's paused clock.

use std::time::Duration;

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{basic, channel, connection};
use amq_protocol::types::{FieldTable, LongString};
use herald_amqp::{AMQPClass, AMQPProperties, Client, Error, Event, ProtocolError, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

struct Broker {
    stream: DuplexStream,
    received: Vec<u8>,
}

impl Broker {
    async fn send(&mut self, frames: &[AMQPFrame]) {
        for frame in frames {
            let octets = cookie_factory::gen(gen_frame(frame), Vec::new()).unwrap().0;
            self.stream.write_all(&octets).await.unwrap();
        }
    }

    /// The next frame the client wrote (after its protocol header).
    async fn next(&mut self) -> AMQPFrame {
        loop {
            if let Ok((rest, frame)) = parse_frame(self.received.as_slice()) {
                let taken = self.received.len() - rest.len();
                self.received.drain(..taken);
                return frame;
            }
            let mut chunk = [0; 1024];
            let read = self.stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the client hung up");
            self.received.extend_from_slice(&chunk[..read]);
        }
    }

    /// Takes the client through its handshake.
    async fn handshake(&mut self, heartbeat: u16) {
        let mut header = [0; 8];
        self.stream.read_exact(&mut header).await.unwrap();
        assert_eq!(&header, b"AMQP\x00\x00\x09\x01");
        let start = connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::default(),
            mechanisms: LongString::from("PLAIN"),
            locales: LongString::from("en_US"),
        };
        self.send(&[connection_method(connection::AMQPMethod::Start(start))])
            .await;
        self.next().await;
        let tune = connection::Tune {
            channel_max: 0,
            frame_max: 4096,
            heartbeat,
        };
        self.send(&[connection_method(connection::AMQPMethod::Tune(tune))])
            .await;
        self.next().await;
        self.next().await;
        let open_ok = connection::AMQPMethod::OpenOk(connection::OpenOk {});
        self.send(&[connection_method(open_ok)]).await;
    }
}

fn connection_method(method: connection::AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(0, AMQPClass::Connection(method))
}

fn settings(heartbeat: u16) -> Settings {
    Settings {
        user: "guest".into(),
        password: "guest".into(),
        virtual_host: "/".into(),
        name: "driver test".into(),
        heartbeat,
    }
}

fn pipe() -> (DuplexStream, Broker) {
    let (client, broker) = tokio::io::duplex(64);
    (
        client,
        Broker {
            stream: broker,
            received: Vec::new(),
        },
    )
}

#[tokio::test]
async fn what_the_pipe_takes_a_little_at_a_time_goes_whole_both_ways() {
    let (stream, mut broker) = pipe();
    let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let expected = body.clone();
    let broker_side = tokio::spawn(async move {
        broker.handshake(0).await;
        let AMQPFrame::Method(id, _) = broker.next().await else {
            panic!("no channel.open")
        };
        let open_ok = AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {}));
        broker.send(&[AMQPFrame::Method(id, open_ok)]).await;
        assert!(matches!(
            broker.next().await,
            AMQPFrame::Method(_, AMQPClass::Basic(_))
        ));
        let AMQPFrame::Header(_, header) = broker.next().await else {
            panic!("no header")
        };
        let mut published = Vec::new();
        while (published.len() as u64) < header.body_size {
            let AMQPFrame::Body(_, chunk) = broker.next().await else {
                panic!("no body")
            };
            published.extend(chunk);
        }
        assert_eq!(published, expected, "the publish, whole");
        let deliver = basic::Deliver {
            consumer_tag: "jobs".into(),
            delivery_tag: 1,
            redelivered: false,
            exchange: "".into(),
            routing_key: "jobs".into(),
        };
        let size = published.len() as u64;
        let header = AMQPContentHeader {
            class_id: 60,
            body_size: size,
            properties: AMQPProperties::default(),
        };
        let mut frames = vec![
            AMQPFrame::Method(id, AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver))),
            AMQPFrame::Header(id, header),
        ];
        frames.extend(
            published
                .chunks(4088)
                .map(|chunk| AMQPFrame::Body(id, chunk.to_vec())),
        );
        broker.send(&frames).await;
        broker
    });
    let mut client = Client::open(stream, settings(0)).await.unwrap();
    let id = client.open_channel().await.unwrap();
    client
        .connection()
        .publish(id, "", "jobs", false, AMQPProperties::default(), &body)
        .unwrap();
    let Event::Delivery(delivery) = client.next_event().await.unwrap() else {
        panic!("not a delivery");
    };
    assert_eq!(delivery.body, body, "the delivery, whole");
    broker_side.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_sends_heartbeats_and_loses_a_silent_broker() {
    let (stream, mut broker) = pipe();
    let broker_side = tokio::spawn(async move {
        broker.handshake(1).await;
        // A heartbeat comes while the broker says nothing.
        assert_eq!(broker.next().await, AMQPFrame::Heartbeat);
        broker
    });
    let mut client = Client::open(stream, settings(5)).await.unwrap();
    let started = tokio::time::Instant::now();
    let lost = client.next_event().await;
    assert!(
        matches!(
            lost,
            Err(Error::Protocol(ProtocolError::HeartbeatsMissed(_)))
        ),
        "{lost:?}"
    );
    // Two intervals of the one the broker asked for (1 s, under the 5 asked).
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let heartbeat = tokio::time::timeout(Duration::from_secs(60), broker_side).await;
    assert!(heartbeat.is_ok(), "no heartbeat from the client");
}
