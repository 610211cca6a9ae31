//! Herald's AMQP 0-9-1 client.
//!
//! [`Connection`] is one connection to the broker as a state machine with
//! no I/O: it takes the octets read from the socket (and the time), and
//! gives the octets to write and what happened ([`Event`]): deliveries,
//! publisher confirms, answers to the methods asked, channels and the
//! connection closed by the broker. Commands (open a channel, call a
//! method, publish, acknowledge) only add to what is to be written.
//!
//! [`Client`] drives one over a TCP socket on the caller's own task: no
//! thread of its own and no channels between tasks, so that a consumer on
//! a current-thread runtime takes a delivery, publishes and acknowledges
//! without waking another thread.

mod client;
mod connection;
mod event;
mod frame;

use std::time::Duration;

pub use amq_protocol::protocol::{self, basic::AMQPProperties, AMQPClass};
pub use amq_protocol::{types, uri};
pub use client::{Client, Error};
pub use connection::{Connection, Settings};
pub use event::{Delivery, Event, Returned};
pub use frame::ChannelId;

/// The broker broke the protocol, or asked for what this client does not
/// do; the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("a malformed frame: {0}")]
    Malformed(String),
    #[error("a frame of {size} octets, over the {frame_max} agreed")]
    FrameTooLarge { size: u32, frame_max: u32 },
    #[error("unexpected from the broker: {0}")]
    Unexpected(String),
    #[error("the broker offers no PLAIN login (it offers {0})")]
    NoPlainLogin(String),
    #[error("nothing from the broker in {0:?} (heartbeats missed)")]
    HeartbeatsMissed(Duration),
}

/// A command that cannot be carried out; nothing was written for it, and
/// the connection goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the connection is not open")]
    NotOpen,
    #[error("channel {0} is not open")]
    NoChannel(ChannelId),
    #[error("every channel the broker allows is open")]
    NoChannelLeft,
    /// A value the protocol cannot carry (a short string over 255 octets).
    #[error("cannot be written: {0}")]
    Unwritable(String),
}
