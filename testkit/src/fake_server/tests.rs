//! The fake server against a hand-written component: handshake, ping,
//! counting and recording, presence flood, a second stream.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use xmpp_parsers::component::Handshake;

use super::*;

/// A hand-written component's connection to the fake server.
struct Peer {
    stream: TcpStream,
    /// Read but not yet looked for.
    unread: String,
}

impl Peer {
    fn connect(server: &FakeServer) -> Peer {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Peer {
            stream,
            unread: String::new(),
        }
    }

    fn write(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).unwrap();
    }

    /// What arrived up to the end of `marker`; what follows stays unread.
    fn until(&mut self, marker: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = self.unread.find(marker) {
                let rest = self.unread.split_off(at + marker.len());
                return std::mem::replace(&mut self.unread, rest);
            }
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) => panic!("no {marker:?} ({e}); unread: {}", self.unread),
            };
            assert!(n > 0, "closed before {marker:?}; unread: {}", self.unread);
            self.unread
                .push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
    }
}

const HEADER: &str = "<stream:stream xmlns='jabber:component:accept' \
                      xmlns:stream='http://etherx.jabber.org/streams' to='broadcast.localhost'>";

/// Opens a component stream and authenticates as `stream_id` expects.
fn authenticate(server: &FakeServer, stream_id: &str) -> Peer {
    let mut peer = Peer::connect(server);
    peer.write(HEADER);
    peer.until(&format!("id='{stream_id}'>"));
    let secret = server.target().secret;
    let digest: String = Handshake::from_stream_id_and_password(stream_id.into(), &secret)
        .data
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    peer.write(&format!("<handshake>{digest}</handshake>"));
    peer.until("<handshake/>");
    peer
}

#[test]
fn answers_counts_records_and_floods() {
    let server = FakeServer::start();
    server.send("<message from='a@localhost/r' to='herald@broadcast.localhost'/>");
    let mut peer = authenticate(&server, "fake-1");
    // Scripted before the handshake: written once the stream is authenticated.
    peer.until("from='a@localhost/r'");
    peer.write(
        "<iq type='get' id='p1' from='broadcast.localhost' to='localhost'>\
         <ping xmlns='urn:xmpp:ping'/></iq>\
         <message to='u1@localhost/r'><body>hi</body></message>",
    );
    let pong = peer.until("id='p1'");
    assert!(pong.contains("type='result'"), "{pong}");
    server.flood(0..3);
    peer.until("from='u2@localhost/r'");

    // Counted after the answers go out: wait for the reading thread.
    let counted = |c: Counts| (c.messages, c.iqs, c.pings_answered) == (1, 1, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !counted(server.counts()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let counts = server.counts();
    assert!(counted(counts), "{counts:?}");
    assert_eq!(counts.connections, 1);
    let names: Vec<_> = server.stanzas().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["iq", "message"]);
    assert_eq!(server.malformed(), None);
    assert_eq!(server.thread_ids().len(), 2);
}

#[test]
fn a_wrong_handshake_is_refused_and_a_second_stream_is_served() {
    let server = FakeServer::start();
    let mut refused = Peer::connect(&server);
    refused.write(HEADER);
    refused.write("<handshake>00</handshake>");
    refused.until("not-authorized");
    drop(refused);
    let mut second = authenticate(&server, "fake-2");
    second.write("</stream:stream>");
    second.until("</stream:stream>");
    assert_eq!(server.connections(), 1);
    assert!(server.malformed().is_some_and(|e| e.contains("handshake")));
    assert!(server.counts().closed);
}

#[test]
fn watched_bytes_are_noted_when_they_come_even_split_between_reads() {
    let server = FakeServer::start();
    let mut peer = authenticate(&server, "fake-1");
    server.watch(b"urgent-7f3a");
    let ping = |id: &str| {
        format!(
            "<iq type='get' id='{id}' from='broadcast.localhost' to='localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq>"
        )
    };
    peer.write(&format!(
        "<message to='u1@localhost/r'><body>urgent-7f3</body></message>{}",
        ping("p1")
    ));
    peer.until("id='p1'");
    assert_eq!(server.counts().watched, None, "a prefix is not the bytes");
    // The bytes cut in two by separate writes (and so separate reads).
    peer.write("<message to='u1@localhost/r'><body>urgent-7");
    std::thread::sleep(Duration::from_millis(50));
    peer.write(&format!("f3a</body></message>{}", ping("p2")));
    peer.until("id='p2'");
    let watched = server
        .counts()
        .watched
        .expect("the watched bytes were noted");
    assert!(watched <= server.started().elapsed());
}
