//! What the connection's user asks of it: each only adds to what is to be
//! written (and to the channels' books); the broker's answers come back as
//! events.

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{channel, confirm, connection, AMQPClass};

use super::{Channel, ChannelPhase, Connection, Phase};
use crate::frame::{self, ChannelId, OVERHEAD};
use crate::CommandError;

impl Connection {
    /// Opens a channel; [`super::Event::Answer`] with its `open-ok` says
    /// when it is open (methods may be called on it before).
    pub fn open_channel(&mut self) -> Result<ChannelId, CommandError> {
        self.check_open()?;
        let free = (1..=self.channel_max as usize)
            .find(|&id| self.channels.get(id).is_none_or(Option::is_none))
            .ok_or(CommandError::NoChannelLeft)?;
        if self.channels.len() <= free {
            self.channels.resize_with(free + 1, || None);
        }
        self.channels[free] = Some(Channel {
            phase: ChannelPhase::Opening,
            next_publish: None,
            incoming: None,
        });
        let id = free as ChannelId;
        let open = AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));
        self.write_on(id, open);
        Ok(id)
    }

    /// Calls `method` on `channel`: a synchronous one is answered with
    /// [`super::Event::Answer`]. `confirm.select` puts the channel under
    /// publisher confirms, its publishes numbered from 1.
    pub fn call(&mut self, id: ChannelId, method: AMQPClass) -> Result<(), CommandError> {
        self.check_open()?;
        let selects = matches!(method, AMQPClass::Confirm(confirm::AMQPMethod::Select(_)));
        let closes = matches!(method, AMQPClass::Channel(channel::AMQPMethod::Close(_)));
        self.usable(id)?;
        frame::write_method(&mut self.output, id, method);
        let channel = self.channels[id as usize].as_mut().expect("usable");
        if selects && channel.next_publish.is_none() {
            channel.next_publish = Some(1);
        }
        if closes {
            channel.phase = ChannelPhase::Closing;
        }
        Ok(())
    }

    /// Publishes `body`; under publisher confirms, the number its
    /// [`super::Event::Confirm`] will carry.
    pub fn publish(
        &mut self,
        id: ChannelId,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        properties: AMQPProperties,
        body: &[u8],
    ) -> Result<Option<u64>, CommandError> {
        self.check_open()?;
        self.usable(id)?;
        fits(&[exchange, routing_key])?;
        let method = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory,
            immediate: false,
        }));
        frame::write_method(&mut self.output, id, method);
        frame::write_content_header(&mut self.output, id, body.len() as u64, properties);
        let chunk = self.frame_max as usize - OVERHEAD;
        for piece in body.chunks(chunk) {
            frame::write_body(&mut self.output, id, piece);
        }
        let channel = self.channels[id as usize].as_mut().expect("usable");
        let number = channel.next_publish;
        if let Some(next) = &mut channel.next_publish {
            *next += 1;
        }
        Ok(number)
    }

    /// Acknowledges delivery `tag` on `channel` (and all before it, if
    /// `multiple`).
    pub fn ack(&mut self, id: ChannelId, tag: u64, multiple: bool) -> Result<(), CommandError> {
        let ack = basic::Ack {
            delivery_tag: tag,
            multiple,
        };
        self.call(id, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)))
    }

    /// Gives delivery `tag` (and all before it, if `multiple`) back to the
    /// queue, or to its dead-letter exchange if not `requeue`.
    pub fn nack(
        &mut self,
        id: ChannelId,
        tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> Result<(), CommandError> {
        let nack = basic::Nack {
            delivery_tag: tag,
            multiple,
            requeue,
        };
        self.call(id, AMQPClass::Basic(basic::AMQPMethod::Nack(nack)))
    }

    /// Asks the broker to close the connection; [`super::Event::Closed`]
    /// says when it did.
    pub fn close(&mut self, code: u16, text: &str) -> Result<(), CommandError> {
        self.check_open()?;
        fits(&[text])?;
        let close = connection::AMQPMethod::Close(connection::Close {
            reply_code: code,
            reply_text: text.into(),
            class_id: 0,
            method_id: 0,
        });
        frame::write_method(&mut self.output, 0, AMQPClass::Connection(close));
        self.phase = Phase::Closing;
        Ok(())
    }

    fn check_open(&self) -> Result<(), CommandError> {
        match self.phase {
            Phase::Open => Ok(()),
            _ => Err(CommandError::NotOpen),
        }
    }

    fn usable(&self, id: ChannelId) -> Result<&Channel, CommandError> {
        match self.channels.get(id as usize) {
            Some(Some(channel)) if channel.phase != ChannelPhase::Closing => Ok(channel),
            _ => Err(CommandError::NoChannel(id)),
        }
    }
}

/// Each of `texts` fits a short string.
fn fits(texts: &[&str]) -> Result<(), CommandError> {
    match texts.iter().find(|text| !frame::fits_short(text)) {
        Some(text) => Err(CommandError::Unwritable(format!(
            "{} octets for a short string (at most 255)",
            text.len()
        ))),
        None => Ok(()),
    }
}
