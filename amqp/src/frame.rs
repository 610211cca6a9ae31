//! AMQP 0-9-1 frames as bytes: reading one from the front of what was
//! received, writing one after what is to be sent. A frame is a type, a
//! channel, a payload's size, the payload and an end octet; methods and
//! content headers are coded by amq-protocol, bodies are copied as they are.

use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{basic::AMQPProperties, constants, parse_class, AMQPClass};

use crate::ProtocolError;

/// A channel's number; 0 is the connection's own.
pub type ChannelId = u16;

/// A frame's type, channel and payload size: seven octets.
const HEADER: usize = 7;
/// What a frame costs beyond its payload: the header and the end octet.
pub const OVERHEAD: usize = HEADER + 1;

/// A frame read from the broker.
#[derive(Debug)]
pub enum Frame<'a> {
    Method(ChannelId, AMQPClass),
    Header(ChannelId, AMQPContentHeader),
    Body(ChannelId, &'a [u8]),
    Heartbeat,
}

/// The frame at the front of `received` and its length in octets, or
/// `None` until all of it is there. `frame_max` bounds what is accepted, so
/// that a broken peer cannot make the buffer grow without end.
pub fn read(received: &[u8], frame_max: u32) -> Result<Option<(Frame<'_>, usize)>, ProtocolError> {
    let Some(header) = received.get(..HEADER) else {
        return Ok(None);
    };
    let kind = header[0];
    let channel = u16::from_be_bytes([header[1], header[2]]);
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    if size > frame_max {
        return Err(ProtocolError::FrameTooLarge { size, frame_max });
    }
    let length = HEADER + size as usize + 1;
    let Some(whole) = received.get(..length) else {
        return Ok(None);
    };
    if whole[length - 1] != constants::FRAME_END {
        return Err(ProtocolError::Malformed(
            "a frame without its end octet".into(),
        ));
    }
    let payload = &whole[HEADER..length - 1];
    let frame = match kind {
        constants::FRAME_METHOD => {
            let (_, method) = parse_class(payload).map_err(malformed)?;
            Frame::Method(channel, method)
        }
        constants::FRAME_HEADER => {
            let (_, header) = parse_content_header(payload).map_err(malformed)?;
            Frame::Header(channel, header)
        }
        constants::FRAME_BODY => Frame::Body(channel, payload),
        constants::FRAME_HEARTBEAT => Frame::Heartbeat,
        other => return Err(ProtocolError::Malformed(format!("frame type {other}"))),
    };
    Ok(Some((frame, length)))
}

fn malformed(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Malformed(e.to_string())
}

/// The protocol header a client opens with.
pub fn write_protocol_header(out: &mut Vec<u8>) {
    out.extend_from_slice(b"AMQP\x00\x00\x09\x01");
}

pub fn write_method(out: &mut Vec<u8>, channel: ChannelId, method: AMQPClass) {
    generate(out, &AMQPFrame::Method(channel, method));
}

/// A message's content header: its class (basic), size and properties.
pub fn write_content_header(
    out: &mut Vec<u8>,
    channel: ChannelId,
    body_size: u64,
    properties: AMQPProperties,
) {
    let header = AMQPContentHeader {
        class_id: 60,
        body_size,
        properties,
    };
    generate(out, &AMQPFrame::Header(channel, header));
}

/// A body frame of `chunk`, which fits the negotiated frame size.
pub fn write_body(out: &mut Vec<u8>, channel: ChannelId, chunk: &[u8]) {
    out.push(constants::FRAME_BODY);
    out.extend_from_slice(&channel.to_be_bytes());
    let size = u32::try_from(chunk.len()).expect("chunks fit the frame size");
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(chunk);
    out.push(constants::FRAME_END);
}

pub fn write_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[constants::FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0]);
    out.push(constants::FRAME_END);
}

fn generate(out: &mut Vec<u8>, frame: &AMQPFrame) {
    let buffer = std::mem::take(out);
    // Writing into a Vec cannot fail; a short string over 255 octets would
    // be cut, not refused, so callers check theirs ([`fits_short`]).
    let (buffer, _) = cookie_factory::gen(gen_frame(frame), buffer).expect("a Vec takes any frame");
    *out = buffer;
}

/// Whether `text` fits a short string.
pub fn fits_short(text: &str) -> bool {
    text.len() <= usize::from(u8::MAX)
}
