//! A [`Connection`] over a TCP socket, driven on the caller's task: the
//! caller asks for the next event, and in that call what is to be written
//! goes out, what came is read, and heartbeats are kept.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::{TcpStream, ToSocketAddrs};

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

pub struct Client {
    stream: TcpStream,
    connection: Connection,
    /// Events that came while [`Client::call`] waited for its answer.
    waiting: VecDeque<Event>,
    buffer: Box<[u8]>,
}

impl Client {
    /// Connects and logs in; returns once the connection is open.
    pub async fn connect(address: impl ToSocketAddrs, settings: Settings) -> Result<Client, Error> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            connection: Connection::new(settings, Instant::now()),
            waiting: VecDeque::new(),
            buffer: vec![0; READ_SIZE].into_boxed_slice(),
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

    /// The next event: writes what is to be written meanwhile, and reads.
    pub async fn next_event(&mut self) -> Result<Event, Error> {
        loop {
            self.write_ready()?;
            if let Some(event) = self.waiting.pop_front() {
                return Ok(event);
            }
            if let Some(event) = self.connection.poll_event() {
                return Ok(event);
            }
            if self.connection.is_closed() {
                return Err(Error::Io(io::ErrorKind::NotConnected.into()));
            }
            let interest = if self.connection.output().is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let tick = self.connection.next_tick();
            let ready = tokio::select! {
                ready = self.stream.ready(interest) => Some(ready?),
                () = sleep_until(tick) => None,
            };
            match ready {
                Some(ready) if ready.is_readable() => self.read_ready()?,
                Some(_) => {}
                None => self.connection.tick(Instant::now())?,
            }
        }
    }

    /// Writes all that is to be written, waiting for the socket if need be.
    pub async fn flush(&mut self) -> Result<(), Error> {
        while !self.connection.output().is_empty() {
            self.stream.writable().await?;
            self.write_ready()?;
        }
        Ok(())
    }

    /// Writes what the socket takes now.
    fn write_ready(&mut self) -> io::Result<()> {
        while !self.connection.output().is_empty() {
            match self.stream.try_write(self.connection.output()) {
                Ok(written) => self.connection.wrote(written, Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the socket holds now.
    fn read_ready(&mut self) -> Result<(), Error> {
        match self.stream.try_read(&mut self.buffer) {
            Ok(0) => Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(read) => Ok(self
                .connection
                .received(&self.buffer[..read], Instant::now())?),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
