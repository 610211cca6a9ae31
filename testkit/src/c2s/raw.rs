//! The client's raw mode: after [`super::establish`] and an initial
//! presence, the stream is plain bytes, and [`MessageScanner`] finds
//! `<message>` stanzas in them without building a DOM. The load test runs
//! thousands of these beside the publisher; parsing every stanza would make
//! the receivers, not the component, the bottleneck on a small machine.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::establish;

/// The resource every raw session binds.
pub const RESOURCE: &str = "loadtest";

/// How long the whole login may take: logins queue behind each other when
/// thousands of users log in at once.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Initial presence of a logged-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// No `<show/>`: available, reached by jobs with the default policy.
    Available,
    /// `<show>away</show>`: online but skipped by the `available` policy.
    Away,
}

/// Logs `user@domain` in at `addr`, binds [`RESOURCE`], sends initial
/// presence and returns the stream as bytes. Nothing is lost in the switch
/// to bytes: the server sends nothing unasked between the bind result and
/// the initial presence, so the XML layer holds nothing unread.
pub async fn log_in(
    addr: &str,
    domain: &str,
    user: &str,
    password: &str,
    show: Show,
) -> Result<BufStream<TcpStream>, String> {
    let login = establish(addr, domain, user, password, RESOURCE);
    let (stream, _jid) = tokio::time::timeout(LOGIN_TIMEOUT, login)
        .await
        .map_err(|_| format!("{user}: no login within {LOGIN_TIMEOUT:?}"))?
        .map_err(|e| format!("{user}: {e}"))?;
    let mut stream = stream.into_inner();
    let presence: &[u8] = match show {
        Show::Available => b"<presence/>",
        Show::Away => b"<presence><show>away</show></presence>",
    };
    stream
        .write_all(presence)
        .await
        .map_err(|e| format!("{user}: write: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("{user}: write: {e}"))?;
    Ok(stream)
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
