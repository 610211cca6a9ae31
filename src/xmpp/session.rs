//! One XEP-0114 session: TCP connection, stream header, handshake, then a
//! stream of inbound stanzas and a queue of outbound ones.
//!
//! The session owns its outbound queue so that the event loop never awaits
//! a write: [`Session::next`] moves queued stanzas into the socket as far as
//! the socket takes them and returns the next inbound item. Writing is not
//! delivery: see [`crate::core`] for the barrier that tells what the server
//! has actually read.

use std::borrow::Cow;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::BufReader;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, ReadError, StreamElementError, StreamHeader, Timeouts,
    XmppStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;
use xmpp_parsers::component::Handshake;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::ns;

use super::address::ServerAddress;
use super::depth::{Pruned, MAX_DEPTH};
use super::tls::LinkTls;
use super::transport::{Outbound, Shared, Transport};
use super::wire::Outgoing;
use crate::core::InvalidStanza;
use crate::metrics::{SessionMetrics, StanzaCounters};

/// Inbound bytes pass the depth limit before tokio-xmpp parses them.
type Io = BufReader<Pruned<Shared>>;

/// Why connecting failed; callers log it and back off.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the component listener: {0}")]
    Unreachable(String),
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    #[error("TLS with the server failed: {0}")]
    Tls(io::Error),
    #[error("the server refused the handshake: {0}")]
    Refused(String),
}

/// Why an established session ended.
#[derive(Debug, thiserror::Error)]
pub enum Closed {
    #[error("the server closed the stream")]
    ByServer,
    #[error("stream error from the server: {0}")]
    StreamError(String),
    #[error("no data from the server for {0:?}")]
    Silent(Duration),
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
}

/// An inbound stream element the event loop has to act on.
// Stanzas are the hot path and most items are stanzas: boxing them would
// cost an allocation each to shrink the rare variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Inbound {
    Stanza(Stanza),
    /// A stanza that could not be parsed; the stream itself is still fine.
    Invalid(InvalidStanza),
    Closed(Closed),
    /// Not from the server: the outbound queue fell below the mark given
    /// to [`Session::wake_below`].
    Drained,
}

/// As whom to connect, whichever node of the server: the domain, the
/// timeouts and TLS.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub domain: BareJid,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// TLS from the first byte, or plain TCP.
    pub tls: Option<LinkTls>,
}

pub struct Session {
    /// Reads the server's stream; wrote only the header and the handshake.
    stream: XmppStream<Io>,
    outbound: Outbound,
    /// Wake the loop once the outbound queue is shorter than this.
    wake_below: Option<usize>,
    read_timeout: Duration,
    metrics: SessionMetrics,
}

impl Session {
    /// Connects to the component listener at `server` and shakes hands.
    pub async fn connect(
        server: &ServerAddress,
        endpoint: &Endpoint,
        secret: &str,
        metrics: SessionMetrics,
    ) -> Result<Session, ConnectError> {
        tokio::time::timeout(
            endpoint.connect_timeout,
            Self::handshake(server, endpoint, secret, metrics),
        )
        .await
        .map_err(|_| ConnectError::Timeout(endpoint.connect_timeout))?
    }

    async fn handshake(
        server: &ServerAddress,
        endpoint: &Endpoint,
        secret: &str,
        metrics: SessionMetrics,
    ) -> Result<Session, ConnectError> {
        let timeouts = Timeouts {
            read_timeout: endpoint.read_timeout,
            response_timeout: endpoint.read_timeout,
        };
        let socket = DnsConfig::addr(&server.to_string())
            .resolve()
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        // Herald's writes are many small stanzas, and its barrier pings wait
        // for an answer: with Nagle's algorithm each ping could sit behind
        // the server's delayed ACK (tens of milliseconds per round trip).
        socket
            .set_nodelay(true)
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let header = StreamHeader {
            to: Some(Cow::Borrowed(endpoint.domain.as_str())),
            from: None,
            id: None,
        };
        let transport = match &endpoint.tls {
            Some(tls) => Transport::Tls(Box::new(
                tls.connect(socket).await.map_err(ConnectError::Tls)?,
            )),
            None => Transport::Plain(socket),
        };
        let socket = Shared::new(transport);
        let io = BufReader::new(Pruned::new(socket.clone(), MAX_DEPTH));
        let mut pending = initiate_stream(io, ns::COMPONENT, header, timeouts)
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let header = pending.take_header();
        let mut stream: XmppStream<Io> = pending.skip_features();
        let stream_id = header
            .id
            .ok_or_else(|| ConnectError::Refused("stream header without id".into()))?;
        let handshake = Handshake::from_stream_id_and_password(stream_id.into_owned(), secret);
        stream
            .send(&XmppStreamElement::ComponentHandshake(handshake))
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                Ok(Session {
                    stream,
                    outbound: Outbound::new(socket, metrics.unserializable.clone()),
                    wake_below: None,
                    read_timeout: endpoint.read_timeout,
                    metrics,
                })
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                Err(ConnectError::Refused(e.0.to_string()))
            }
            Some(Ok(other)) => Err(ConnectError::Refused(format!("unexpected reply {other:?}"))),
            Some(Err(e)) => Err(ConnectError::Refused(e.to_string())),
            None => Err(ConnectError::Refused("connection closed".into())),
        }
    }

    /// Queues a stanza; it is written while [`Session::next`] is polled.
    pub fn enqueue(&mut self, outgoing: Outgoing) {
        let sent = &self.metrics.sent;
        match &outgoing {
            Outgoing::Stanza(stanza) => count(sent, stanza),
            Outgoing::Message { .. } => sent.message.inc(),
        }
        self.outbound.push(outgoing);
    }

    /// Stanzas queued but not yet handed to the socket.
    pub fn backlog(&self) -> usize {
        self.outbound.backlog()
    }

    /// [`Session::next`] returns [`Inbound::Drained`] once fewer than
    /// `mark` stanzas wait to be written (once: ask again after it).
    pub fn wake_below(&mut self, mark: usize) {
        self.wake_below = Some(mark);
    }

    /// Writes what the socket takes, then waits for the next inbound item.
    /// Cancel-safe: all progress lives in `self`.
    pub async fn next(&mut self) -> Inbound {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Writes everything queued and closes the stream, within `limit`.
    pub async fn close(self, limit: Duration) {
        self.outbound.close(limit).await;
    }

    /// `Drained` once the queue is shorter than [`Session::wake_below`]
    /// asked; else nothing yet (the write wakes the task when it can go on).
    fn poll_drained(&mut self) -> Poll<Inbound> {
        match self.wake_below {
            Some(mark) if self.outbound.backlog() < mark => {
                self.wake_below = None;
                Poll::Ready(Inbound::Drained)
            }
            _ => Poll::Pending,
        }
    }

    /// [`Session::next`], polled by hand.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Inbound> {
        if let Err(e) = self.outbound.poll_write(cx) {
            return Poll::Ready(Inbound::Closed(Closed::Io(e)));
        }
        loop {
            // What the server sent comes before news that the queue drained:
            // a big job's slices refill the queue as fast as a quick server
            // drains it, and answering `Drained` first would leave the
            // server's answers to barriers (and presence) unread until the
            // job ends, holding every other job's completion behind it.
            // The loop goes on fanning out as it handles them: each turn
            // gives the core the room there is.
            let item = match Pin::new(&mut self.stream).poll_next(cx) {
                Poll::Pending => return self.poll_drained(),
                Poll::Ready(item) => item,
            };
            let inbound = match item {
                None | Some(Err(ReadError::StreamFooterReceived)) => {
                    Inbound::Closed(Closed::ByServer)
                }
                Some(Err(ReadError::HardError(e))) => Inbound::Closed(Closed::Io(e)),
                Some(Err(ReadError::SoftTimeout)) => {
                    Inbound::Closed(Closed::Silent(self.read_timeout))
                }
                Some(Err(ReadError::ParseError(e))) => {
                    tracing::warn!(error = %e, "unparseable element from the server ignored");
                    continue;
                }
                Some(Ok(FallibleStreamElement::Ok(element))) => match element {
                    XmppStreamElement::Stanza(stanza) => {
                        count(&self.metrics.received, &stanza);
                        Inbound::Stanza(stanza)
                    }
                    XmppStreamElement::StreamError(e) => {
                        Inbound::Closed(Closed::StreamError(e.0.to_string()))
                    }
                    other => {
                        tracing::debug!(?other, "unexpected stream element ignored");
                        continue;
                    }
                },
                Some(Ok(FallibleStreamElement::Err(StreamElementError::InvalidStanza {
                    name,
                    header,
                    error,
                    ..
                }))) => {
                    self.metrics.received_invalid.inc();
                    Inbound::Invalid(InvalidStanza {
                        kind: name.to_string(),
                        from: header.from,
                        id: header.id,
                        type_: header.type_,
                        error: error.to_string(),
                    })
                }
                Some(Ok(FallibleStreamElement::Err(e))) => {
                    tracing::warn!(error = %e, "invalid element from the server ignored");
                    continue;
                }
            };
            return Poll::Ready(inbound);
        }
    }
}

fn count(counters: &StanzaCounters, stanza: &Stanza) {
    match stanza {
        Stanza::Message(_) => counters.message.inc(),
        Stanza::Presence(_) => counters.presence.inc(),
        Stanza::Iq(_) => counters.iq.inc(),
    }
}

#[cfg(test)]
mod tests;
