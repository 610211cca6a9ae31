//! A fake XMPP server's component listener (XEP-0114) on loopback, for the
//! tests of what Herald does with stanzas no sane server would route but a
//! broken or hostile one might send, and for the load test's measure of
//! Herald with no server in the way.
//!
//! It accepts Herald's streams one after the other, checks the handshake,
//! answers Herald's pings to the server domain (its barriers and keepalives
//! wait for those) and any other IQ request with `service-unavailable`, and
//! counts what Herald writes. It writes whatever bytes a test scripts, and
//! floods or churns presence (`u{i}@<server>/r` to a contact of Herald's).
//! With [`Options::record`], everything Herald writes is also parsed
//! strictly ([`crate::xml::StreamReader`]): the first well-formedness error
//! is kept and ends the connection, and every stanza is recorded for the
//! test. Reading and writing run on two threads of their own, whose CPU
//! time the load test reads ([`FakeServer::thread_ids`]), so it is visible
//! whether the server could have held Herald back.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::amqp::{Amqp, EventTap};
use crate::herald::{Herald, Names, XmppTarget};
use crate::server::{COMPONENT_DOMAIN, DOMAIN, ROSTER_CONTACT};
use crate::xml::Node;

mod connection;
mod scanner;
mod writer;

use writer::{Out, Writer};

/// Who the server pretends to be and whom it lets in.
#[derive(Debug, Clone)]
pub struct Options {
    /// The component's domain, e.g. `broadcast.localhost`.
    pub component_domain: String,
    /// The server's domain: pings to it are answered, users live on it.
    pub server_domain: String,
    /// The JID on the component's domain that flooded users send presence to.
    pub contact: String,
    pub secret: String,
    /// Parse and keep every stanza (tests). Off for the load test, where
    /// the strict parser would cost more CPU than Herald itself.
    pub record: bool,
}

/// What the server has counted so far, over all connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub messages: u64,
    pub presences: u64,
    pub iqs: u64,
    pub pings_answered: u64,
    /// Time of the read that brought the first and the latest message,
    /// since the server started.
    pub first_message: Option<Duration>,
    pub last_message: Option<Duration>,
    /// Time of the read that brought the bytes [`FakeServer::watch`] was
    /// given, since the server started.
    pub watched: Option<Duration>,
    /// Streams that completed the handshake.
    pub connections: u64,
    /// Whether a stream has ended.
    pub closed: bool,
}

/// What a recording server has seen.
#[derive(Debug, Default)]
struct Seen {
    /// Every stanza Herald wrote after its handshake, in order.
    stanzas: Vec<Node>,
    /// The first malformed XML Herald wrote, or a protocol error.
    malformed: Option<String>,
}

struct Shared {
    started: Instant,
    messages: AtomicU64,
    presences: AtomicU64,
    iqs: AtomicU64,
    pings_answered: AtomicU64,
    /// Nanoseconds since `started`, plus one (0: none yet).
    first_message: AtomicU64,
    last_message: AtomicU64,
    /// The bytes to note the arrival of, and when they came (as above).
    watch: Mutex<Option<Vec<u8>>>,
    watched: AtomicU64,
    connections: AtomicU64,
    closed: AtomicBool,
    /// Set on drop: the reader stops accepting.
    stopped: AtomicBool,
    /// The connection being read, to shut it down on drop.
    current: Mutex<Option<TcpStream>>,
    seen: Mutex<Seen>,
    /// Kernel thread ids of the server's threads, for their CPU time.
    threads: Mutex<Vec<u32>>,
}

/// A running fake server. Dropping it closes Herald's connection and ends
/// its threads.
pub struct FakeServer {
    addr: SocketAddr,
    options: Arc<Options>,
    shared: Arc<Shared>,
    commands: Sender<Out>,
}

impl FakeServer {
    /// A recording server for tests: Herald's test domains, a random secret.
    pub fn start() -> FakeServer {
        FakeServer::with(Options {
            component_domain: COMPONENT_DOMAIN.into(),
            server_domain: DOMAIN.into(),
            contact: ROSTER_CONTACT.into(),
            secret: format!("secret-{}", crate::random_hex()),
            record: true,
        })
        .expect("start the fake server")
    }

    /// Listens on a free loopback port; returns at once.
    pub fn with(options: Options) -> io::Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            started: Instant::now(),
            messages: AtomicU64::new(0),
            presences: AtomicU64::new(0),
            iqs: AtomicU64::new(0),
            pings_answered: AtomicU64::new(0),
            first_message: AtomicU64::new(0),
            last_message: AtomicU64::new(0),
            watch: Mutex::new(None),
            watched: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            current: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
            threads: Mutex::new(Vec::new()),
        });
        let options = Arc::new(options);
        let (commands, outgoing) = mpsc::channel();
        let writer = Writer::new(
            outgoing,
            options.server_domain.clone(),
            options.contact.clone(),
        );
        let writer_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("fake-server-write".into())
            .spawn(move || {
                register_thread(&writer_shared);
                writer.run();
            })?;
        let (reader_options, reader_shared) = (Arc::clone(&options), Arc::clone(&shared));
        let replies = commands.clone();
        thread::Builder::new()
            .name("fake-server-read".into())
            .spawn(move || connection::serve(listener, reader_options, reader_shared, replies))?;
        Ok(FakeServer {
            addr,
            options,
            shared,
            commands,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where Herald is to connect.
    pub fn target(&self) -> XmppTarget {
        XmppTarget {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            domain: self.options.component_domain.clone(),
            server_domain: self.options.server_domain.clone(),
            secret: self.options.secret.clone(),
        }
    }

    /// When the server started; [`Counts`] times are relative to it.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    pub fn counts(&self) -> Counts {
        let s = &self.shared;
        let at = |v: &AtomicU64| match v.load(Ordering::Acquire) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        };
        Counts {
            messages: s.messages.load(Ordering::Acquire),
            presences: s.presences.load(Ordering::Acquire),
            iqs: s.iqs.load(Ordering::Acquire),
            pings_answered: s.pings_answered.load(Ordering::Acquire),
            first_message: at(&s.first_message),
            last_message: at(&s.last_message),
            watched: at(&s.watched),
            connections: s.connections.load(Ordering::Acquire),
            closed: s.closed.load(Ordering::Acquire),
        }
    }

    /// Notes when `bytes` (e.g. a message's body) first come on the stream
    /// from now on, in [`Counts::watched`]: how long one message waited
    /// behind the others, read the way the rest is (no stanza is parsed).
    pub fn watch(&self, bytes: &[u8]) {
        self.shared.watched.store(0, Ordering::Release);
        *self.shared.watch.lock().unwrap() = Some(bytes.to_vec());
    }

    /// Writes `xml` to Herald's stream as it is, once the stream is
    /// authenticated.
    pub fn send(&self, xml: impl Into<Vec<u8>>) {
        let _ = self.commands.send(Out::Script(xml.into()));
    }

    /// Sends an available presence from `u{i}@<server>/r` for every `i`.
    pub fn flood(&self, users: Range<u64>) {
        let _ = self.commands.send(Out::Flood(users));
    }

    /// Sends `pairs_per_sec` unavailable/available pairs per second, cycling
    /// over `users`, until [`FakeServer::stop_churn`]. Each pair leaves the
    /// user online, but a job handled between its two halves skips that user.
    pub fn churn(&self, users: Range<u64>, pairs_per_sec: u32) {
        let _ = self.commands.send(Out::Churn {
            users,
            pairs_per_sec,
        });
    }

    pub fn stop_churn(&self) {
        let _ = self.commands.send(Out::StopChurn);
    }

    /// Kernel thread ids of the server's reading and writing threads.
    pub fn thread_ids(&self) -> Vec<u32> {
        self.shared.threads.lock().unwrap().clone()
    }

    /// Streams that completed the handshake so far.
    pub fn connections(&self) -> usize {
        self.counts().connections as usize
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
        self.shared.seen.lock().unwrap().malformed.clone()
    }

    /// Every stanza Herald wrote so far (recording servers only).
    pub fn stanzas(&self) -> Vec<Node> {
        self.shared.seen.lock().unwrap().stanzas.clone()
    }

    /// The first stanza Herald wrote that satisfies `matches`; panics after
    /// `timeout` (or at once if Herald wrote malformed XML).
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Node) -> bool,
    ) -> Node {
        assert!(self.options.record, "only a recording server keeps stanzas");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let seen = self.shared.seen.lock().unwrap();
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

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        if let Some(current) = self.shared.current.lock().unwrap().take() {
            let _ = current.shutdown(Shutdown::Both);
        }
        // Wakes the reader if it waits in accept; it then sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn register_thread(shared: &Shared) {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|path| path.file_name()?.to_str()?.parse().ok());
    if let (Some(tid), Ok(mut threads)) = (tid, shared.threads.lock()) {
        threads.push(tid);
    }
}

/// A recording server with Herald on it (default config), taps on Herald's
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
        let server = FakeServer::start();
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

#[cfg(test)]
mod tests;
