//! A real XMPP user: tokio-xmpp's c2s `Client` over plaintext TCP (SASL, no
//! TLS) against the test Prosody.
//!
//! The `Client` lives in a background task that keeps reading the stream (so
//! the server never blocks on us) and forwards every received stanza to the
//! `XmppUser`; `next_message`/`expect_no_message` read from that queue and
//! remember every `<message>` with a body in [`XmppUser::messages`].
//!
//! Note: tokio-xmpp's `Client` reconnects by itself if the connection drops
//! (e.g. across `Prosody::stop`/`start_again`); [`XmppUser::wait_online`]
//! waits for such a reconnect. After a reconnect the user must send presence
//! again to be available.
//!
//! Must be used inside a tokio runtime (`#[tokio::test]`).

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::parsers::jid::{FullJid, Jid};
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Show};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};

use super::prosody::Prosody;

/// How long `login` waits for the session to be established.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// One received `<message>` that had a body.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// Sender JID as the server stamped it ("" if absent).
    pub from: String,
    /// The body (the default-language one if there are several).
    pub body: String,
    /// "chat", "normal", "headline", "groupchat" or "error".
    pub kind: String,
    /// The message id, if any.
    pub id: Option<String>,
    /// The whole stanza, for payload checks.
    pub stanza: Message,
}

impl ReceivedMessage {
    /// None for messages without a body (chat states, receipts, ...).
    fn from_stanza(m: Message) -> Option<ReceivedMessage> {
        let (_, body) = m.get_best_body_cloned(vec![])?;
        Some(ReceivedMessage {
            from: m.from.as_ref().map(|j| j.to_string()).unwrap_or_default(),
            body,
            kind: message_type_str(&m.type_).to_string(),
            id: m.id.as_ref().map(|id| id.0.clone()),
            stanza: m,
        })
    }
}

enum Command {
    Send(Stanza, oneshot::Sender<Result<(), String>>),
    End(oneshot::Sender<()>),
}

enum Incoming {
    Online(Jid),
    Stanza(Stanza),
}

/// A logged-in c2s user. Dropping it drops the TCP connection without a
/// stream close (like a crashed client); [`XmppUser::disconnect`] closes
/// cleanly.
pub struct XmppUser {
    jid: FullJid,
    commands: mpsc::UnboundedSender<Command>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    messages: Vec<ReceivedMessage>,
    presences: Vec<Presence>,
    task: JoinHandle<()>,
}

impl XmppUser {
    /// Logs `user` (a user provisioned on `prosody`) in as
    /// `user@localhost/resource` and waits until the session is bound
    /// (at most 20 s, then panics). Sends NO presence: call
    /// [`send_presence`](Self::send_presence) to become available (which is
    /// what makes Prosody send the user's presence to the component), or use
    /// [`login_available`](Self::login_available).
    pub async fn login(prosody: &Prosody, user: &str, resource: &str) -> XmppUser {
        let jid: FullJid = format!("{user}@{}/{resource}", prosody.domain())
            .parse()
            .unwrap_or_else(|e| panic!("bad JID for user {user:?} / resource {resource:?}: {e}"));
        let mut client = Client::new_plaintext(
            jid.clone(),
            prosody.password(user).to_string(),
            DnsConfig::addr(&prosody.c2s_addr()),
            Timeouts::tight(),
        );
        let bound = tokio::time::timeout(LOGIN_TIMEOUT, async {
            loop {
                match client.next().await {
                    Some(Event::Online { bound_jid, .. }) => return Ok(bound_jid),
                    Some(_) => continue,
                    None => return Err("client stream ended"),
                }
            }
        })
        .await;
        let bound = match bound {
            Ok(Ok(bound)) => bound,
            Ok(Err(e)) => panic!("{jid} could not log in to {}: {e}", prosody.c2s_addr()),
            Err(_) => panic!(
                "{jid} did not come online on {} within {LOGIN_TIMEOUT:?}\n--- Prosody log ---\n{}",
                prosody.c2s_addr(),
                prosody.log_tail(20)
            ),
        };
        let jid = bound.try_into_full().unwrap_or(jid);

        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(client, cmd_rx, in_tx));
        XmppUser {
            jid,
            commands: cmd_tx,
            incoming: in_rx,
            messages: Vec::new(),
            presences: Vec::new(),
            task,
        }
    }

    /// `login` followed by a plain available presence (priority 0).
    pub async fn login_available(prosody: &Prosody, user: &str, resource: &str) -> XmppUser {
        let mut u = Self::login(prosody, user, resource).await;
        u.send_presence(None, 0).await;
        u
    }

    /// The full JID the server bound ("alice@localhost/phone").
    pub fn jid(&self) -> String {
        self.jid.to_string()
    }

    /// The bare JID ("alice@localhost").
    pub fn bare_jid(&self) -> String {
        self.jid.to_bare().to_string()
    }

    /// Broadcasts presence: `show` None = plain available, else one of
    /// "away", "chat", "dnd", "xa".
    pub async fn send_presence(&mut self, show: Option<&str>, priority: i8) {
        let mut p = Presence::available().with_priority(priority);
        if let Some(show) = show {
            p = p.with_show(match show {
                "away" => Show::Away,
                "chat" => Show::Chat,
                "dnd" => Show::Dnd,
                "xa" => Show::Xa,
                other => panic!("unknown presence show {other:?} (away, chat, dnd, xa)"),
            });
        }
        self.send(p.into()).await;
    }

    /// Broadcasts unavailable presence while staying connected.
    pub async fn send_unavailable(&mut self) {
        self.send(Presence::unavailable().into()).await;
    }

    /// Sends a `<message type="chat">` with `body` to `to` (bare or full JID).
    pub async fn send_chat(&mut self, to: &str, body: &str) {
        let to: Jid = to.parse().unwrap_or_else(|e| panic!("bad JID {to:?}: {e}"));
        let msg = Message::chat(Some(to)).with_body(Lang::new(), body.to_string());
        self.send(msg.into()).await;
    }

    /// Sends any stanza; panics if the connection is gone.
    pub async fn send(&mut self, stanza: Stanza) {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send(stanza, tx))
            .unwrap_or_else(|_| panic!("{}: client task has ended", self.jid));
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{}: sending failed: {e}", self.jid),
            Err(_) => panic!("{}: client task ended while sending", self.jid),
        }
    }

    /// The next received `<message>` with a body, as `(from, body, type)`,
    /// or None if none arrives within `timeout`. Other stanzas are skipped
    /// (presences are kept in [`presences`](Self::presences)).
    pub async fn next_message(&mut self, timeout: Duration) -> Option<(String, String, String)> {
        self.next_received(timeout)
            .await
            .map(|m| (m.from, m.body, m.kind))
    }

    /// Like `next_message` but returns the whole [`ReceivedMessage`].
    pub async fn next_received(&mut self, timeout: Duration) -> Option<ReceivedMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let item = match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(item)) => item,
                Ok(None) | Err(_) => return None,
            };
            match item {
                Incoming::Stanza(Stanza::Message(m)) => {
                    if let Some(received) = ReceivedMessage::from_stanza(m) {
                        self.messages.push(received.clone());
                        return Some(received);
                    }
                }
                Incoming::Stanza(Stanza::Presence(p)) => self.presences.push(p),
                Incoming::Stanza(Stanza::Iq(_)) | Incoming::Online(_) => {}
            }
        }
    }

    /// Collects every message with a body that arrives within `window`.
    pub async fn collect_messages(&mut self, window: Duration) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(m) = self
            .next_received(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            out.push(m);
        }
        out
    }

    /// Panics if a message with a body arrives within `window`.
    pub async fn expect_no_message(&mut self, window: Duration) {
        if let Some(m) = self.next_received(window).await {
            panic!(
                "{} expected no message within {window:?} but got one from {:?} (type {}): {:?}",
                self.jid, m.from, m.kind, m.body
            );
        }
    }

    /// Every message with a body received so far (by `next_message` & co).
    pub fn messages(&self) -> &[ReceivedMessage] {
        &self.messages
    }

    /// Presences seen so far while waiting for messages.
    pub fn presences(&self) -> &[Presence] {
        &self.presences
    }

    /// Waits until the client has (re)established its session, e.g. after
    /// `Prosody::start_again`. Returns false on timeout. Stanzas seen while
    /// waiting are recorded as usual (messages in `messages()`).
    pub async fn wait_online(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(Incoming::Online(jid))) => {
                    if let Ok(full) = jid.try_into_full() {
                        self.jid = full;
                    }
                    return true;
                }
                Ok(Some(Incoming::Stanza(Stanza::Message(m)))) => {
                    if let Some(received) = ReceivedMessage::from_stanza(m) {
                        self.messages.push(received);
                    }
                }
                Ok(Some(Incoming::Stanza(Stanza::Presence(p)))) => self.presences.push(p),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Clean logout: closes the XMPP stream (the server then sends
    /// unavailable presence to the user's contacts) and waits for the close
    /// (bounded: 5 s).
    pub async fn disconnect(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::End(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        self.task.abort();
    }

    /// Abrupt drop of the TCP connection, no stream close (a crashed client).
    pub fn drop_connection(self) {
        drop(self);
    }
}

impl Drop for XmppUser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn drive(
    mut client: Client,
    mut commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::UnboundedSender<Incoming>,
) {
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Send(stanza, reply)) => {
                    let r = client.send_stanza(stanza).await.map(|_| ()).map_err(|e| e.to_string());
                    let _ = reply.send(r);
                }
                Some(Command::End(reply)) => {
                    let _ = client.send_end().await;
                    let _ = reply.send(());
                    return;
                }
                None => return,
            },
            event = client.next() => match event {
                Some(Event::Stanza(s)) => { let _ = incoming.send(Incoming::Stanza(s)); }
                Some(Event::Online { bound_jid, .. }) => { let _ = incoming.send(Incoming::Online(bound_jid)); }
                Some(Event::Disconnected(_)) => {}
                None => return,
            },
        }
    }
}

fn message_type_str(t: &MessageType) -> &'static str {
    match t {
        MessageType::Chat => "chat",
        MessageType::Error => "error",
        MessageType::Groupchat => "groupchat",
        MessageType::Headline => "headline",
        MessageType::Normal => "normal",
    }
}
