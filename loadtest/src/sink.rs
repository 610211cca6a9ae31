//! A stand-in for an XMPP server's component listener (XEP-0114) on
//! loopback, to measure Herald with no server in the way.
//!
//! It accepts one component connection, checks the handshake
//! (`sha1(stream id + secret)`), then reads Herald's stream with a streaming
//! byte scanner that only tracks element depth: it counts top-level stanzas
//! by kind, answers every IQ get ping addressed to the server domain with a
//! result at once (Herald's barriers and keepalives wait for those answers)
//! and any other IQ request with `service-unavailable`. Presence probes get
//! no answer: every user the sink knows is flooded in with an explicit
//! available presence anyway.
//!
//! It can write a presence flood into Herald (`u{i}@<server>/r` available to
//! Herald's contact JID) and a churn of unavailable/available pairs at a set
//! rate. Reading and writing run on two threads of their own, whose CPU time
//! [`Sink::cpu_seconds`] reports, so it is visible whether the sink could
//! have held Herald back.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::procstat;

/// Who the sink pretends to be and whom it lets in.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The component's domain, e.g. `broadcast.localhost`.
    pub component_domain: String,
    /// The server's domain: pings to it are answered, users live on it.
    pub server_domain: String,
    /// The JID on the component's domain that flooded users send presence to.
    pub contact: String,
    pub secret: String,
}

/// What the sink has seen so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub messages: u64,
    pub presences: u64,
    pub iqs: u64,
    pub pings_answered: u64,
    /// Time of the read that brought the first and the latest message,
    /// since the sink started.
    pub first_message: Option<Duration>,
    pub last_message: Option<Duration>,
    pub authenticated: bool,
    pub closed: bool,
}

/// A running sink; its threads end when Herald's connection closes.
pub struct Sink {
    addr: SocketAddr,
    started: Instant,
    shared: Arc<Shared>,
    commands: Sender<Out>,
}

#[derive(Default)]
struct Shared {
    messages: AtomicU64,
    presences: AtomicU64,
    iqs: AtomicU64,
    pings_answered: AtomicU64,
    /// Nanoseconds since `started`, plus one (0: none yet).
    first_message: AtomicU64,
    last_message: AtomicU64,
    authenticated: AtomicBool,
    closed: AtomicBool,
    /// Kernel thread ids of the sink's threads, for their CPU time.
    threads: Mutex<Vec<u32>>,
}

/// What the writer thread puts on the wire.
enum Out {
    Bytes(Vec<u8>),
    Flood(Range<u64>),
    Churn {
        users: Range<u64>,
        pairs_per_sec: u32,
    },
    StopChurn,
}

impl Sink {
    /// Listens on an ephemeral loopback port; returns at once.
    pub fn start(options: SinkOptions) -> io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let started = Instant::now();
        let shared = Arc::new(Shared::default());
        let (commands, outgoing) = mpsc::channel();
        let accept = Connection {
            options: Arc::new(options),
            shared: Arc::clone(&shared),
            started,
            writer: commands.clone(),
        };
        thread::Builder::new()
            .name("sink-read".into())
            .spawn(move || accept.serve(listener, outgoing))?;
        Ok(Sink {
            addr,
            started,
            shared,
            commands,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// When the sink started; [`Counts`] times are relative to it.
    pub fn started(&self) -> Instant {
        self.started
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
            authenticated: s.authenticated.load(Ordering::Acquire),
            closed: s.closed.load(Ordering::Acquire),
        }
    }

    /// Sends an available presence from `u{i}@<server>/r` for every `i`.
    pub fn flood(&self, users: Range<u64>) {
        let _ = self.commands.send(Out::Flood(users));
    }

    /// Sends `pairs_per_sec` unavailable/available pairs per second, cycling
    /// over `users`, until [`Sink::stop_churn`]. Each pair leaves the user
    /// online, but a job handled between its two halves skips that user.
    pub fn churn(&self, users: Range<u64>, pairs_per_sec: u32) {
        let _ = self.commands.send(Out::Churn {
            users,
            pairs_per_sec,
        });
    }

    pub fn stop_churn(&self) {
        let _ = self.commands.send(Out::StopChurn);
    }

    /// CPU seconds (user + system) the sink's threads have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let threads = self
            .shared
            .threads
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        threads
            .iter()
            .filter_map(|tid| procstat::stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat")))
            .sum()
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

/// The reading side of the one connection the sink serves.
struct Connection {
    options: Arc<SinkOptions>,
    shared: Arc<Shared>,
    started: Instant,
    writer: Sender<Out>,
}

impl Connection {
    fn serve(self, listener: TcpListener, outgoing: Receiver<Out>) {
        register_thread(&self.shared);
        let Ok((stream, _)) = listener.accept() else {
            self.shared.closed.store(true, Ordering::Release);
            return;
        };
        drop(listener);
        let _ = stream.set_nodelay(true);
        let write_half = match stream.try_clone() {
            Ok(s) => s,
            Err(_) => {
                self.shared.closed.store(true, Ordering::Release);
                return;
            }
        };
        let writer = Writer {
            stream: write_half,
            options: Arc::clone(&self.options),
            commands: outgoing,
            churn: None,
        };
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new()
            .name("sink-write".into())
            .spawn(move || {
                register_thread(&shared);
                writer.run();
            });
        if spawned.is_ok() {
            self.read(stream);
        }
        self.shared.closed.store(true, Ordering::Release);
    }

    fn read(&self, mut stream: TcpStream) {
        let stream_id = format!(
            "sink-{:x}-{:x}",
            std::process::id(),
            self.started.elapsed().as_nanos()
        );
        let mut scanner = Scanner::default();
        let mut buf = vec![0u8; 256 * 1024];
        let mut tally = Tally::default();
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut stop = false;
            scanner.feed(&buf[..n], &mut |event| match event {
                Event::StreamOpened => self.send(format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
                     xmlns:stream='http://etherx.jabber.org/streams' from='{}' id='{stream_id}'>",
                    self.options.component_domain
                )),
                Event::Stanza(Kind::Message, _) => tally.messages += 1,
                Event::Stanza(Kind::Presence, _) => tally.presences += 1,
                Event::Stanza(Kind::Iq, stanza) => {
                    tally.iqs += 1;
                    if self.on_iq(stanza) {
                        tally.pings_answered += 1;
                    }
                }
                Event::Stanza(Kind::Handshake, stanza) => {
                    if !self.on_handshake(&stream_id, stanza) {
                        stop = true;
                    }
                }
                Event::Stanza(Kind::Other, _) => {}
                Event::StreamClosed => {
                    self.send("</stream:stream>".into());
                    stop = true;
                }
            });
            self.publish(&mut tally);
            if stop {
                return;
            }
        }
    }

    fn send(&self, text: String) {
        let _ = self.writer.send(Out::Bytes(text.into_bytes()));
    }

    /// Adds what one read brought to the shared counts.
    fn publish(&self, tally: &mut Tally) {
        let s = &self.shared;
        if tally.messages > 0 {
            let now = self.started.elapsed().as_nanos() as u64 + 1;
            let _ = s
                .first_message
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
            s.last_message.store(now, Ordering::Release);
            s.messages.fetch_add(tally.messages, Ordering::AcqRel);
        }
        s.presences.fetch_add(tally.presences, Ordering::AcqRel);
        s.iqs.fetch_add(tally.iqs, Ordering::AcqRel);
        s.pings_answered
            .fetch_add(tally.pings_answered, Ordering::AcqRel);
        *tally = Tally::default();
    }

    fn on_handshake(&self, stream_id: &str, stanza: &[u8]) -> bool {
        let text = String::from_utf8_lossy(stanza);
        let given = text
            .split_once('>')
            .and_then(|(_, rest)| rest.rsplit_once('<'))
            .map(|(digest, _)| digest.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let mut hasher = Sha1::new();
        hasher.update(stream_id.as_bytes());
        hasher.update(self.options.secret.as_bytes());
        let expected = hasher.finalize().iter().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        });
        if given == expected {
            self.send("<handshake/>".into());
            self.shared.authenticated.store(true, Ordering::Release);
            true
        } else {
            self.send(
                "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                 </stream:error></stream:stream>"
                    .into(),
            );
            false
        }
    }

    /// Answers IQ requests; true if it was a ping to the server.
    fn on_iq(&self, stanza: &[u8]) -> bool {
        let head = start_tag(stanza);
        let type_ = attribute(head, "type").unwrap_or("");
        if type_ != "get" && type_ != "set" {
            return false;
        }
        let id = attribute(head, "id").unwrap_or("");
        let from = attribute(head, "from").unwrap_or("");
        let to = attribute(head, "to").unwrap_or("");
        let is_ping = type_ == "get" && contains(stanza, b"urn:xmpp:ping");
        if is_ping && to == self.options.server_domain {
            self.send(format!(
                "<iq type='result' id='{id}' from='{to}' to='{from}'/>"
            ));
            true
        } else {
            self.send(format!(
                "<iq type='error' id='{id}' from='{to}' to='{from}'><error type='cancel'>\
                 <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ));
            false
        }
    }
}

#[derive(Default)]
struct Tally {
    messages: u64,
    presences: u64,
    iqs: u64,
    pings_answered: u64,
}

/// The writing side: answers from the reader, floods and churn.
struct Writer {
    stream: TcpStream,
    options: Arc<SinkOptions>,
    commands: Receiver<Out>,
    churn: Option<Churn>,
}

struct Churn {
    users: Range<u64>,
    next: u64,
    pairs_per_sec: u32,
    started: Instant,
    sent: u64,
}

/// Bytes of presence written at a time, so answers never wait long behind a flood.
const FLOOD_CHUNK: usize = 64 * 1024;
const CHURN_TICK: Duration = Duration::from_millis(10);

impl Writer {
    fn run(mut self) {
        loop {
            let command = if self.churn.is_some() {
                match self.commands.recv_timeout(CHURN_TICK) {
                    Ok(command) => Some(command),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match self.commands.recv() {
                    Ok(command) => Some(command),
                    Err(_) => return,
                }
            };
            let written = match command {
                Some(command) => self.apply(command),
                None => Ok(()),
            };
            if written.and_then(|()| self.churn_due()).is_err() {
                return;
            }
        }
    }

    fn apply(&mut self, command: Out) -> io::Result<()> {
        match command {
            Out::Bytes(bytes) => self.stream.write_all(&bytes),
            Out::Flood(users) => self.flood(users),
            Out::Churn {
                users,
                pairs_per_sec,
            } => {
                let next = users.start;
                self.churn = Some(Churn {
                    users,
                    next,
                    pairs_per_sec,
                    started: Instant::now(),
                    sent: 0,
                });
                Ok(())
            }
            Out::StopChurn => {
                self.churn = None;
                Ok(())
            }
        }
    }

    fn flood(&mut self, users: Range<u64>) -> io::Result<()> {
        let mut chunk = String::with_capacity(FLOOD_CHUNK + 256);
        for i in users {
            self.presence(&mut chunk, i, false);
            if chunk.len() >= FLOOD_CHUNK {
                self.stream.write_all(chunk.as_bytes())?;
                chunk.clear();
                self.answers_now()?;
            }
        }
        self.stream.write_all(chunk.as_bytes())
    }

    /// Writes queued answers (pongs) between flood chunks.
    fn answers_now(&mut self) -> io::Result<()> {
        let mut deferred = Vec::new();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Out::Bytes(bytes) => self.stream.write_all(&bytes)?,
                other => deferred.push(other),
            }
        }
        for command in deferred {
            self.apply(command)?;
        }
        Ok(())
    }

    fn churn_due(&mut self) -> io::Result<()> {
        let Some(churn) = &mut self.churn else {
            return Ok(());
        };
        let due = (churn.started.elapsed().as_secs_f64() * f64::from(churn.pairs_per_sec)) as u64;
        let mut chunk = String::new();
        let mut picks = Vec::new();
        while churn.sent < due && !churn.users.is_empty() {
            picks.push(churn.next);
            churn.next += 1;
            if churn.next >= churn.users.end {
                churn.next = churn.users.start;
            }
            churn.sent += 1;
        }
        for i in picks {
            self.presence(&mut chunk, i, true);
            self.presence(&mut chunk, i, false);
        }
        self.stream.write_all(chunk.as_bytes())
    }

    fn presence(&self, out: &mut String, user: u64, unavailable: bool) {
        let kind = if unavailable {
            " type='unavailable'"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<presence{kind} from='u{user}@{}/r' to='{}'/>",
            self.options.server_domain, self.options.contact
        );
    }
}

/// Kinds of top-level elements in a component stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Presence,
    Iq,
    Handshake,
    Other,
}

#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    StreamOpened,
    /// A complete top-level element; the bytes are given only for IQs and
    /// the handshake (the sink does not copy messages).
    Stanza(Kind, &'a [u8]),
    StreamClosed,
}

/// A streaming XML scanner that tracks only element depth: enough to split
/// a component stream into stanzas. It relies on what XML writers emit
/// (text never holds a raw `<`, attribute values are quoted) and ignores
/// declarations, comments and processing instructions.
#[derive(Default)]
struct Scanner {
    /// Bytes of a tag cut by the end of the last read.
    partial: Vec<u8>,
    depth: u32,
    kind: Option<Kind>,
    capture: Vec<u8>,
}

impl Scanner {
    fn feed(&mut self, data: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if self.partial.is_empty() {
            let rest = self.scan(data, on_event);
            self.partial.extend_from_slice(&data[rest..]);
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(data);
            let rest = self.scan(&joined, on_event);
            joined.drain(..rest);
            self.partial = joined;
        }
    }

    /// Handles every complete tag in `data`; returns where the incomplete rest starts.
    fn scan(&mut self, data: &[u8], on_event: &mut impl FnMut(Event<'_>)) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            let Some(lt) = data[pos..].iter().position(|&b| b == b'<') else {
                self.text(&data[pos..]);
                return data.len();
            };
            self.text(&data[pos..pos + lt]);
            let start = pos + lt;
            let Some(len) = tag_len(&data[start..]) else {
                return start;
            };
            self.tag(&data[start..start + len], on_event);
            pos = start + len;
        }
        pos
    }

    fn text(&mut self, text: &[u8]) {
        if self.capturing() {
            self.capture.extend_from_slice(text);
        }
    }

    fn capturing(&self) -> bool {
        matches!(self.kind, Some(Kind::Iq | Kind::Handshake))
    }

    fn tag(&mut self, tag: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        match tag.get(1) {
            Some(b'?' | b'!') => {}
            Some(b'/') => {
                if self.capturing() {
                    self.capture.extend_from_slice(tag);
                }
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    0 => on_event(Event::StreamClosed),
                    1 => self.end_stanza(on_event),
                    _ => {}
                }
            }
            _ => {
                let self_closing = tag.len() >= 3 && tag[tag.len() - 2] == b'/';
                match self.depth {
                    0 => {
                        self.depth = 1;
                        on_event(Event::StreamOpened);
                    }
                    1 => {
                        let name_end = tag[1..]
                            .iter()
                            .position(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'>'))
                            .map_or(tag.len(), |i| i + 1);
                        self.kind = Some(match &tag[1..name_end] {
                            b"message" => Kind::Message,
                            b"presence" => Kind::Presence,
                            b"iq" => Kind::Iq,
                            b"handshake" => Kind::Handshake,
                            _ => Kind::Other,
                        });
                        self.capture.clear();
                        if self.capturing() {
                            self.capture.extend_from_slice(tag);
                        }
                        if self_closing {
                            self.end_stanza(on_event);
                        } else {
                            self.depth = 2;
                        }
                    }
                    _ => {
                        if self.capturing() {
                            self.capture.extend_from_slice(tag);
                        }
                        if !self_closing {
                            self.depth += 1;
                        }
                    }
                }
            }
        }
    }

    fn end_stanza(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        if let Some(kind) = self.kind.take() {
            on_event(Event::Stanza(kind, &self.capture));
        }
    }
}

/// Length of the tag starting at `data[0] == b'<'`, if it is complete.
fn tag_len(data: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in data.iter().enumerate().skip(1) {
        match (quote, b) {
            (None, b'>') => return Some(i + 1),
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            _ => {}
        }
    }
    None
}

/// The start tag of a captured element.
fn start_tag(element: &[u8]) -> &[u8] {
    tag_len(element).map_or(element, |len| &element[..len])
}

/// The raw (still escaped) value of attribute `name` in a start tag.
fn attribute<'a>(tag: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(tag).ok()?;
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        rest = after;
        if !matches!(before, Some(' ' | '\t' | '\n' | '\r')) {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let quote = value.chars().next()?;
        if quote != '\'' && quote != '"' {
            continue;
        }
        let end = value[1..].find(quote)?;
        return Some(&value[1..1 + end]);
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<String> {
        let mut scanner = Scanner::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk.as_bytes(), &mut |event| {
                seen.push(match event {
                    Event::StreamOpened => "open".to_string(),
                    Event::StreamClosed => "close".to_string(),
                    Event::Stanza(kind, bytes) => {
                        format!("{kind:?}:{}", String::from_utf8_lossy(bytes))
                    }
                })
            });
        }
        seen
    }

    #[test]
    fn splits_a_component_stream_into_stanzas_across_reads() {
        let stream = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             to='broadcast.localhost'><handshake>ab12</handshake>\
             <message to='u1@localhost' type='chat'><body>a &lt; b &gt; c</body></message>\
             <presence to='u1@localhost' type='probe'/>\
             <iq type='get' id='p&apos;1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>\
             </stream:stream>";
        let whole = events(&[stream]);
        assert_eq!(
            whole,
            [
                "open",
                "Handshake:<handshake>ab12</handshake>",
                "Message:",
                "Presence:",
                "Iq:<iq type='get' id='p&apos;1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
                "close",
            ]
        );
        // Cut at every byte: the scanner must give the same events.
        for cut in 1..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(events(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_quoted_greater_than_does_not_end_a_tag() {
        let seen = events(&["<s><message to='a>b'><body>x</body></message></s>"]);
        assert_eq!(seen, ["open", "Message:", "close"]);
    }

    #[test]
    fn reads_attributes_by_exact_name() {
        let tag = b"<iq xml:id='no' id='p1' to=\"localhost\" type='get'>";
        assert_eq!(attribute(tag, "id"), Some("p1"));
        assert_eq!(attribute(tag, "to"), Some("localhost"));
        assert_eq!(attribute(tag, "type"), Some("get"));
        assert_eq!(attribute(tag, "from"), None);
    }
}
