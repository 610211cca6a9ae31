//! What a connection tells its user: events, and the messages they carry.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::AMQPClass;

use crate::frame::ChannelId;

/// What happened on the connection.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The connection is open: channels may be opened.
    Open,
    /// The broker's answer to a synchronous method on `channel` (a
    /// channel's `open-ok`, `qos-ok`, `consume-ok`, `declare-ok`...), in
    /// the order the methods were called on that channel.
    Answer {
        channel: ChannelId,
        method: AMQPClass,
    },
    Delivery(Delivery),
    /// Publisher confirms: the broker took (`ack`) or refused the publishes
    /// numbered `number` (and, if `multiple`, all before it on the channel).
    Confirm {
        channel: ChannelId,
        number: u64,
        multiple: bool,
        ack: bool,
    },
    /// A mandatory publish that no queue took.
    Returned(Returned),
    /// The broker cancelled a consumer (its queue was deleted, say).
    ConsumerCancelled {
        channel: ChannelId,
        tag: String,
    },
    /// The broker closed a channel, or acknowledged this side's closing it.
    ChannelClosed {
        channel: ChannelId,
        code: u16,
        text: String,
    },
    /// The broker stopped reading publishes (a resource alarm), or started
    /// again.
    Blocked(String),
    Unblocked,
    /// The connection is closed, by the broker or as this side asked.
    Closed {
        code: u16,
        text: String,
    },
}

/// A message the broker delivered to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub channel: ChannelId,
    pub consumer_tag: String,
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: String,
    pub routing_key: String,
    pub properties: AMQPProperties,
    pub body: Vec<u8>,
}

/// A mandatory publish the broker returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Returned {
    pub channel: ChannelId,
    pub code: u16,
    pub text: String,
    pub exchange: String,
    pub routing_key: String,
    pub properties: AMQPProperties,
    pub body: Vec<u8>,
}
