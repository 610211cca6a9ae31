//! The fake server's reading side, on a thread of its own: accepts Herald's
//! connections one at a time (a real server allows one stream per component
//! domain), opens the stream, checks the handshake (`sha1(stream id +
//! secret)`), answers IQ requests, counts stanzas and, when recording,
//! parses everything Herald writes strictly.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use xmpp_parsers::component::Handshake;

use super::scanner::{attribute, contains, start_tag, Event, Kind, Scanner};
use super::writer::Out;
use super::{register_thread, Options, Shared};
use crate::xml::StreamReader;

/// Serves connections until the server is dropped.
pub(super) fn serve(
    listener: TcpListener,
    options: Arc<Options>,
    shared: Arc<Shared>,
    writer: Sender<Out>,
) {
    register_thread(&shared);
    let mut number = 0;
    for socket in listener.incoming() {
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let Ok(socket) = socket else { continue };
        let (Ok(write_half), Ok(handle)) = (socket.try_clone(), socket.try_clone()) else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        *shared.current.lock().unwrap() = Some(handle);
        if writer.send(Out::Connected(write_half)).is_err() {
            return;
        }
        number += 1;
        let connection = Connection {
            options: &options,
            shared: &shared,
            writer: &writer,
            stream_id: format!("fake-{number}"),
        };
        if let Err(error) = connection.read(socket) {
            shared.seen.lock().unwrap().malformed.get_or_insert(error);
        }
        shared.current.lock().unwrap().take();
        shared.closed.store(true, Ordering::Release);
        // The writer closes the connection once it has written the answers.
        let _ = writer.send(Out::Disconnected);
    }
}

struct Connection<'a> {
    options: &'a Options,
    shared: &'a Shared,
    writer: &'a Sender<Out>,
    stream_id: String,
}

/// What one read brought, added to the shared counts at once.
#[derive(Default)]
struct Tally {
    messages: u64,
    presences: u64,
    iqs: u64,
    pings_answered: u64,
}

impl Connection<'_> {
    /// Reads one stream until Herald closes it. `Err` for malformed XML (when
    /// recording) or a wrong handshake.
    fn read(&self, mut socket: TcpStream) -> Result<(), String> {
        let mut scanner = Scanner::default();
        let mut strict = self.options.record.then(StreamReader::default);
        let mut handshake_seen = false;
        let mut buf = vec![0u8; 256 * 1024];
        let mut tally = Tally::default();
        // The end of the last read, where watched bytes may have begun.
        let mut tail = Vec::new();
        loop {
            let n = match socket.read(&mut buf) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => n,
            };
            if let Some(strict) = &mut strict {
                let stanzas = strict.feed(&buf[..n], false)?;
                let mut seen = self.shared.seen.lock().unwrap();
                for stanza in stanzas {
                    // The handshake is the stream's, not a stanza Herald sends.
                    if !handshake_seen && stanza.name == "handshake" {
                        handshake_seen = true;
                    } else {
                        seen.stanzas.push(stanza);
                    }
                }
            }
            self.look_for_watched(&mut tail, &buf[..n]);
            let mut outcome = Ok(true);
            scanner.feed(&buf[..n], &mut |event| {
                if matches!(outcome, Ok(true)) {
                    outcome = self.on_event(event, &mut tally);
                }
            });
            self.publish(&mut tally);
            if !outcome? {
                return Ok(());
            }
        }
    }

    /// Whether to go on reading.
    fn on_event(&self, event: Event<'_>, tally: &mut Tally) -> Result<bool, String> {
        match event {
            Event::StreamOpened => self.reply(format!(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
                 xmlns:stream='http://etherx.jabber.org/streams' from='{}' id='{}'>",
                self.options.component_domain, self.stream_id
            )),
            Event::Stanza(Kind::Message, _) => tally.messages += 1,
            Event::Stanza(Kind::Presence, _) => tally.presences += 1,
            Event::Stanza(Kind::Iq, stanza) => {
                tally.iqs += 1;
                if self.on_iq(stanza) {
                    tally.pings_answered += 1;
                }
            }
            Event::Stanza(Kind::Handshake, stanza) => self.on_handshake(stanza)?,
            Event::Stanza(Kind::Other, _) => {}
            Event::StreamClosed => {
                self.reply("</stream:stream>".into());
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn reply(&self, text: String) {
        let _ = self.writer.send(Out::Reply(text.into_bytes()));
    }

    /// Notes the time if the watched bytes are in this read (or begin in
    /// the last one's `tail`).
    fn look_for_watched(&self, tail: &mut Vec<u8>, read: &[u8]) {
        let s = self.shared;
        let watch = s.watch.lock().unwrap();
        let Some(pattern) = watch.as_deref() else {
            return;
        };
        if s.watched.load(Ordering::Acquire) != 0 || pattern.is_empty() {
            return;
        }
        let keep = pattern.len() - 1;
        tail.extend_from_slice(&read[..read.len().min(keep)]);
        let found = memchr::memmem::find(tail, pattern).is_some()
            || memchr::memmem::find(read, pattern).is_some();
        if found {
            let now = s.started.elapsed().as_nanos() as u64 + 1;
            s.watched.store(now, Ordering::Release);
        }
        tail.clear();
        tail.extend_from_slice(&read[read.len().saturating_sub(keep)..]);
    }

    /// Adds what one read brought to the shared counts.
    fn publish(&self, tally: &mut Tally) {
        let s = self.shared;
        if tally.messages > 0 {
            let now = s.started.elapsed().as_nanos() as u64 + 1;
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

    fn on_handshake(&self, stanza: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(stanza);
        let given = text
            .split_once('>')
            .and_then(|(_, rest)| rest.rsplit_once('<'))
            .map(|(digest, _)| digest.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let expected: String =
            Handshake::from_stream_id_and_password(self.stream_id.clone(), &self.options.secret)
                .data
                .unwrap_or_default()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        if given != expected {
            self.reply(
                "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                 </stream:error></stream:stream>"
                    .into(),
            );
            return Err(format!("wrong handshake digest {given:?}"));
        }
        self.reply("<handshake/>".into());
        let _ = self.writer.send(Out::Authenticated);
        self.shared.connections.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Answers IQ requests: a ping to the server with a result, anything
    /// else with `service-unavailable`. True if it was a ping.
    fn on_iq(&self, stanza: &[u8]) -> bool {
        let head = start_tag(stanza);
        let type_ = attribute(head, "type").unwrap_or("");
        if type_ != "get" && type_ != "set" {
            return false;
        }
        // Attribute values stay escaped, as they are written back.
        let id = attribute(head, "id").unwrap_or("");
        let from = attribute(head, "from").unwrap_or("");
        let to = attribute(head, "to").unwrap_or("");
        let is_ping = type_ == "get" && contains(stanza, b"urn:xmpp:ping");
        if is_ping && to == self.options.server_domain {
            self.reply(format!(
                "<iq type='result' id='{id}' from='{to}' to='{from}'/>"
            ));
            true
        } else {
            self.reply(format!(
                "<iq type='error' id='{id}' from='{to}' to='{from}'><error type='cancel'>\
                 <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ));
            false
        }
    }
}
