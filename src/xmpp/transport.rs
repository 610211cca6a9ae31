//! The component link's bytes: plain TCP or TLS over it, shared between
//! tokio-xmpp's XML stream, which reads (and writes the stream header and
//! the handshake), and Herald's [`Outbound`] writer, which writes every
//! stanza after the handshake with [`StanzaEncoder`]: a broadcast message
//! costs a few hundred instructions that way instead of some 20,000.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use super::wire::{Outgoing, StanzaEncoder};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Bytes serialized ahead of what the socket has taken, at most (plus one
/// stanza): enough for a socket write to fill the kernel's buffer.
const AHEAD: usize = 64 * 1024;

/// The component link's byte stream: plain TCP, or TLS over it.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One transport for the stream's reader and the session's writer. They
/// take turns on one thread; the lock is never contended.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Transport>>);

impl Shared {
    pub fn new(transport: Transport) -> Shared {
        Shared(Arc::new(Mutex::new(transport)))
    }

    fn lock(&self) -> MutexGuard<'_, Transport> {
        // A panic while holding it leaves nothing half-done that matters:
        // the transport is still a socket.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Transport::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut *self.lock() {
            Transport::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Transport::Plain(socket) => Pin::new(socket).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            Transport::Plain(socket) => Pin::new(socket).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Stanzas waiting for the socket, serialized as it takes them.
pub struct Outbound {
    socket: Shared,
    queue: VecDeque<Outgoing>,
    encoder: StanzaEncoder,
    /// Serialized bytes; those before `taken` are in the socket.
    wire: Vec<u8>,
    taken: usize,
    unflushed: bool,
    /// Stanzas that could not be serialized (dropped).
    unserializable: IntCounter,
}

impl Outbound {
    pub fn new(socket: Shared, unserializable: IntCounter) -> Outbound {
        Outbound {
            socket,
            queue: VecDeque::new(),
            encoder: StanzaEncoder::default(),
            wire: Vec::with_capacity(2 * AHEAD),
            taken: 0,
            unflushed: false,
            unserializable,
        }
    }

    pub fn push(&mut self, outgoing: Outgoing) {
        self.queue.push_back(outgoing);
    }

    /// Stanzas queued and not serialized yet.
    pub fn backlog(&self) -> usize {
        self.queue.len()
    }

    /// Writes what the socket takes now; registers for a wake-up when it
    /// takes no more.
    pub fn poll_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            self.serialize_ahead();
            if self.taken == self.wire.len() {
                break;
            }
            match Pin::new(&mut self.socket).poll_write(cx, &self.wire[self.taken..]) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.taken += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
            }
        }
        if self.unflushed {
            // TLS holds records until flushed; TCP's flush does nothing.
            if let Poll::Ready(result) = Pin::new(&mut self.socket).poll_flush(cx) {
                result?;
                self.unflushed = false;
            }
        }
        Ok(())
    }

    /// Writes everything queued and the stream's end, then shuts the
    /// socket down, within `limit`.
    pub async fn close(mut self, limit: Duration) {
        let drain = async {
            poll_fn(|cx| match self.poll_write(cx) {
                Err(e) => Poll::Ready(Err(e)),
                Ok(()) if self.queue.is_empty() && self.taken == self.wire.len() => {
                    if self.unflushed {
                        Poll::Pending
                    } else {
                        Poll::Ready(Ok(()))
                    }
                }
                Ok(()) => Poll::Pending,
            })
            .await?;
            let mut socket = self.socket.clone();
            tokio::io::AsyncWriteExt::write_all(&mut socket, b"</stream:stream>").await?;
            tokio::io::AsyncWriteExt::shutdown(&mut socket).await
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }

    /// Serializes queued stanzas until `AHEAD` bytes wait for the socket.
    fn serialize_ahead(&mut self) {
        if self.taken == self.wire.len() {
            self.wire.clear();
            self.taken = 0;
        } else if self.taken >= AHEAD {
            self.wire.drain(..self.taken);
            self.taken = 0;
        }
        while self.wire.len() - self.taken < AHEAD {
            let Some(stanza) = self.queue.pop_front() else {
                break;
            };
            if let Err(e) = self.encoder.encode(&stanza, &mut self.wire) {
                // The encoder left the buffer as it was: the stream stays
                // well-formed. Job validation makes this impossible for
                // broadcast messages.
                self.unserializable.inc();
                tracing::error!(error = %e, "stanza could not be serialized and was dropped");
            }
        }
    }
}
