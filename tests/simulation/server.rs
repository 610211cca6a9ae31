//! A simulated XMPP server: users who log in and out, a component stream
//! whose written stanzas wait until the server reads them (it may stop
//! reading for a while, or the stream may be cut with stanzas unread),
//! pings answered only once everything before them is read (late, or with
//! an error), probes answered from the users' presence of that moment, a
//! count of every message each user's client got, and the delivery
//! receipts their clients send back (`receipts.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::presence::{Presence, Show, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::receipts::Clients;
use herald_testkit::draw::Draw;

pub const SERVER: &str = "localhost";
pub const CONTACT: &str = "herald@broadcast.localhost";
/// Users with an account; the first `STEADY` are online and available
/// from the start and never change.
pub const USERS: usize = 6;
pub const STEADY: usize = 2;
/// Longest a presence takes from the server to Herald; below Herald's
/// settle delay, as on the real servers measured.
pub const PRESENCE_DELAY_MS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    Offline,
    Available,
    Away,
}

/// One component stream, from the server's side.
pub struct Stream {
    /// Written by Herald, not yet read by the server.
    pub unread: VecDeque<Stanza>,
    /// Read by the server and due to Herald at the given time, in order.
    pub to_herald: VecDeque<(Instant, Stanza)>,
    pub stalled_until: Instant,
}

pub struct Server {
    pub stream: Option<Stream>,
    pub users: Vec<UserState>,
    /// When each user's state last changed.
    pub changed_at: Vec<Instant>,
    /// (job id, user) -> messages that user's client got.
    pub received: BTreeMap<(String, usize), u32>,
    /// (job id, user) -> messages to that user the server read, whether
    /// their client was online to get them or not.
    pub read: BTreeMap<(String, usize), u32>,
    /// Per mille of pings answered with an error.
    pub ping_errors: u64,
    /// The users' clients as they answer receipt requests.
    pub clients: Clients,
}

pub fn user_jid(user: usize) -> BareJid {
    BareJid::new(&format!("u{user}@{SERVER}")).unwrap()
}

fn resource(user: usize) -> FullJid {
    FullJid::new(&format!("u{user}@{SERVER}/phone")).unwrap()
}

fn contact() -> Jid {
    Jid::new(CONTACT).unwrap()
}

/// The user a JID names, if it is one of the simulated accounts.
fn user_of(jid: &Jid) -> Option<usize> {
    if jid.domain().as_str() != SERVER {
        return None;
    }
    let node = jid.node()?.as_str();
    let user: usize = node.strip_prefix('u')?.parse().ok()?;
    (user < USERS).then_some(user)
}

impl Server {
    pub fn new(now: Instant, seed: u64) -> Self {
        let users = (0..USERS)
            .map(|u| {
                if u < STEADY {
                    UserState::Available
                } else {
                    UserState::Offline
                }
            })
            .collect();
        Server {
            stream: None,
            users,
            changed_at: vec![now; USERS],
            received: BTreeMap::new(),
            read: BTreeMap::new(),
            ping_errors: 0,
            clients: Clients::new(seed),
        }
    }

    pub fn open_stream(&mut self, now: Instant) {
        self.stream = Some(Stream {
            unread: VecDeque::new(),
            to_herald: VecDeque::new(),
            stalled_until: now,
        });
    }

    /// Herald wrote a stanza.
    pub fn write(&mut self, stanza: Stanza) -> Result<(), String> {
        let stream = self
            .stream
            .as_mut()
            .ok_or("Herald wrote a stanza with no stream")?;
        stream.unread.push_back(stanza);
        Ok(())
    }

    /// The server reads up to `n` stanzas, unless it stalls.
    pub fn read(&mut self, n: usize, now: Instant, rng: &mut Draw) {
        for _ in 0..n {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            if stream.stalled_until > now {
                return;
            }
            let Some(stanza) = stream.unread.pop_front() else {
                return;
            };
            self.on_read(stanza, now, rng);
        }
    }

    fn on_read(&mut self, stanza: Stanza, now: Instant, rng: &mut Draw) {
        match stanza {
            Stanza::Message(message) => {
                let Some(to) = &message.to else { return };
                let Some(user) = user_of(to) else { return };
                let body = message.bodies.values().next().cloned().unwrap_or_default();
                let job = body.trim_start_matches("body of ").to_string();
                *self.read.entry((job.clone(), user)).or_default() += 1;
                // To the bare JID: the server hands it to the user's
                // online resources.
                if self.users[user] != UserState::Offline {
                    let from = Jid::from(resource(user));
                    for (at, receipt) in self.clients.got(&message, &job, from, now) {
                        self.send(at, receipt);
                    }
                    *self.received.entry((job, user)).or_default() += 1;
                }
            }
            Stanza::Iq(Iq::Get { from, id, .. }) => {
                let answer = if rng.chance(self.ping_errors) {
                    let error = StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::ServiceUnavailable,
                        "en",
                        "busy",
                    );
                    Iq::from_error(id, error)
                } else {
                    Iq::Result {
                        from: None,
                        to: None,
                        id,
                        payload: None,
                    }
                };
                let mut answer = answer.with_from(Jid::new(SERVER).unwrap());
                if let Some(from) = from {
                    answer = answer.with_to(from);
                }
                // A ping is answered once everything before it is read; a
                // busy server may take a while to send the answer.
                self.send(now + rng.millis(200), answer.into());
            }
            Stanza::Presence(presence) if presence.type_ == PresenceType::Probe => {
                let Some(user) = presence.to.as_ref().and_then(user_of) else {
                    return; // no such account: no answer
                };
                // ejabberd answers a probe from the user's session, possibly
                // after the pong: within the settle delay.
                let at = now + rng.millis(PRESENCE_DELAY_MS);
                self.send(at, self.presence_of(user));
            }
            Stanza::Presence(_) | Stanza::Iq(_) => {}
        }
    }

    fn presence_of(&self, user: usize) -> Stanza {
        let presence = match self.users[user] {
            UserState::Offline => Presence::new(PresenceType::Unavailable)
                .with_from(Jid::from(user_jid(user)))
                .with_to(contact()),
            UserState::Available => Presence::new(PresenceType::None)
                .with_from(Jid::from(resource(user)))
                .with_to(contact()),
            UserState::Away => Presence::new(PresenceType::None)
                .with_from(Jid::from(resource(user)))
                .with_to(contact())
                .with_show(Show::Away),
        };
        presence.into()
    }

    /// Queues a stanza to Herald, never before the ones queued earlier.
    fn send(&mut self, at: Instant, stanza: Stanza) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let at = stream
            .to_herald
            .back()
            .map_or(at, |(last, _)| at.max(*last));
        stream.to_herald.push_back((at, stanza));
    }

    /// The next stanza due to Herald at `now`.
    pub fn next_to_herald(&mut self, now: Instant) -> Option<Stanza> {
        let stream = self.stream.as_mut()?;
        if stream.to_herald.front().is_none_or(|(at, _)| *at > now) {
            return None;
        }
        let (_, stanza) = stream.to_herald.pop_front()?;
        self.clients.on_handed(&stanza, now);
        Some(stanza)
    }

    /// A user who may change logs in, goes away, or logs out; the server
    /// tells Herald if the stream is up.
    pub fn churn(&mut self, rng: &mut Draw, now: Instant) {
        let user = STEADY + rng.below((USERS - STEADY) as u64) as usize;
        self.users[user] = match rng.below(3) {
            0 => UserState::Offline,
            1 => UserState::Available,
            _ => UserState::Away,
        };
        self.changed_at[user] = now;
        let at = now + rng.millis(PRESENCE_DELAY_MS);
        self.send(at, self.presence_of(user));
    }

    /// Stanzas a hostile user or a broken peer might make the server route.
    pub fn hostile(&mut self, rng: &mut Draw, now: Instant) {
        let from = Jid::from(resource(
            STEADY + rng.below((USERS - STEADY) as u64) as usize,
        ));
        let stanza: Stanza = match rng.below(4) {
            0 => {
                let mut chat = Message::new(Some(contact()));
                chat.from = Some(from);
                chat.type_ = MessageType::Chat;
                chat.bodies.insert(Lang::default(), "hello".into());
                chat.into()
            }
            1 => Presence::new(PresenceType::None)
                .with_from(Jid::new("mallory@evil.example/x").unwrap())
                .with_to(contact())
                .into(),
            2 => Iq::from_get("q1", xmpp_parsers::disco::DiscoInfoQuery { node: None })
                .with_from(from)
                .with_to(contact())
                .into(),
            _ => Iq::Result {
                from: Some(Jid::new(SERVER).unwrap()),
                to: None,
                id: "herald-barrier-999999".into(),
                payload: None,
            }
            .into(),
        };
        self.send(now, stanza);
    }

    /// The server stops reading Herald's stream for a while.
    pub fn stall(&mut self, rng: &mut Draw, now: Instant) {
        if let Some(stream) = self.stream.as_mut() {
            stream.stalled_until = now + rng.millis(15_000);
        }
    }

    /// Whether `user`'s presence has not changed since well before `since`.
    pub fn unchanged_since(&self, user: usize, since: Instant) -> bool {
        self.changed_at[user] + Duration::from_secs(1) < since
    }

    /// Whether `user` has been available, unchanged, since well before
    /// `since`: long enough for their presence to have reached Herald
    /// behind any ping answer queued before it.
    pub fn steady_since(&self, user: usize, since: Instant) -> bool {
        self.users[user] == UserState::Available && self.unchanged_since(user, since)
    }
}
