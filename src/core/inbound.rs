//! Stanzas from the server: presence into the book and subscriptions,
//! IQs answered (disco#info, ping, errors), messages to the handler.

use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{Core, InvalidStanza, Output};
use crate::handler::{Context, Effects, Handler};
use crate::presence::{PresenceChange, ResourcePresence};
use crate::store::{Change, Subscription};
use crate::xmpp::wire::RECEIPTS_NS;
use crate::xmpp::{commands, stanzas};

impl<H: Handler> Core<H> {
    pub(super) fn on_stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Presence(presence) if self.is_local(presence.from.as_ref()) => {
                self.on_presence(presence)
            }
            Stanza::Message(message) if self.is_local(message.from.as_ref()) => {
                self.on_message(message)
            }
            Stanza::Iq(iq) => self.on_iq(iq),
            Stanza::Presence(Presence { from, .. }) | Stanza::Message(Message { from, .. }) => {
                tracing::debug!(?from, "stanza from outside the server's domain ignored");
            }
        }
    }

    /// Only users of the domains Herald serves may fill its presence book
    /// and subscribers or send it messages. A server with several virtual
    /// hosts routes their users' stanzas too; a stanza of another domain,
    /// or of none, is ignored.
    fn is_local(&self, from: Option<&Jid>) -> bool {
        from.is_some_and(|jid| self.settings.serves(jid.domain().as_str()))
    }

    /// No server routes Herald a stanza from Herald's own domain: an answer
    /// would come back to Herald itself.
    fn claims_own_domain(&self, from: &Jid) -> bool {
        from.domain() == self.settings.domain.domain()
    }

    /// A stanza that did not parse. IQ requests still deserve an answer.
    pub(super) fn on_invalid(&mut self, invalid: InvalidStanza) {
        let InvalidStanza {
            kind,
            from,
            id,
            type_,
            error,
        } = invalid;
        tracing::debug!(%kind, ?from, %error, "invalid stanza ignored");
        let is_request = matches!(type_.as_deref(), Some("get" | "set"));
        if kind != "iq" || !is_request {
            return;
        }
        let (Some(Ok(from)), Some(id)) = (from.map(|f| Jid::new(&f)), id) else {
            return;
        };
        if self.claims_own_domain(&from) {
            return;
        }
        self.send(stanzas::iq_error(
            Jid::from(self.settings.domain.clone()),
            from,
            id,
            ErrorType::Modify,
            DefinedCondition::BadRequest,
        ));
    }

    fn on_presence(&mut self, presence: Presence) {
        let (Some(from), Some(to)) = (presence.from.clone(), presence.to.clone()) else {
            return;
        };
        let contact = to.to_bare();
        if contact.domain() != self.settings.domain.domain() {
            return;
        }
        let user = from.to_bare();
        let subscription = Subscription {
            user: user.clone(),
            contact: contact.clone(),
        };
        let at = self.clock.stamp(self.now);
        let mut changes = Vec::new();
        match presence.type_ {
            PresenceType::None => {
                // Presence reaches us only from users who let us see it.
                self.remember(subscription);
                if let Ok(full) = from.try_into_full() {
                    let resource = ResourcePresence {
                        show: presence.show.as_ref().into(),
                        priority: presence.priority.0,
                    };
                    changes.push(self.presence.set_available(&full, resource, at));
                }
            }
            PresenceType::Unavailable => match from.try_into_full() {
                Ok(full) => changes.push(self.presence.set_unavailable(&full, at)),
                Err(bare) => changes.extend(self.went_offline(&bare)),
            },
            PresenceType::Error => changes.extend(self.went_offline(&user)),
            PresenceType::Probe => {
                self.send(stanzas::presence(PresenceType::None, &contact, &user));
            }
            PresenceType::Subscribe => {
                self.send(stanzas::presence(PresenceType::Subscribed, &contact, &user));
                self.send(stanzas::presence(PresenceType::Subscribe, &contact, &user));
                self.send(stanzas::presence(PresenceType::None, &contact, &user));
                self.remember(subscription);
            }
            PresenceType::Subscribed => self.remember(subscription),
            // The user no longer wants Herald's presence; Herald still
            // sees theirs (their server keeps our `from`), so nothing changes.
            PresenceType::Unsubscribe => {}
            // The user revoked Herald's view of their presence.
            PresenceType::Unsubscribed => {
                self.forget(subscription);
                changes.extend(self.went_offline(&user));
            }
        }
        // When Herald saw a user's last resource go is kept with their
        // subscription, until it sees them online again.
        if changes.iter().any(|change| change.changed) {
            let online = self.presence.since(&user).is_some();
            self.presence
                .set_offline_since(&user, (!online).then_some(at));
        }
        if !changes.is_empty() {
            self.metrics.presence_updates.inc();
            self.update_presence_gauges();
        }
        let reachable = changes.iter().any(|change| change.now.is_some());
        for change in changes {
            if !self.limiter.allow(&user, self.now) {
                self.metrics.limited.presence.inc();
                continue;
            }
            self.with_handler(|handler, ctx| handler.on_presence(ctx, &change));
        }
        if reachable {
            self.deliver_deferred(&user);
        }
    }

    fn went_offline(&mut self, user: &BareJid) -> Vec<PresenceChange> {
        self.presence
            .remove_user(user)
            .into_iter()
            .map(|jid| PresenceChange {
                jid,
                now: None,
                changed: true,
            })
            .collect()
    }

    fn on_message(&mut self, message: Message) {
        if message.type_ == MessageType::Error {
            tracing::debug!(from = ?message.from, "message bounced");
            return;
        }
        let sender = message.from.as_ref().map(|from| from.to_bare());
        if let Some(sender) = &sender {
            if !self.limiter.allow(sender, self.now) {
                self.metrics.limited.message.inc();
                return;
            }
        }
        let receipt = (message.payloads.iter())
            .find(|payload| payload.is("received", RECEIPTS_NS))
            .and_then(|received| received.attr("id"));
        if let (Some(id), Some(sender)) = (receipt, &sender) {
            self.on_receipt(id, sender);
        }
        self.with_handler(|handler, ctx| handler.on_message(ctx, &message));
    }

    fn on_iq(&mut self, iq: Iq) {
        let (from, to, id) = match &iq {
            Iq::Result { id, .. } | Iq::Error { id, .. } => {
                // Any answer, even an error, proves the server read up to the ping.
                if !self.on_barrier_answered(id) {
                    tracing::debug!(id, "unexpected IQ response ignored");
                }
                return;
            }
            Iq::Get { from, to, id, .. } | Iq::Set { from, to, id, .. } => {
                (from.clone(), to.clone(), id.clone())
            }
        };
        let (Some(from), Some(to)) = (from, to) else {
            return;
        };
        if self.claims_own_domain(&from) {
            tracing::debug!(%from, "IQ claiming Herald's own domain ignored");
            return;
        }
        // Answering would send a stanza from outside Herald's domain, which
        // servers answer by closing the stream.
        if to.domain() != self.settings.domain.domain() {
            tracing::debug!(%to, "IQ for another domain ignored");
            return;
        }
        let payload = match &iq {
            Iq::Get { payload, .. } | Iq::Set { payload, .. } => payload,
            _ => return,
        };
        let is_get = matches!(iq, Iq::Get { .. });
        let node = payload.attr("node");
        let reply = if is_get && payload.is("query", ns::DISCO_INFO) {
            // A command's node answers for itself; anything else is Herald's.
            let command =
                node.and_then(|node| self.command_info(from.clone(), to.clone(), id.clone(), node));
            command.unwrap_or_else(|| {
                let mut features = vec![ns::DISCO_INFO, ns::PING, commands::COMMANDS];
                features.extend(self.handler.features());
                stanzas::disco_info(to, from, id, &self.settings.name, &features)
            })
        } else if is_get && payload.is("ping", ns::PING) {
            stanzas::iq_result(to, from, id)
        } else if is_get && payload.is("query", ns::DISCO_ITEMS) && node == Some(commands::COMMANDS)
        {
            self.command_items(from, to, id)
        } else if !is_get && payload.is("command", commands::COMMANDS) {
            match self.on_command(from, to, id, payload) {
                Some(answer) => answer,
                // Answered once the broker confirms its job.
                None => return,
            }
        } else {
            let answer = self.with_handler(|handler, ctx| handler.on_iq(ctx, &iq));
            answer.unwrap_or_else(|| {
                stanzas::iq_error(
                    to,
                    from,
                    id,
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                )
            })
        };
        self.send(reply);
    }

    fn with_handler<R>(&mut self, call: impl FnOnce(&mut H, &mut Context<'_>) -> R) -> R {
        let mut effects = Effects::default();
        let result = {
            let mut ctx = handler_context!(self, &mut effects);
            call(&mut self.handler, &mut ctx)
        };
        self.apply(effects);
        result
    }

    fn send(&mut self, stanza: impl Into<tokio_xmpp::Stanza>) {
        self.out.push_back(Output::Stanza(stanza.into()));
    }
}

/// The presence book and the subscribers, as stanzas change them.
impl<H: Handler> Core<H> {
    /// Presence seen on a lost stream is stale; listeners hear that every
    /// resource went away, since the new stream starts from nothing.
    pub(super) fn forget_presence(&mut self) {
        for jid in self.presence.clear() {
            let change = PresenceChange {
                jid,
                now: None,
                changed: true,
            };
            let mut effects = Effects::default();
            let mut ctx = handler_context!(self, &mut effects);
            self.handler.on_presence(&mut ctx, &change);
            // Stanzas are for a stream that is gone; only events go out.
            self.publish_events(effects.events);
        }
        self.update_presence_gauges();
    }

    pub(super) fn update_presence_gauges(&self) {
        self.metrics
            .online_users
            .set(self.presence.online_users() as i64);
        self.metrics
            .online_resources
            .set(self.presence.online_resources() as i64);
    }

    fn remember(&mut self, subscription: Subscription) {
        if self.presence.subscribe(&subscription) {
            self.metrics
                .subscriptions
                .set(self.presence.subscriptions() as i64);
            self.store.write(Change::Add(subscription), self.now);
        }
    }

    fn forget(&mut self, subscription: Subscription) {
        if self.presence.unsubscribe(&subscription) {
            self.metrics
                .subscriptions
                .set(self.presence.subscriptions() as i64);
            self.store.write(Change::Remove(subscription), self.now);
        }
    }
}
