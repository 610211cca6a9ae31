//! The XMPP side of the shell: Herald's stream to the server, made of one
//! session (to one node at a time) or, with `xmpp.connect_every_node`, of
//! one session to each node of a cluster. The event loop polls it like
//! any input; the core sees one stream either way.
//!
//! Several sessions make one stream this way: what the server sends on any
//! of them is read as it comes; each stanza to a user goes on the session
//! their bare JID hashes to, so one user's stanzas keep their order; a
//! barrier ping goes on every session and counts as answered once every
//! session answered it, because only then has the server read everything
//! written before it on all of them. A session that is lost loses the
//! stream: what was written on it and not proven read is in doubt, which
//! is what the core already handles when its one stream is lost. The other
//! sessions stay open and a new stream starts on them at once (the core
//! probes presence again); the lost node's session joins when it can be
//! opened again. Closing and reopening the others instead would leave, for
//! a moment, the server's route to the closed session beside the new one:
//! ejabberd sent some of the new sessions' answers there, and they were
//! lost.

mod slot;

use std::collections::HashMap;
use std::future::poll_fn;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::task::Poll;
use std::time::Duration;

use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::user_text::UserText;
use crate::xmpp::wire::Outgoing;
use crate::xmpp::{Closed, Inbound, ServerAddress, Session};
pub use slot::Dial;
use slot::{Slot, SlotEvent};

/// What happened to the stream.
// Stanzas are the hot path: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Happened {
    /// The stream is up: its first sessions are, and every node was tried.
    Up,
    Inbound(Inbound),
    /// A session of the stream ended, and with it the stream.
    Lost {
        server: ServerAddress,
        reason: Closed,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sessions are being opened; the core has no stream yet.
    Opening,
    Up,
    /// Shutdown: no stream and no new one.
    Closed,
}

pub struct Stream {
    slots: Vec<Slot>,
    dial: Dial,
    phase: Phase,
    /// The slots whose sessions are up, in slot order.
    up: Vec<usize>,
    /// Barrier pings written to several sessions: answers still to come.
    pings: HashMap<String, usize>,
    /// The slot polled first next time, so that none starves the others.
    first: usize,
    /// The stream is up again on the sessions left after one was lost:
    /// [`Stream::next`] says so first.
    up_again: bool,
    metrics: Metrics,
}

impl Stream {
    /// Opens the stream: one slot over all `servers` in turn, or one slot
    /// per server when `every_node`.
    pub fn open(
        servers: Vec<ServerAddress>,
        every_node: bool,
        dial: Dial,
        max_backoff: Duration,
        metrics: Metrics,
    ) -> Stream {
        let slots = if every_node {
            servers
                .into_iter()
                .map(|server| Slot::new(vec![server], Backoff::new(max_backoff)))
                .collect()
        } else {
            vec![Slot::new(servers, Backoff::new(max_backoff))]
        };
        let mut stream = Stream {
            slots,
            dial,
            phase: Phase::Opening,
            up: Vec::new(),
            pings: HashMap::new(),
            first: 0,
            up_again: false,
            metrics,
        };
        stream.reconnect(true);
        stream
    }

    /// The next thing to happen. Cancel-safe: all progress lives in `self`.
    pub async fn next(&mut self) -> Happened {
        if std::mem::take(&mut self.up_again) {
            return Happened::Up;
        }
        loop {
            let (index, event) = poll_fn(|cx| {
                let opening = self.phase == Phase::Opening;
                let count = self.slots.len();
                for offset in 0..count {
                    let index = (self.first + offset) % count;
                    let slot = &mut self.slots[index];
                    // Sessions wait until the stream is up to be read.
                    if self.phase == Phase::Closed || opening && slot.is_up() {
                        continue;
                    }
                    if let Poll::Ready(event) = slot.poll_event(cx, &self.dial) {
                        self.first = (index + 1) % count;
                        return Poll::Ready((index, event));
                    }
                }
                Poll::Pending
            })
            .await;
            if let Some(happened) = self.on_slot(index, event) {
                return happened;
            }
        }
    }

    /// Opens the stream again after it was lost: on the sessions still
    /// open, if any, at once; the others are opened again at once, or after
    /// each slot's pause (returned, the longest) when the last stream did
    /// not get far enough to earn an immediate retry.
    pub fn reconnect(&mut self, at_once: bool) -> Option<Duration> {
        let dial = &self.dial;
        let pause = (self.slots.iter_mut())
            .filter(|slot| !slot.is_up())
            .filter_map(|slot| slot.reconnect(at_once, dial))
            .max();
        if self.up.is_empty() {
            self.phase = Phase::Opening;
        } else {
            self.phase = Phase::Up;
            self.up_again = true;
        }
        pause
    }

    pub fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// The domain Herald binds.
    pub fn domain(&self) -> &BareJid {
        &self.dial.endpoint.domain
    }

    /// The node of the first session, or of the latest attempt.
    pub fn server(&self) -> &ServerAddress {
        self.slots[self.up.first().copied().unwrap_or(0)].server()
    }

    /// How many sessions make the stream.
    pub fn sessions(&self) -> usize {
        self.up.len()
    }

    /// Queues a stanza on the session of its addressee; dropped while the
    /// stream is down (the core writes only while it has one).
    pub fn write(&mut self, outgoing: Outgoing) {
        let index = match self.up.len() {
            0 => return,
            1 => self.up[0],
            sessions => self.up[(addressee_hash(&outgoing) % sessions as u64) as usize],
        };
        if let Some(session) = self.slots[index].session() {
            session.enqueue(outgoing);
        }
    }

    /// Queues a barrier ping on every session.
    pub fn ping(&mut self, ping: Iq) {
        if self.up.len() > 1 {
            self.pings.insert(ping.id().to_string(), self.up.len());
        }
        for &index in &self.up {
            if let Some(session) = self.slots[index].session() {
                session.enqueue(Outgoing::Stanza(Box::new(ping.clone().into())));
            }
        }
    }

    /// Stanzas queued on all sessions, not yet handed to their sockets.
    pub fn backlog(&self) -> usize {
        let slots = &self.slots;
        self.up.iter().map(|&i| slots[i].backlog()).sum()
    }

    /// [`Inbound::Drained`] once the sessions' queues together hold fewer
    /// than `mark` stanzas (as far as each session can tell alone: the
    /// others' queues only shrink until the loop writes again).
    pub fn wake_below(&mut self, mark: usize) {
        let backlog = self.backlog();
        for &index in &self.up {
            let slot = &mut self.slots[index];
            let others = backlog - slot.backlog();
            if let Some(session) = slot.session() {
                session.wake_below(mark.saturating_sub(others));
            }
        }
    }

    /// Ends every session at once, and the stream for good.
    pub fn close_now(&mut self) {
        for slot in &mut self.slots {
            slot.take();
        }
        self.closed();
    }

    /// Writes what is queued on each session and closes it, within `limit`.
    pub async fn close(&mut self, limit: Duration) {
        let sessions: Vec<Box<Session>> = self.slots.iter_mut().filter_map(Slot::take).collect();
        self.closed();
        futures_util::future::join_all(sessions.into_iter().map(|s| s.close(limit))).await;
    }

    fn closed(&mut self) {
        self.phase = Phase::Closed;
        self.up_again = false;
        self.up.clear();
        self.pings.clear();
        self.metrics.xmpp_sessions.set(0);
    }

    /// What a slot's event means for the stream, if anything the loop
    /// acts on.
    fn on_slot(&mut self, index: usize, event: SlotEvent) -> Option<Happened> {
        // Not cloned for every stanza: only the rare events name the node.
        let server = self.slots[index].server();
        match event {
            SlotEvent::Connected => {
                self.up.push(index);
                self.up.sort_unstable();
                self.metrics.xmpp_sessions.set(self.up.len() as i64);
                let domain = &self.dial.endpoint.domain;
                if self.phase == Phase::Up {
                    tracing::info!(%domain, %server, "XMPP session joined the stream");
                    return None;
                }
                if self.slots.len() > 1 {
                    tracing::info!(%domain, %server, "XMPP session connected");
                }
                self.up_once_all_tried()
            }
            SlotEvent::Failed { error, retry_in } => {
                self.metrics.xmpp.connects_failed.inc();
                self.metrics.update_ready();
                tracing::warn!(%server, %error, ?retry_in, "XMPP connection failed");
                if self.phase == Phase::Opening {
                    return self.up_once_all_tried();
                }
                None
            }
            SlotEvent::Inbound(Inbound::Closed(reason)) => {
                let server = server.clone();
                self.slots[index].take();
                self.up.retain(|&up| up != index);
                self.pings.clear();
                self.metrics.xmpp_sessions.set(self.up.len() as i64);
                self.phase = Phase::Opening;
                Some(Happened::Lost { server, reason })
            }
            SlotEvent::Inbound(Inbound::Stanza(Stanza::Iq(iq))) => self
                .answer_counts(&iq)
                .then(|| Happened::Inbound(Inbound::Stanza(iq.into()))),
            SlotEvent::Inbound(inbound) => Some(Happened::Inbound(inbound)),
        }
    }

    /// The stream is up once every slot was tried and one session is up:
    /// a node slower to answer joins later rather than hold up the rest.
    fn up_once_all_tried(&mut self) -> Option<Happened> {
        if self.up.is_empty() || !self.slots.iter().all(|slot| slot.tried) {
            return None;
        }
        self.phase = Phase::Up;
        Some(Happened::Up)
    }

    /// Whether the core is to see this IQ: an answer to a ping written to
    /// several sessions counts only as the last of them.
    fn answer_counts(&mut self, iq: &Iq) -> bool {
        if !matches!(iq, Iq::Result { .. } | Iq::Error { .. }) {
            return true;
        }
        let Some(waiting) = self.pings.get_mut(iq.id()) else {
            return true;
        };
        *waiting -= 1;
        if *waiting > 0 {
            return false;
        }
        self.pings.remove(iq.id());
        true
    }
}

/// Where a stanza goes, as a number: the same for every stanza to one user.
fn addressee_hash(outgoing: &Outgoing) -> u64 {
    let mut hasher = DefaultHasher::new();
    match outgoing {
        Outgoing::Message { to, .. } => {
            Some(UserText(to.user()).node_and_domain()).hash(&mut hasher)
        }
        Outgoing::Stanza(stanza) => {
            let to: Option<&Jid> = match &**stanza {
                Stanza::Message(message) => message.to.as_ref(),
                Stanza::Presence(presence) => presence.to.as_ref(),
                Stanza::Iq(iq) => iq.to(),
            };
            to.map(|jid| (jid.node().map(|n| n.as_str()), jid.domain().as_str()))
                .hash(&mut hasher)
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use xmpp_parsers::message::{Message, MessageType};
    use xmpp_parsers::presence::{Presence, Type};

    use super::*;
    use crate::xmpp::wire::{Addressee, Marks, MessageTemplate};

    #[test]
    fn a_broadcast_message_goes_where_any_stanza_to_its_user_goes() {
        let template = MessageTemplate::new(
            BareJid::new("herald@broadcast.localhost").unwrap(),
            MessageType::Headline,
            None,
            "hello".into(),
            Marks::default(),
        )
        .map(Arc::new)
        .unwrap();
        let message_to = |user: &str| Outgoing::Message {
            template: Arc::clone(&template),
            to: Addressee::own(user.into(), 3),
        };
        let stanza_to = |jid: &str| {
            let to = Jid::new(jid).unwrap();
            Outgoing::Stanza(Box::new(Presence::new(Type::Probe).with_to(to).into()))
        };
        for (user, full) in [
            ("alice@localhost", "alice@localhost/phone"),
            ("localhost", "localhost/admin"),
        ] {
            let hash = addressee_hash(&message_to(user));
            assert_eq!(hash, addressee_hash(&stanza_to(user)), "{user}");
            assert_eq!(hash, addressee_hash(&stanza_to(full)), "{full}");
        }
        let to_bob = Message::new(Some(Jid::new("bob@localhost").unwrap()));
        assert_eq!(
            addressee_hash(&message_to("bob@localhost")),
            addressee_hash(&Outgoing::Stanza(Box::new(to_bob.into())))
        );
        assert_ne!(
            addressee_hash(&message_to("alice@localhost")),
            addressee_hash(&message_to("bob@localhost"))
        );
    }
}
