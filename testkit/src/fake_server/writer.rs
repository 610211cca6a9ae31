//! The fake server's writing side, on a thread of its own: the reader's
//! answers, the bytes a test scripts, and presence floods and churn for the
//! load test, to whichever connection is current.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What the writer is told to do.
pub(super) enum Out {
    /// A new connection: it is written to from now on.
    Connected(TcpStream),
    /// Its handshake succeeded: scripted bytes may go out.
    Authenticated,
    /// Its reading ended: close it after what is queued before this, and
    /// let scripted bytes wait for the next handshake.
    Disconnected,
    /// An answer of the server's (header, handshake, pong): at once.
    Reply(Vec<u8>),
    /// Bytes a test scripted: once the current stream is authenticated, as
    /// a real server only routes stanzas on an authenticated stream.
    Script(Vec<u8>),
    Flood(Range<u64>),
    Churn {
        users: Range<u64>,
        pairs_per_sec: u32,
    },
    StopChurn,
}

pub(super) struct Writer {
    commands: Receiver<Out>,
    /// `user@<server_domain>/r` sends flooded presence to `contact`.
    server_domain: String,
    contact: String,
    stream: Option<TcpStream>,
    authenticated: bool,
    held: Vec<Vec<u8>>,
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
    pub(super) fn new(commands: Receiver<Out>, server_domain: String, contact: String) -> Self {
        Writer {
            commands,
            server_domain,
            contact,
            stream: None,
            authenticated: false,
            held: Vec::new(),
            churn: None,
        }
    }

    /// Runs until the server is dropped (every sender gone).
    pub(super) fn run(mut self) {
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
            // A write error means Herald went away: the reader sees it too
            // and the next connection brings a new stream.
            if written.and_then(|()| self.churn_due()).is_err() {
                self.stream = None;
                self.authenticated = false;
            }
        }
    }

    fn apply(&mut self, command: Out) -> io::Result<()> {
        match command {
            Out::Connected(stream) => {
                self.stream = Some(stream);
                self.authenticated = false;
                Ok(())
            }
            Out::Authenticated => {
                self.authenticated = true;
                for bytes in std::mem::take(&mut self.held) {
                    self.write(&bytes)?;
                }
                Ok(())
            }
            Out::Disconnected => {
                if let Some(stream) = self.stream.take() {
                    let _ = stream.shutdown(Shutdown::Both);
                }
                self.authenticated = false;
                Ok(())
            }
            Out::Reply(bytes) => self.write(&bytes),
            Out::Script(bytes) if self.authenticated => self.write(&bytes),
            Out::Script(bytes) => {
                self.held.push(bytes);
                Ok(())
            }
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

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Some(stream) => stream.write_all(bytes),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flood(&mut self, users: Range<u64>) -> io::Result<()> {
        let mut chunk = String::with_capacity(FLOOD_CHUNK + 256);
        for i in users {
            self.presence(&mut chunk, i, false);
            if chunk.len() >= FLOOD_CHUNK {
                self.write(chunk.as_bytes())?;
                chunk.clear();
                self.answers_now()?;
            }
        }
        self.write(chunk.as_bytes())
    }

    /// Writes queued answers (pongs) between flood chunks.
    fn answers_now(&mut self) -> io::Result<()> {
        let mut deferred = Vec::new();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Out::Reply(bytes) => self.write(&bytes)?,
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
        let mut picks = Vec::new();
        while churn.sent < due && !churn.users.is_empty() {
            picks.push(churn.next);
            churn.next += 1;
            if churn.next >= churn.users.end {
                churn.next = churn.users.start;
            }
            churn.sent += 1;
        }
        if picks.is_empty() {
            return Ok(());
        }
        let mut chunk = String::new();
        for i in picks {
            self.presence(&mut chunk, i, true);
            self.presence(&mut chunk, i, false);
        }
        self.write(chunk.as_bytes())
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
            self.server_domain, self.contact
        );
    }
}
