//! A [`Connection`] over a socket (TCP, or TLS over it: any stream),
//! driven on the caller's task: the caller asks for the next event, and in
//! that call what is to be written goes out, what came is read, and
//! heartbeats are kept. Its futures may be dropped at any await (in a
//! `select!`): nothing read or to be written is lost.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::Sleep;

use crate::connection::{Connection, Settings};
use crate::event::Event;
use crate::frame::ChannelId;
use crate::{AMQPClass, CommandError, ProtocolError};

/// Why the connection is no longer usable, or a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The broker closed the connection, or a channel the caller waited on.
    #[error("closed by the broker: {code} {text}")]
    Closed { code: u16, text: String },
}

/// Read at most this much at a time.
const READ_SIZE: usize = 64 * 1024;

pub struct Client<S = TcpStream> {
    stream: S,
    connection: Connection,
    /// Events that came while [`Client::call`] waited for its answer.
    waiting: VecDeque<Event>,
    buffer: Box<[u8]>,
    /// Written since the stream was last flushed (a TLS stream holds what
    /// it was given until flushed).
    unflushed: bool,
    /// The heartbeat's timer, at [`Client::tick_at`].
    tick: Pin<Box<Sleep>>,
    tick_at: Option<Instant>,
}

impl Client<TcpStream> {
    /// Connects over TCP and logs in; returns once the connection is open.
    pub async fn connect(address: impl ToSocketAddrs, settings: Settings) -> Result<Client, Error> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Client::open(stream, settings).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Logs in over `stream`, already connected (and, for TLS, wrapped);
    /// returns once the connection is open.
    pub async fn open(stream: S, settings: Settings) -> Result<Client<S>, Error> {
        let now = Instant::now();
        let mut client = Client {
            stream,
            connection: Connection::new(settings, now),
            waiting: VecDeque::new(),
            buffer: vec![0; READ_SIZE].into_boxed_slice(),
            unflushed: false,
            tick: Box::pin(tokio::time::sleep_until(now.into())),
            tick_at: None,
        };
        loop {
            match client.next_event().await? {
                Event::Open => return Ok(client),
                Event::Closed { code, text } => return Err(Error::Closed { code, text }),
                _ => {}
            }
        }
    }
    /// The connection, to give it commands: they go out with the next
    /// [`Client::next_event`].
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.connection
    }

    /// Opens a channel and waits until it is.
    pub async fn open_channel(&mut self) -> Result<ChannelId, Error> {
        let channel = self.connection.open_channel()?;
        self.answer(channel).await?;
        Ok(channel)
    }

    /// Calls a synchronous method on `channel` and waits for its answer;
    /// events meanwhile are kept for [`Client::next_event`].
    pub async fn call(
        &mut self,
        channel: ChannelId,
        method: AMQPClass,
    ) -> Result<AMQPClass, Error> {
        self.connection.call(channel, method)?;
        self.answer(channel).await
    }

    async fn answer(&mut self, channel: ChannelId) -> Result<AMQPClass, Error> {
        let mut kept = VecDeque::new();
        let outcome = loop {
            match self.next_event().await {
                Ok(Event::Answer {
                    channel: on,
                    method,
                }) if on == channel => break Ok(method),
                Ok(Event::ChannelClosed {
                    channel: on,
                    code,
                    text,
                }) if on == channel => {
                    break Err(Error::Closed { code, text });
                }
                Ok(Event::Closed { code, text }) => break Err(Error::Closed { code, text }),
                Ok(other) => kept.push_back(other),
                Err(e) => break Err(e),
            }
        };
        kept.append(&mut self.waiting);
        self.waiting = kept;
        outcome
    }

    /// Closes the connection as the protocol asks (the broker then logs no
    /// lost client); returns once the broker answered. Events meanwhile
    /// are dropped.
    pub async fn close(mut self) -> Result<(), Error> {
        if !self.connection.is_open() {
            return Ok(());
        }
        self.connection.close(200, "bye")?;
        loop {
            if let Event::Closed { .. } = self.next_event().await? {
                return Ok(());
            }
        }
    }

    /// The next event: writes what is to be written meanwhile, and reads.
    pub async fn next_event(&mut self) -> Result<Event, Error> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Writes all that is to be written.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| {
            self.poll_write(cx)?;
            if self.connection.output().is_empty() && !self.unflushed {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, Error>> {
        loop {
            // What the caller does about events already read goes out in
            // one write, once they are all handed over.
            if let Some(event) = self.waiting.pop_front() {
                return Poll::Ready(Ok(event));
            }
            if let Some(event) = self.connection.poll_event() {
                return Poll::Ready(Ok(event));
            }
            self.poll_write(cx)?;
            if self.connection.is_closed() {
                return Poll::Ready(Err(Error::Io(io::ErrorKind::NotConnected.into())));
            }
            let mut read = ReadBuf::new(&mut self.buffer);
            match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    return Poll::Ready(Err(Error::Io(io::ErrorKind::UnexpectedEof.into())));
                }
                Poll::Ready(Ok(())) => {
                    self.connection.received(read.filled(), Instant::now())?;
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
            if self.poll_tick(cx) {
                self.connection.tick(Instant::now())?;
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Writes what the stream takes now, and flushes it once all is written.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        while !self.connection.output().is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, self.connection.output()) {
                Poll::Ready(Ok(0)) => return Err(Error::Io(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => {
                    self.connection.wrote(written, Instant::now());
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Ok(()),
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    /// Whether the heartbeat's tick is due (else the task is woken then).
    fn poll_tick(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.connection.next_tick() else {
            return false;
        };
        if self.tick_at != Some(at) {
            self.tick.as_mut().reset(at.into());
            self.tick_at = Some(at);
        }
        self.tick.as_mut().poll(cx).is_ready()
    }
}
