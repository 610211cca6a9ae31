//! A lean c2s client on raw bytes: plaintext TCP, SASL PLAIN, resource
//! binding, initial presence; then [`MessageScanner`] finds `<message>`
//! stanzas in the byte stream without building a DOM.
//!
//! Raw bytes rather than tokio-xmpp or xmpp-parsers: thousands of these run
//! in one process beside the publisher and must never be the bottleneck,
//! and in this workspace xmpp-parsers is built with Herald's `component`
//! feature, which puts its stanza types in the component namespace.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one step of the login may wait for the server.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Initial presence of a logged-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// No `<show/>`: available, reached by jobs with the default policy.
    Available,
    /// `<show>away</show>`: online but skipped by the `available` policy.
    Away,
}

/// An authenticated, bound c2s stream that has sent its initial presence.
pub struct Session {
    pub stream: TcpStream,
    /// Bytes read during the login that follow the bind result.
    pub leftover: Vec<u8>,
}

/// The resource every load-test session binds.
pub const RESOURCE: &str = "loadtest";

/// Logs `user@domain` in at `addr` with SASL PLAIN, binds resource
/// [`RESOURCE`] and sends initial presence.
pub async fn log_in(
    addr: &str,
    domain: &str,
    user: &str,
    password: &str,
    show: Show,
) -> Result<Session, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{user}: connect {addr}: {e}"))?;
    stream.set_nodelay(true).ok();
    let mut conn = Handshake {
        stream,
        buf: Vec::with_capacity(4096),
        user,
    };
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
    );
    conn.write(header.as_bytes()).await?;
    conn.read_until(&[b"</stream:features>"]).await?;
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        BASE64.encode(format!("\0{user}\0{password}"))
    );
    conn.write(auth.as_bytes()).await?;
    let (which, _) = conn.read_until(&[b"<success", b"<failure"]).await?;
    if which == 1 {
        return Err(format!("{user}: SASL failure (not provisioned?)"));
    }
    // The rest of <success/> (if any) is skipped by the next search.
    conn.write(header.as_bytes()).await?;
    conn.read_until(&[b"</stream:features>"]).await?;
    let bind = format!(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>{RESOURCE}</resource></bind></iq>"
    );
    conn.write(bind.as_bytes()).await?;
    let (_, reply) = conn.read_until(&[b"</iq>"]).await?;
    if memchr::memmem::find(&reply, b"result").is_none() {
        return Err(format!(
            "{user}: resource binding failed: {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    let presence: &[u8] = match show {
        Show::Available => b"<presence/>",
        Show::Away => b"<presence><show>away</show></presence>",
    };
    conn.write(presence).await?;
    Ok(Session {
        stream: conn.stream,
        leftover: conn.buf,
    })
}

struct Handshake<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    user: &'a str,
}

impl Handshake<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("{}: write: {e}", self.user))
    }

    /// Reads until one of `markers` is in the buffer; returns which one and
    /// the bytes up to its end, which leave the buffer.
    async fn read_until(&mut self, markers: &[&[u8]]) -> Result<(usize, Vec<u8>), String> {
        loop {
            let found = markers
                .iter()
                .enumerate()
                .filter_map(|(i, m)| memchr::memmem::find(&self.buf, m).map(|at| (at + m.len(), i)))
                .min();
            if let Some((end, which)) = found {
                let consumed = self.buf.drain(..end).collect();
                return Ok((which, consumed));
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(STEP_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .map_err(|_| format!("{}: no answer within {STEP_TIMEOUT:?}", self.user))?
                .map_err(|e| format!("{}: read: {e}", self.user))?;
            if n == 0 {
                return Err(format!(
                    "{}: server closed the connection during login: {}",
                    self.user,
                    String::from_utf8_lossy(&self.buf)
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Finds complete `<message ...>...</message>` stanzas in a byte stream fed
/// in arbitrary chunks, and hands each to a callback. Everything else
/// (presence, iq) is skipped unparsed.
#[derive(Default)]
pub struct MessageScanner {
    pending: Vec<u8>,
}

const OPEN: &[u8] = b"<message";
const CLOSE: &[u8] = b"</message>";

impl MessageScanner {
    pub fn feed(&mut self, data: &[u8], mut on_message: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        let mut pos = 0;
        loop {
            let Some(start) = memchr::memmem::find(&self.pending[pos..], OPEN).map(|i| pos + i)
            else {
                // Keep a tail that may be the start of a split "<message".
                pos = pos.max(self.pending.len().saturating_sub(OPEN.len() - 1));
                break;
            };
            let Some(end) = memchr::memmem::find(&self.pending[start..], CLOSE)
                .map(|i| start + i + CLOSE.len())
            else {
                pos = start;
                break;
            };
            on_message(&self.pending[start..end]);
            pos = end;
        }
        self.pending.drain(..pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_chunks(stream: &[u8], chunk: usize) -> Vec<String> {
        let mut scanner = MessageScanner::default();
        let mut found = Vec::new();
        for piece in stream.chunks(chunk) {
            scanner.feed(piece, |m| {
                found.push(String::from_utf8_lossy(m).into_owned())
            });
        }
        found
    }

    #[test]
    fn finds_messages_across_any_chunking() {
        let stream = b"<presence from='herald@broadcast.localhost'/>\
            <message to='u1@localhost'><body>herald-loadtest #1</body></message>\
            <iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>\
            <message to='u1@localhost'><body>herald-loadtest #2</body></message>";
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let found = scan_in_chunks(stream, chunk);
            assert_eq!(found.len(), 2, "chunk size {chunk}");
            assert!(found[0].starts_with("<message") && found[0].ends_with("</message>"));
            assert!(found[1].contains("#2"));
        }
    }

    #[test]
    fn keeps_no_more_than_a_marker_tail_between_stanzas() {
        let mut scanner = MessageScanner::default();
        scanner.feed(&[b'x'; 10_000], |_| panic!("no message here"));
        assert!(scanner.pending.len() < OPEN.len());
    }
}
