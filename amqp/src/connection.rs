//! One connection as a state machine with no I/O: octets and the time in,
//! octets and [`Event`]s out. The connection's phases are named once, in
//! [`Phase`]; a channel's, in [`ChannelPhase`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use crate::event::Event;
use crate::frame::{self, ChannelId, Frame};
use crate::ProtocolError;

mod commands;
mod inbound;

/// What a connection is opened with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub user: String,
    pub password: String,
    pub virtual_host: String,
    /// Shown by the broker's management tools.
    pub name: String,
    /// Seconds between heartbeats asked for; 0 for none.
    pub heartbeat: u16,
}

/// The largest frame this client accepts, as RabbitMQ's default: bodies
/// go in chunks of it.
const FRAME_MAX: u32 = 131_072;
/// Channels when the broker sets no limit.
const CHANNEL_MAX: u16 = 2047;
/// The most a body's buffer takes at its first frame; a larger body grows
/// as its frames come.
const RESERVE_MAX: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The protocol header is sent; the broker's `start` is awaited.
    Greeting,
    /// The login is sent; the broker's `tune` is awaited.
    LoggingIn,
    /// Tuned and asked to open the virtual host.
    Opening,
    Open,
    /// This side asked to close; the broker's `close-ok` is awaited.
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelPhase {
    Opening,
    Open,
    /// This side asked to close it.
    Closing,
}

#[derive(Debug)]
struct Channel {
    phase: ChannelPhase,
    /// Under publisher confirms: the number the next publish gets.
    next_publish: Option<u64>,
    /// The message whose content frames are coming.
    incoming: Option<Incoming>,
}

/// A message between its method frame and the end of its body.
#[derive(Debug)]
struct Incoming {
    message: Message,
    /// Known once its content header came.
    size: Option<u64>,
    properties: AMQPProperties,
    body: Vec<u8>,
}

#[derive(Debug)]
enum Message {
    Delivery(basic::Deliver),
    Returned(basic::Return),
}

/// One connection to the broker.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    settings: Settings,
    frame_max: u32,
    channel_max: u16,
    heartbeat: Option<Duration>,
    /// By channel number; 0, the connection's own, is never one.
    channels: Vec<Option<Channel>>,
    received: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<Event>,
    last_received: Instant,
    last_sent: Instant,
}

impl Connection {
    /// A connection about to greet the broker: its protocol header is
    /// what is to be written first.
    pub fn new(settings: Settings, now: Instant) -> Connection {
        let mut output = Vec::new();
        frame::write_protocol_header(&mut output);
        Connection {
            phase: Phase::Greeting,
            settings,
            frame_max: FRAME_MAX,
            channel_max: CHANNEL_MAX,
            heartbeat: None,
            channels: Vec::new(),
            received: Vec::new(),
            output,
            events: VecDeque::new(),
            last_received: now,
            last_sent: now,
        }
    }

    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// What is to be written to the socket.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// `written` octets of [`Connection::output`] were written.
    pub fn wrote(&mut self, written: usize, now: Instant) {
        self.output.drain(..written);
        self.last_sent = now;
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Connection::tick`] is next due, if heartbeats are on.
    pub fn next_tick(&self) -> Option<Instant> {
        let interval = self.heartbeat?;
        let silent = self.last_received + 2 * interval;
        // While output waits for the socket, a heartbeat would only queue
        // behind it.
        Some(match self.output.is_empty() {
            true => silent.min(self.last_sent + interval),
            false => silent,
        })
    }

    /// Sends a heartbeat when nothing was written for an interval; fails
    /// when nothing came from the broker for two.
    pub fn tick(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let Some(interval) = self.heartbeat else {
            return Ok(());
        };
        let silent = now.saturating_duration_since(self.last_received);
        if silent >= 2 * interval {
            return Err(ProtocolError::HeartbeatsMissed(silent));
        }
        if now.saturating_duration_since(self.last_sent) >= interval && self.output.is_empty() {
            frame::write_heartbeat(&mut self.output);
        }
        Ok(())
    }

    /// Takes octets read from the socket: every whole frame among them is
    /// handled, the rest kept for the next read.
    pub fn received(&mut self, octets: &[u8], now: Instant) -> Result<(), ProtocolError> {
        self.last_received = now;
        self.received.extend_from_slice(octets);
        let mut taken = 0;
        let mut received = std::mem::take(&mut self.received);
        let outcome = loop {
            match frame::read(&received[taken..], self.frame_max) {
                Ok(Some((frame, length))) => {
                    taken += length;
                    if let Err(e) = self.handle(frame) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        received.drain(..taken);
        self.received = received;
        outcome
    }

    fn handle(&mut self, frame: Frame<'_>) -> Result<(), ProtocolError> {
        match frame {
            Frame::Heartbeat => Ok(()),
            Frame::Method(0, AMQPClass::Connection(method)) => self.on_connection(method),
            Frame::Method(0, other) => Err(unexpected(&other)),
            Frame::Method(channel, method) => self.on_channel_method(channel, method),
            Frame::Header(channel, header) => {
                let incoming = self.incoming(channel)?;
                if incoming.size.is_some() {
                    return Err(ProtocolError::Unexpected("a second content header".into()));
                }
                incoming.size = Some(header.body_size);
                incoming.properties = header.properties;
                self.complete(channel);
                Ok(())
            }
            Frame::Body(channel, chunk) => {
                let incoming = self.incoming(channel)?;
                let Some(size) = incoming.size else {
                    return Err(ProtocolError::Unexpected("a body before its header".into()));
                };
                if incoming.body.len() as u64 + chunk.len() as u64 > size {
                    return Err(ProtocolError::Unexpected("a body over its size".into()));
                }
                if incoming.body.is_empty() {
                    // Sized once for the whole body, but not beyond
                    // RESERVE_MAX on the broker's word alone.
                    incoming.body.reserve_exact(size.min(RESERVE_MAX) as usize);
                }
                incoming.body.extend_from_slice(chunk);
                self.complete(channel);
                Ok(())
            }
        }
    }

    fn on_connection(&mut self, method: connection::AMQPMethod) -> Result<(), ProtocolError> {
        use connection::AMQPMethod as M;
        match (self.phase, method) {
            (Phase::Greeting, M::Start(start)) => {
                let offered = start.mechanisms.to_string();
                if !offered.split(' ').any(|m| m == "PLAIN") {
                    return Err(ProtocolError::NoPlainLogin(offered));
                }
                let Settings { user, password, .. } = &self.settings;
                let login = format!("\0{user}\0{password}");
                self.write(M::StartOk(connection::StartOk {
                    client_properties: self.client_properties(),
                    mechanism: "PLAIN".into(),
                    response: LongString::from(login),
                    locale: "en_US".into(),
                }));
                self.phase = Phase::LoggingIn;
            }
            (Phase::LoggingIn, M::Tune(tune)) => {
                self.channel_max = match tune.channel_max {
                    0 => CHANNEL_MAX,
                    offered => offered.min(CHANNEL_MAX),
                };
                self.frame_max = match tune.frame_max {
                    0 => FRAME_MAX,
                    offered => offered.min(FRAME_MAX),
                };
                let heartbeat = match (self.settings.heartbeat, tune.heartbeat) {
                    (0, _) => 0,
                    (asked, 0) => asked,
                    (asked, offered) => asked.min(offered),
                };
                self.heartbeat = (heartbeat > 0).then(|| Duration::from_secs(heartbeat.into()));
                self.write(M::TuneOk(connection::TuneOk {
                    channel_max: self.channel_max,
                    frame_max: self.frame_max,
                    heartbeat,
                }));
                let virtual_host = self.settings.virtual_host.as_str().into();
                self.write(M::Open(connection::Open { virtual_host }));
                self.phase = Phase::Opening;
            }
            (Phase::Opening, M::OpenOk(_)) => {
                self.phase = Phase::Open;
                self.events.push_back(Event::Open);
            }
            (_, M::Close(close)) => {
                self.write(M::CloseOk(connection::CloseOk {}));
                self.closed(close.reply_code, close.reply_text.to_string());
            }
            (Phase::Closing, M::CloseOk(_)) => self.closed(200, String::new()),
            (_, M::Blocked(blocked)) => {
                let reason = blocked.reason.to_string();
                self.events.push_back(Event::Blocked(reason));
            }
            (_, M::Unblocked(_)) => self.events.push_back(Event::Unblocked),
            // Whatever the broker sends after this side asked to close.
            (Phase::Closing, _) => {}
            (_, other) => return Err(unexpected(&AMQPClass::Connection(other))),
        }
        Ok(())
    }
    fn closed(&mut self, code: u16, text: String) {
        self.phase = Phase::Closed;
        self.channels.clear();
        self.events.push_back(Event::Closed { code, text });
    }

    fn client_properties(&self) -> FieldTable {
        let mut capabilities = FieldTable::default();
        for capability in [
            "publisher_confirms",
            "consumer_cancel_notify",
            "connection.blocked",
            "basic.nack",
        ] {
            capabilities.insert(capability.into(), AMQPValue::Boolean(true));
        }
        let mut properties = FieldTable::default();
        properties.insert("product".into(), text("Herald"));
        properties.insert("connection_name".into(), text(&self.settings.name));
        properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
        properties
    }

    /// A connection method, which the protocol can always carry.
    fn write(&mut self, method: connection::AMQPMethod) {
        self.write_on(0, AMQPClass::Connection(method));
    }

    fn write_on(&mut self, channel: ChannelId, method: AMQPClass) {
        frame::write_method(&mut self.output, channel, method);
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn unexpected(method: &AMQPClass) -> ProtocolError {
    ProtocolError::Unexpected(format!("{method:?}"))
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
