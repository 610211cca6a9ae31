//! A real XMPP user, every stanza parsed ([`super::establish`] logs it in).
//!
//! The connection lives in a background task that keeps reading (so the
//! server never blocks on this user) and forwards every received stanza;
//! `next_message`/`expect_no_message` read from that queue and remember every
//! `<message>` with a body in [`XmppUser::messages`]. There is no automatic
//! reconnect: after the server's `stop`/`start_again`, log in again.
//!
//! Must be used inside a tokio runtime (`#[tokio::test]`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::xmlstream::ReadError;

use super::{escape, establish, Stream, NS_CLIENT};
use crate::server::{user_entry, XmppServer};

/// How long `login` may take (connect, SASL, bind).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// One received `<message>` that had a `<body>`.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// Sender JID as the server stamped it ("" if absent).
    pub from: String,
    /// The text of the first `<body>`.
    pub body: String,
    /// The `type` attribute ("normal" if absent, per RFC 6121).
    pub kind: String,
    /// The message id, if any.
    pub id: Option<String>,
    /// The whole stanza, for payload checks.
    pub stanza: Element,
}

impl ReceivedMessage {
    /// None for messages without a body (chat states, receipts, ...).
    fn from_stanza(el: Element) -> Option<ReceivedMessage> {
        let body = el.get_child("body", NS_CLIENT)?.text();
        Some(ReceivedMessage {
            from: el.attr("from").unwrap_or_default().to_string(),
            body,
            kind: el.attr("type").unwrap_or("normal").to_string(),
            id: el.attr("id").map(str::to_string),
            stanza: el,
        })
    }
}

enum Command {
    Send(Element, oneshot::Sender<Result<(), String>>),
    End(oneshot::Sender<()>),
}

/// A logged-in c2s user. Dropping it drops the TCP connection without a
/// stream close (like a crashed client); [`XmppUser::disconnect`] closes
/// cleanly.
pub struct XmppUser {
    jid: String,
    commands: mpsc::UnboundedSender<Command>,
    incoming: mpsc::UnboundedReceiver<Element>,
    messages: Vec<ReceivedMessage>,
    presences: Vec<Element>,
    task: JoinHandle<()>,
    next_id: u64,
}

impl XmppUser {
    /// Logs `user` (a user provisioned on `server`) in as
    /// `user@localhost/resource` (`user@second.localhost` as itself) and returns once the resource is bound
    /// (panics after 20 s or on auth failure, with the server's log tail).
    /// Sends NO presence: call [`send_presence`](Self::send_presence) to
    /// become available (that is what makes the server send the user's
    /// presence to the component), or use
    /// [`login_available`](Self::login_available).
    pub async fn login(server: &impl XmppServer, user: &str, resource: &str) -> XmppUser {
        let addr = server.c2s_addr();
        let (local, domain) = user_entry(user);
        let connect = Self::connect(&addr, domain, local, server.password(user), resource);
        match tokio::time::timeout(LOGIN_TIMEOUT, connect).await {
            Ok(Ok(user)) => user,
            Ok(Err(e)) => panic!(
                "{local}@{domain}/{resource} could not log in to {addr}: {e}\n--- {} log ---\n{}",
                server.name(),
                server.log_tail(20)
            ),
            Err(_) => panic!(
                "{local}@{domain}/{resource} did not log in to {addr} within {LOGIN_TIMEOUT:?}\n\
                 --- {} log ---\n{}",
                server.name(),
                server.log_tail(20)
            ),
        }
    }

    /// Logs `user@domain/resource` in at `addr` (any c2s listener, not only
    /// a test server's), without a timeout and without presence.
    pub async fn connect(
        addr: &str,
        domain: &str,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Result<XmppUser, String> {
        let (stream, jid) = establish(addr, domain, user, password, resource).await?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(stream, cmd_rx, in_tx));
        Ok(XmppUser {
            jid,
            commands: cmd_tx,
            incoming: in_rx,
            messages: Vec::new(),
            presences: Vec::new(),
            task,
            next_id: 0,
        })
    }

    /// `login` followed by a plain available presence (priority 0). Returns
    /// once the server has processed the presence, which it shows by sending
    /// it back to this resource (RFC 6121, 4.2.2). Until then the resource is
    /// not available: ejabberd, which runs every session in a process of its
    /// own, would not deliver a chat sent to the bare JID by another user a
    /// moment later.
    pub async fn login_available(server: &impl XmppServer, user: &str, resource: &str) -> XmppUser {
        let mut u = Self::login(server, user, resource).await;
        let jid = u.jid();
        let xml = u.presence_xml(None, 0);
        let own = |p: &Element| p.attr("from") == Some(jid.as_str()) && p.attr("type").is_none();
        let echo = u
            .exchange(&xml, "presence", own, LOGIN_TIMEOUT)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{jid}: no echo of the initial presence within {LOGIN_TIMEOUT:?}\n\
                     --- {} log ---\n{}",
                    server.name(),
                    server.log_tail(20)
                )
            });
        u.presences.push(echo);
        u
    }

    /// The full JID the server bound ("alice@localhost/phone").
    pub fn jid(&self) -> String {
        self.jid.clone()
    }

    /// The bare JID ("alice@localhost").
    pub fn bare_jid(&self) -> String {
        self.jid.split('/').next().unwrap_or_default().to_string()
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("t{}", self.next_id)
    }

    /// Broadcasts available presence: `show` None = plain available, else one
    /// of "away", "chat", "dnd", "xa"; `priority` -128..=127.
    pub async fn send_presence(&mut self, show: Option<&str>, priority: i8) {
        let xml = self.presence_xml(show, priority);
        self.send_xml(&xml).await;
    }

    fn presence_xml(&mut self, show: Option<&str>, priority: i8) -> String {
        let show_el = match show {
            None => String::new(),
            Some(s @ ("away" | "chat" | "dnd" | "xa")) => format!("<show>{s}</show>"),
            Some(other) => panic!("unknown presence show {other:?} (away, chat, dnd, xa)"),
        };
        let id = self.new_id();
        format!(
            "<presence xmlns='{NS_CLIENT}' id='{id}'>{show_el}<priority>{priority}</priority></presence>"
        )
    }

    /// Broadcasts unavailable presence while staying connected.
    pub async fn send_unavailable(&mut self) {
        let id = self.new_id();
        self.send_xml(&format!(
            "<presence xmlns='{NS_CLIENT}' id='{id}' type='unavailable'/>"
        ))
        .await;
    }

    /// Sends a `<message type="chat">` with `body` to `to` (bare or full JID).
    pub async fn send_chat(&mut self, to: &str, body: &str) {
        let id = self.new_id();
        self.send_xml(&format!(
            "<message xmlns='{NS_CLIENT}' id='{id}' type='chat' to='{}'><body>{}</body></message>",
            escape(to),
            escape(body)
        ))
        .await;
    }

    /// Sends one stanza given as XML text. Give it `xmlns='jabber:client'`.
    pub async fn send_xml(&mut self, xml: &str) {
        let el: Element = xml
            .parse()
            .unwrap_or_else(|e| panic!("not a valid XML element ({e}): {xml}"));
        self.send(el).await;
    }

    /// Sends one stanza; panics if the connection is gone.
    pub async fn send(&mut self, stanza: Element) {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send(stanza, tx))
            .unwrap_or_else(|_| panic!("{}: connection is closed", self.jid));
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{}: sending failed: {e}", self.jid),
            Err(_) => panic!("{}: connection closed while sending", self.jid),
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
            let el = match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(el)) => el,
                // Connection gone: wait out the window anyway (callers ask
                // "does anything arrive within X").
                Ok(None) => {
                    tokio::time::sleep_until(deadline).await;
                    return None;
                }
                Err(_) => return None,
            };
            match el.name() {
                "message" => {
                    if let Some(received) = ReceivedMessage::from_stanza(el) {
                        self.messages.push(received.clone());
                        return Some(received);
                    }
                }
                "presence" => self.presences.push(el),
                _ => {}
            }
        }
    }

    /// Sends `xml` (a stanza with `xmlns='jabber:client'`) and returns the
    /// first received stanza named `name` that `matches`, or None after
    /// `timeout`. Messages and presences passed over are still recorded.
    pub async fn exchange(
        &mut self,
        xml: &str,
        name: &str,
        matches: impl Fn(&Element) -> bool,
        timeout: Duration,
    ) -> Option<Element> {
        self.send_xml(xml).await;
        let deadline = Instant::now() + timeout;
        loop {
            let el = tokio::time::timeout_at(deadline, self.incoming.recv())
                .await
                .ok()??;
            if el.name() == name && matches(&el) {
                return Some(el);
            }
            match el.name() {
                "message" => self.messages.extend(ReceivedMessage::from_stanza(el)),
                "presence" => self.presences.push(el),
                _ => {}
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

    /// Presence stanzas seen so far while waiting for messages.
    pub fn presences(&self) -> &[Element] {
        &self.presences
    }

    /// Whether the connection is still up.
    pub fn is_connected(&self) -> bool {
        !self.task.is_finished()
    }

    /// Clean logout: sends `</stream:stream>` (the server then sends
    /// unavailable presence to the user's contacts) and waits (at most 5 s)
    /// for the server to close its side.
    pub async fn disconnect(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::End(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        // Drop aborts the task (a no-op if it has finished).
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
    mut stream: Stream,
    mut commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::UnboundedSender<Element>,
) {
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Send(el, reply)) => {
                    let r = stream.send(&el).await.map_err(|e| e.to_string());
                    let failed = r.is_err();
                    let _ = reply.send(r);
                    if failed {
                        return;
                    }
                }
                Some(Command::End(reply)) => {
                    let _ = stream.shutdown().await;
                    // Wait for the server's footer / EOF so the logout is done.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(r) = stream.next().await {
                            if matches!(r, Err(ReadError::StreamFooterReceived | ReadError::HardError(_))) {
                                break;
                            }
                        }
                    })
                    .await;
                    let _ = reply.send(());
                    return;
                }
                None => return,
            },
            item = stream.next() => match item {
                Some(Ok(el)) => { let _ = incoming.send(el); }
                Some(Err(ReadError::SoftTimeout | ReadError::ParseError(_))) => {}
                Some(Err(ReadError::HardError(_) | ReadError::StreamFooterReceived)) | None => return,
            },
        }
    }
}
