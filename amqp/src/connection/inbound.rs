//! What comes on a channel: answers, messages (a method, a content header
//! and body frames) and confirms, and the broker closing it.

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{channel, AMQPClass};

use super::{unexpected, Channel, ChannelPhase, Connection, Incoming, Message};
use crate::event::{Delivery, Event, Returned};
use crate::frame::ChannelId;
use crate::ProtocolError;

impl Connection {
    pub(super) fn on_channel_method(
        &mut self,
        id: ChannelId,
        method: AMQPClass,
    ) -> Result<(), ProtocolError> {
        let channel = self.channel_mut(id).ok_or_else(|| unexpected(&method))?;
        match method {
            AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver)) => {
                channel.start_incoming(Message::Delivery(deliver))?;
            }
            AMQPClass::Basic(basic::AMQPMethod::Return(returned)) => {
                channel.start_incoming(Message::Returned(returned))?;
            }
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag,
                multiple,
            })) => self.confirmed(id, delivery_tag, multiple, true),
            AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                delivery_tag,
                multiple,
                ..
            })) => self.confirmed(id, delivery_tag, multiple, false),
            AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)) => {
                let tag = cancel.consumer_tag.to_string();
                self.events
                    .push_back(Event::ConsumerCancelled { channel: id, tag });
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(close)) => {
                self.channels[id as usize] = None;
                let close_ok = channel::AMQPMethod::CloseOk(channel::CloseOk {});
                self.write_on(id, AMQPClass::Channel(close_ok));
                self.events.push_back(Event::ChannelClosed {
                    channel: id,
                    code: close.reply_code,
                    text: close.reply_text.to_string(),
                });
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                self.channels[id as usize] = None;
                let text = String::new();
                let closed = Event::ChannelClosed {
                    channel: id,
                    code: 200,
                    text,
                };
                self.events.push_back(closed);
            }
            AMQPClass::Channel(channel::AMQPMethod::Flow(flow)) => {
                let flow_ok = channel::FlowOk {
                    active: flow.active,
                };
                self.write_on(id, AMQPClass::Channel(channel::AMQPMethod::FlowOk(flow_ok)));
            }
            // What a channel closing hears before its `close-ok`.
            _ if channel.phase == ChannelPhase::Closing => {}
            method => {
                if let AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) = method {
                    channel.phase = ChannelPhase::Open;
                }
                self.events.push_back(Event::Answer {
                    channel: id,
                    method,
                });
            }
        }
        Ok(())
    }

    /// The broker took (`ack`) or refused publish `number` (and with
    /// `multiple` all before it) on channel `id`.
    fn confirmed(&mut self, id: ChannelId, number: u64, multiple: bool, ack: bool) {
        let confirm = Event::Confirm {
            channel: id,
            number,
            multiple,
            ack,
        };
        self.events.push_back(confirm);
    }

    pub(super) fn incoming(&mut self, id: ChannelId) -> Result<&mut Incoming, ProtocolError> {
        (self.channels.get_mut(id as usize))
            .and_then(|channel| channel.as_mut()?.incoming.as_mut())
            .ok_or_else(|| ProtocolError::Unexpected(format!("content on channel {id}")))
    }

    /// Hands over the message coming on `id` once all of its body came.
    pub(super) fn complete(&mut self, id: ChannelId) {
        let Some(channel) = self.channel_mut(id) else {
            return;
        };
        let done = (channel.incoming.as_ref())
            .is_some_and(|incoming| incoming.size == Some(incoming.body.len() as u64));
        if !done {
            return;
        }
        let Incoming {
            message,
            properties,
            body,
            ..
        } = channel.incoming.take().expect("done");
        self.events.push_back(match message {
            Message::Delivery(deliver) => Event::Delivery(Delivery {
                channel: id,
                consumer_tag: deliver.consumer_tag.to_string(),
                delivery_tag: deliver.delivery_tag,
                redelivered: deliver.redelivered,
                exchange: deliver.exchange.to_string(),
                routing_key: deliver.routing_key.to_string(),
                properties,
                body,
            }),
            Message::Returned(returned) => Event::Returned(Returned {
                channel: id,
                code: returned.reply_code,
                text: returned.reply_text.to_string(),
                exchange: returned.exchange.to_string(),
                routing_key: returned.routing_key.to_string(),
                properties,
                body,
            }),
        });
    }

    pub(super) fn channel_mut(&mut self, id: ChannelId) -> Option<&mut Channel> {
        self.channels.get_mut(id as usize)?.as_mut()
    }
}

impl Channel {
    pub(super) fn start_incoming(&mut self, message: Message) -> Result<(), ProtocolError> {
        if self.incoming.is_some() {
            return Err(ProtocolError::Unexpected(
                "a message before the last one's end".into(),
            ));
        }
        self.incoming = Some(Incoming {
            message,
            size: None,
            properties: AMQPProperties::default(),
            body: Vec::new(),
        });
        Ok(())
    }
}
