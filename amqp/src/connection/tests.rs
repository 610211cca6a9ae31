//! The connection against a broker scripted frame by frame: frames written
//! and read by amq-protocol's own codec, not this crate's.

use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{channel, confirm, connection, AMQPClass};
use amq_protocol::types::{FieldTable, LongString};

use super::{Connection, Settings};
use crate::event::Event;
use crate::{CommandError, ProtocolError};

fn settings() -> Settings {
    Settings {
        user: "herald".into(),
        password: "secret".into(),
        virtual_host: "/jobs".into(),
        name: "test".into(),
        heartbeat: 10,
    }
}

pub(super) fn bytes(frames: &[AMQPFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        out = cookie_factory::gen(gen_frame(frame), out).unwrap().0;
    }
    out
}

/// The frames the connection wrote, taken from its output.
fn written(connection: &mut Connection) -> Vec<AMQPFrame> {
    written_at(connection, Instant::now())
}

/// The same, written at `now`.
fn written_at(connection: &mut Connection, now: Instant) -> Vec<AMQPFrame> {
    let mut output = connection.output().to_vec();
    let length = output.len();
    connection.wrote(length, now);
    let mut frames = Vec::new();
    while !output.is_empty() {
        let (rest, frame) = parse_frame(output.as_slice()).expect("a whole frame");
        let taken = output.len() - rest.len();
        output.drain(..taken);
        frames.push(frame);
    }
    frames
}

pub(super) fn events(connection: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| connection.poll_event()).collect()
}

pub(super) fn method(channel: u16, method: AMQPClass) -> AMQPFrame {
    AMQPFrame::Method(channel, method)
}

fn start(mechanisms: &str) -> AMQPFrame {
    method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::default(),
            mechanisms: LongString::from(mechanisms),
            locales: LongString::from("en_US"),
        })),
    )
}

fn tune(frame_max: u32, heartbeat: u16) -> AMQPFrame {
    let tune = connection::Tune {
        channel_max: 0,
        frame_max,
        heartbeat,
    };
    method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(tune)))
}

/// A connection taken through its handshake, at `frame_max`.
pub(super) fn open(frame_max: u32, now: Instant) -> Connection {
    let mut connection = Connection::new(settings(), now);
    written_at(&mut connection, now);
    let handshake = [
        start("AMQPLAIN PLAIN"),
        tune(frame_max, 60),
        method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        ),
    ];
    connection.received(&bytes(&handshake), now).unwrap();
    written_at(&mut connection, now);
    assert_eq!(events(&mut connection), [Event::Open]);
    connection
}

pub(super) fn open_channel(connection: &mut Connection) -> u16 {
    let id = connection.open_channel().unwrap();
    let open_ok = AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {}));
    connection
        .received(&bytes(&[method(id, open_ok)]), Instant::now())
        .unwrap();
    written(connection);
    events(connection);
    id
}

#[test]
fn logs_in_with_plain_and_tunes_to_the_smaller_limits() {
    let now = Instant::now();
    let mut connection = Connection::new(settings(), now);
    assert_eq!(connection.output(), b"AMQP\x00\x00\x09\x01");
    written(&mut connection);
    connection
        .received(&bytes(&[start("AMQPLAIN PLAIN")]), now)
        .unwrap();
    let [AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)))] =
        &written(&mut connection)[..]
    else {
        panic!("no start-ok");
    };
    assert_eq!(ok.mechanism.as_str(), "PLAIN");
    assert_eq!(ok.response.as_bytes(), b"\0herald\0secret");
    connection.received(&bytes(&[tune(4096, 60)]), now).unwrap();
    let frames = written(&mut connection);
    let tune_ok = connection::TuneOk {
        channel_max: 2047,
        frame_max: 4096,
        heartbeat: 10,
    };
    let open = connection::Open {
        virtual_host: "/jobs".into(),
    };
    assert_eq!(
        frames,
        [
            method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok))
            ),
            method(0, AMQPClass::Connection(connection::AMQPMethod::Open(open))),
        ]
    );
    assert!(!connection.is_open());
    let open_ok = connection::AMQPMethod::OpenOk(connection::OpenOk {});
    connection
        .received(&bytes(&[method(0, AMQPClass::Connection(open_ok))]), now)
        .unwrap();
    assert!(connection.is_open());
    assert_eq!(events(&mut connection), [Event::Open]);
}

#[test]
fn a_broker_without_plain_login_is_refused() {
    let mut connection = Connection::new(settings(), Instant::now());
    let refused = connection.received(&bytes(&[start("EXTERNAL")]), Instant::now());
    assert_eq!(refused, Err(ProtocolError::NoPlainLogin("EXTERNAL".into())));
}

#[test]
fn commands_wait_for_the_connection_to_open() {
    let mut connection = Connection::new(settings(), Instant::now());
    assert_eq!(connection.open_channel(), Err(CommandError::NotOpen));
}

#[test]
fn a_delivery_comes_whole_however_its_octets_are_cut() {
    let mut connection = open(4096, Instant::now());
    let id = open_channel(&mut connection);
    let body: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
    let properties = AMQPProperties::default().with_message_id("job-1".into());
    let deliver = basic::Deliver {
        consumer_tag: "jobs".into(),
        delivery_tag: 7,
        redelivered: true,
        exchange: "".into(),
        routing_key: "herald.jobs".into(),
    };
    let mut frames = vec![
        method(id, AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver))),
        AMQPFrame::Header(
            id,
            AMQPContentHeader {
                class_id: 60,
                body_size: body.len() as u64,
                properties: properties.clone(),
            },
        ),
    ];
    frames.extend(
        body.chunks(4088)
            .map(|chunk| AMQPFrame::Body(id, chunk.to_vec())),
    );
    let octets = bytes(&frames);
    for octet in &octets {
        connection
            .received(std::slice::from_ref(octet), Instant::now())
            .unwrap();
    }
    let [Event::Delivery(delivery)] = &events(&mut connection)[..] else {
        panic!("not one delivery");
    };
    assert_eq!(delivery.delivery_tag, 7);
    assert!(delivery.redelivered);
    assert_eq!(delivery.routing_key, "herald.jobs");
    assert_eq!(delivery.properties, properties);
    assert_eq!(delivery.body, body);
}

#[test]
fn publishes_are_cut_to_the_frame_size_and_numbered_under_confirms() {
    let mut connection = open(4096, Instant::now());
    let id = open_channel(&mut connection);
    let body = vec![b'x'; 10_000];
    let unnumbered = connection.publish(
        id,
        "events",
        "report",
        false,
        AMQPProperties::default(),
        &body,
    );
    assert_eq!(unnumbered, Ok(None));
    let frames = written(&mut connection);
    assert_eq!(
        frames.len(),
        2 + 3,
        "method, header, three bodies: {frames:?}"
    );
    let sent: Vec<u8> = (frames.iter())
        .flat_map(|frame| match frame {
            AMQPFrame::Body(_, chunk) => {
                assert!(chunk.len() <= 4088);
                chunk.clone()
            }
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(sent, body);
    let select = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
        nowait: false,
    }));
    connection.call(id, select).unwrap();
    let numbers: Vec<_> = (0..3)
        .map(|_| {
            connection
                .publish(id, "", "q", false, AMQPProperties::default(), b"{}")
                .unwrap()
        })
        .collect();
    assert_eq!(numbers, [Some(1), Some(2), Some(3)]);
    let ack = basic::Ack {
        delivery_tag: 2,
        multiple: true,
    };
    let confirm = method(id, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)));
    connection
        .received(&bytes(&[confirm]), Instant::now())
        .unwrap();
    let confirmed = Event::Confirm {
        channel: id,
        number: 2,
        multiple: true,
        ack: true,
    };
    assert_eq!(events(&mut connection), [confirmed]);
}

#[test]
fn what_the_protocol_cannot_carry_is_refused_and_nothing_written() {
    let mut connection = open(4096, Instant::now());
    let id = open_channel(&mut connection);
    let long = "k".repeat(256);
    let refused = connection.publish(id, "", &long, false, AMQPProperties::default(), b"{}");
    assert!(
        matches!(refused, Err(CommandError::Unwritable(_))),
        "{refused:?}"
    );
    assert!(connection.output().is_empty());
}

#[test]
fn a_channel_the_broker_closes_is_answered_and_gone() {
    let mut connection = open(4096, Instant::now());
    let id = open_channel(&mut connection);
    let close = channel::Close {
        reply_code: 404,
        reply_text: "NOT_FOUND - no exchange 'events'".into(),
        class_id: 60,
        method_id: 40,
    };
    let close = method(id, AMQPClass::Channel(channel::AMQPMethod::Close(close)));
    connection
        .received(&bytes(&[close]), Instant::now())
        .unwrap();
    let close_ok = AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}));
    assert_eq!(written(&mut connection), [method(id, close_ok)]);
    let closed = Event::ChannelClosed {
        channel: id,
        code: 404,
        text: "NOT_FOUND - no exchange 'events'".into(),
    };
    assert_eq!(events(&mut connection), [closed]);
    assert_eq!(
        connection.ack(id, 1, false),
        Err(CommandError::NoChannel(id))
    );
    assert_eq!(
        connection.open_channel(),
        Ok(id),
        "its number is free again"
    );
}

#[test]
fn heartbeats_go_out_when_idle_and_a_silent_broker_is_lost() {
    let start = Instant::now();
    let mut connection = open(4096, start);
    let second = |s: u64| start + Duration::from_secs(s);
    assert_eq!(connection.next_tick(), Some(second(10)));
    connection.tick(second(5)).unwrap();
    assert!(connection.output().is_empty());
    connection.tick(second(10)).unwrap();
    assert_eq!(
        written_at(&mut connection, second(10)),
        [AMQPFrame::Heartbeat]
    );
    connection
        .received(&bytes(&[AMQPFrame::Heartbeat]), second(15))
        .unwrap();
    connection.tick(second(34)).unwrap();
    let missed = connection.tick(second(35));
    assert_eq!(
        missed,
        Err(ProtocolError::HeartbeatsMissed(Duration::from_secs(20)))
    );
}

#[test]
fn broken_frames_end_the_connection() {
    let mut connection = open(4096, Instant::now());
    let mut too_large = vec![3, 0, 1];
    too_large.extend_from_slice(&5000u32.to_be_bytes());
    let refused = connection.received(&too_large, Instant::now());
    assert_eq!(
        refused,
        Err(ProtocolError::FrameTooLarge {
            size: 5000,
            frame_max: 4096
        })
    );
    let mut connection = open(4096, Instant::now());
    let mut no_end = bytes(&[AMQPFrame::Heartbeat]);
    *no_end.last_mut().unwrap() = 0;
    let refused = connection.received(&no_end, Instant::now());
    assert!(
        matches!(refused, Err(ProtocolError::Malformed(_))),
        "{refused:?}"
    );
}

#[test]
fn the_broker_closing_the_connection_is_answered() {
    let mut connection = open(4096, Instant::now());
    let close = connection::Close {
        reply_code: 320,
        reply_text: "CONNECTION_FORCED".into(),
        class_id: 0,
        method_id: 0,
    };
    let close = method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(close)),
    );
    connection
        .received(&bytes(&[close]), Instant::now())
        .unwrap();
    let close_ok = AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
    assert_eq!(written(&mut connection), [method(0, close_ok)]);
    let closed = Event::Closed {
        code: 320,
        text: "CONNECTION_FORCED".into(),
    };
    assert_eq!(events(&mut connection), [closed]);
    assert!(connection.is_closed());
}
