//! A scripted XEP-0114 server for tests of what Herald does with stanzas no
//! sane server would route but a broken or hostile one might send.
//!
//! It accepts Herald's stream and handshake (checking the secret), answers
//! Herald's pings to the server domain, and writes whatever bytes the test
//! gives it. Everything Herald writes is parsed strictly as it arrives
//! ([`crate::xml::StreamReader`]): the first well-formedness error is kept
//! and ends the connection, and every stanza is recorded for the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xmpp_parsers::component::Handshake;

use crate::amqp::{Amqp, EventTap};
use crate::herald::{Herald, Names, XmppTarget};
use crate::server::{COMPONENT_DOMAIN, DOMAIN};
use crate::xml::{Node, StreamReader};

const PING_NS: &str = "urn:xmpp:ping";

/// What the server has seen, over all connections.
#[derive(Debug, Default)]
struct Seen {
    /// Streams that completed the handshake.
    connections: usize,
    /// Every stanza Herald wrote after its handshake, in order.
    stanzas: Vec<Node>,
    /// The first malformed XML Herald wrote, or a protocol error.
    malformed: Option<String>,
}

pub struct FakeServer {
    port: u16,
    secret: String,
    seen: Arc<Mutex<Seen>>,
    script: mpsc::UnboundedSender<Vec<u8>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Listens on a free loopback port; call from a multi-threaded runtime.
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let secret = format!("secret-{}", crate::random_hex());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (script, scripted) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(listener, secret.clone(), Arc::clone(&seen), scripted));
        FakeServer {
            port,
            secret,
            seen,
            script,
            task,
        }
    }

    /// Where Herald is to connect.
    pub fn target(&self) -> XmppTarget {
        XmppTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            domain: COMPONENT_DOMAIN.into(),
            server_domain: DOMAIN.into(),
            secret: self.secret.clone(),
        }
    }

    /// Writes `xml` to Herald's current stream, as it is.
    pub fn send(&self, xml: impl Into<Vec<u8>>) {
        self.script.send(xml.into()).expect("fake server stopped");
    }

    /// Streams that completed the handshake so far.
    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    /// Waits until `count` streams have completed the handshake; panics
    /// after `timeout`.
    pub async fn wait_connections(&self, count: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.connections() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} streams within {timeout:?}, expected {count}",
                self.connections()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first malformed XML (or protocol error) Herald wrote, if any.
    pub fn malformed(&self) -> Option<String> {
        self.seen.lock().unwrap().malformed.clone()
    }

    /// Every stanza Herald wrote so far.
    pub fn stanzas(&self) -> Vec<Node> {
        self.seen.lock().unwrap().stanzas.clone()
    }

    /// The first stanza Herald wrote that satisfies `matches`; panics after
    /// `timeout` (or at once if Herald wrote malformed XML).
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Node) -> bool,
    ) -> Node {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                if let Some(error) = &seen.malformed {
                    panic!("waiting for {what}: Herald wrote malformed XML: {error}");
                }
                if let Some(found) = seen.stanzas.iter().find(|s| matches(s)) {
                    return found.clone();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} from Herald within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first message Herald wrote whose body is `body`.
    pub async fn wait_for_message(&self, body: &str, timeout: Duration) -> Node {
        self.wait_for(&format!("a message {body:?}"), timeout, |n| {
            n.name == "message" && n.child("body").is_some_and(|b| b.text == body)
        })
        .await
    }
}

/// A scripted server with Herald on it (default config), taps on Herald's
/// presence and report events, and a broker connection for jobs.
pub struct FakeStack {
    pub server: FakeServer,
    pub names: Names,
    pub herald: Herald,
    pub presence: EventTap,
    pub reports: EventTap,
    pub amqp: Amqp,
    /// Herald's config and store: keep it bound while Herald runs.
    pub dir: tempfile::TempDir,
}

impl FakeStack {
    pub async fn start() -> FakeStack {
        let server = FakeServer::start().await;
        let names = Names::unique();
        let dir = tempfile::tempdir().expect("temp dir");
        let herald = Herald::start_at(&server.target(), &names, dir.path(), &[]);
        FakeStack {
            presence: EventTap::bind(&names.events, "presence.changed").await,
            reports: EventTap::bind(&names.events, "job.report").await,
            amqp: Amqp::connect().await,
            server,
            names,
            herald,
            dir,
        }
    }
}

/// The domain of a JID written as text (`user@domain/resource`).
pub fn domain_of(jid: &str) -> &str {
    let bare = jid.split('/').next().unwrap_or(jid);
    bare.rsplit('@').next().unwrap_or(bare)
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    secret: String,
    seen: Arc<Mutex<Seen>>,
    mut scripted: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut stream_number = 0;
    while let Ok((socket, _)) = listener.accept().await {
        stream_number += 1;
        let id = format!("fake-{stream_number}");
        // One stream at a time, as a real server allows per component domain.
        if let Err(error) = connection(socket, &id, &secret, &seen, &mut scripted).await {
            seen.lock().unwrap().malformed.get_or_insert(error);
        }
    }
}

/// Serves one stream until Herald closes it. `Err` only for malformed XML
/// or a protocol error on Herald's side.
async fn connection(
    socket: TcpStream,
    id: &str,
    secret: &str,
    seen: &Mutex<Seen>,
    scripted: &mut mpsc::UnboundedReceiver<Vec<u8>>,
) -> Result<(), String> {
    let (mut input, mut output) = socket.into_split();
    let mut reader = StreamReader::default();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut handshaken = false;
    let mut header_sent = false;
    loop {
        let stanzas = tokio::select! {
            read = input.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => reader.feed(&buffer[..n], false)?,
            },
            Some(bytes) = scripted.recv(), if handshaken => {
                write(&mut output, &bytes).await;
                continue;
            }
        };
        if reader.root().is_some() && !header_sent {
            header_sent = true;
            let header = format!(
                "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
                 xmlns='jabber:component:accept' id='{id}' from='{COMPONENT_DOMAIN}'>"
            );
            write(&mut output, header.as_bytes()).await;
        }
        for stanza in stanzas {
            if !handshaken {
                check_handshake(&stanza, id, secret)?;
                write(&mut output, b"<handshake/>").await;
                handshaken = true;
                seen.lock().unwrap().connections += 1;
                continue;
            }
            if let Some(reply) = answer_ping(&stanza) {
                write(&mut output, reply.as_bytes()).await;
            }
            seen.lock().unwrap().stanzas.push(stanza);
        }
        if reader.is_closed() {
            write(&mut output, b"</stream:stream>").await;
            return Ok(());
        }
    }
}

/// A write error means Herald went away: the read side sees it.
async fn write(output: &mut OwnedWriteHalf, bytes: &[u8]) {
    let _ = output.write_all(bytes).await;
}

fn check_handshake(stanza: &Node, id: &str, secret: &str) -> Result<(), String> {
    if stanza.name != "handshake" {
        return Err(format!("expected the handshake, got {stanza:?}"));
    }
    let expected = Handshake::from_stream_id_and_password(id.to_string(), secret)
        .data
        .expect("a digest");
    let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    if stanza.text.to_ascii_lowercase() != hex {
        return Err(format!("wrong handshake digest {:?}", stanza.text));
    }
    Ok(())
}

/// The server's answer to a ping addressed to it.
fn answer_ping(stanza: &Node) -> Option<String> {
    let is_ping = stanza.name == "iq"
        && stanza.attr("type") == Some("get")
        && stanza.attr("to") == Some(DOMAIN)
        && stanza.children.iter().any(|c| c.is("ping", PING_NS));
    if !is_ping {
        return None;
    }
    let id = stanza.attr("id")?;
    let from = stanza.attr("from")?;
    Some(format!(
        "<iq type='result' id='{}' from='{DOMAIN}' to='{}'/>",
        escape(id),
        escape(from)
    ))
}

/// Escapes text for an XML attribute value in single quotes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}
