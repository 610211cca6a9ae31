//! What the broker sends, however broken or cut, never panics the
//! connection: it is taken, or refused with a [`ProtocolError`].

use std::time::Instant;

use amq_protocol::protocol::basic;
use amq_protocol::protocol::AMQPClass;
use proptest::prelude::*;

use super::tests::{bytes, events, method, open, open_channel};
use crate::event::Event;

/// A frame as it may come: any type, channel and payload, its end octet
/// right or not; or a content header announcing any body size.
#[derive(Debug, Clone)]
enum Raw {
    Frame {
        kind: u8,
        channel: u16,
        payload: Vec<u8>,
        ends_right: bool,
    },
    Header {
        channel: u16,
        body_size: u64,
    },
}

impl Raw {
    fn octets(&self) -> Vec<u8> {
        let (kind, channel, payload, end) = match self {
            Raw::Frame {
                kind,
                channel,
                payload,
                ends_right,
            } => (
                *kind,
                *channel,
                payload.clone(),
                if *ends_right { 0xCE } else { 0 },
            ),
            Raw::Header { channel, body_size } => {
                let mut payload = vec![0, 60, 0, 0];
                payload.extend_from_slice(&body_size.to_be_bytes());
                payload.extend_from_slice(&[0, 0]);
                (2, *channel, payload, 0xCE)
            }
        };
        let mut octets = vec![kind];
        octets.extend_from_slice(&channel.to_be_bytes());
        octets.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        octets.extend_from_slice(&payload);
        octets.push(end);
        octets
    }
}

fn raw() -> impl Strategy<Value = Raw> {
    let kind = prop_oneof![Just(1u8), Just(2), Just(3), Just(8), any::<u8>()];
    prop_oneof![
        (
            kind,
            0u16..3,
            prop::collection::vec(any::<u8>(), 0..40),
            any::<bool>()
        )
            .prop_map(|(kind, channel, payload, ends_right)| Raw::Frame {
                kind,
                channel,
                payload,
                ends_right
            }),
        (0u16..3, any::<u64>()).prop_map(|(channel, body_size)| Raw::Header { channel, body_size }),
    ]
}

/// A delivery's frames: its method, then what `raws` makes of the rest.
fn deliver_on(channel: u16) -> Vec<u8> {
    let deliver = basic::Deliver {
        consumer_tag: "jobs".into(),
        delivery_tag: 1,
        redelivered: false,
        exchange: "".into(),
        routing_key: "jobs".into(),
    };
    bytes(&[method(
        channel,
        AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver)),
    )])
}

proptest! {
    #[test]
    fn broken_frames_are_taken_or_refused_never_a_panic(
        raws in prop::collection::vec(raw(), 1..12),
        cut in 1usize..64,
    ) {
        let mut connection = open(4096, Instant::now());
        let channel = open_channel(&mut connection);
        let mut octets = deliver_on(channel);
        for raw in &raws {
            octets.extend(raw.octets());
        }
        for piece in octets.chunks(cut) {
            if connection.received(piece, Instant::now()).is_err() {
                break;
            }
        }
        events(&mut connection);
    }

    #[test]
    fn however_the_octets_are_cut_the_events_are_the_same(
        cuts in prop::collection::vec(1usize..200, 1..20),
        size in 0usize..10_000,
    ) {
        let mut whole = open(4096, Instant::now());
        let channel = open_channel(&mut whole);
        let mut octets = deliver_on(channel);
        let body: Vec<u8> = (0..size).map(|i| i as u8).collect();
        octets.extend(Raw::Header { channel, body_size: size as u64 }.octets());
        for chunk in body.chunks(4088) {
            octets.extend(Raw::Frame { kind: 3, channel, payload: chunk.to_vec(), ends_right: true }.octets());
        }
        whole.received(&octets, Instant::now()).unwrap();
        let expected = events(&mut whole);
        prop_assert!(matches!(&expected[..], [Event::Delivery(delivery)] if delivery.body == body));

        let mut cut = open(4096, Instant::now());
        open_channel(&mut cut);
        let mut rest = octets.as_slice();
        for length in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*length).min(rest.len()));
            cut.received(piece, Instant::now()).unwrap();
            rest = after;
        }
        prop_assert_eq!(events(&mut cut), expected);
    }
}
