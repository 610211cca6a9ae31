//! The XMPP side of the shell: a session, or connecting to one, or the
//! pause before connecting again. The event loop polls it like any input.

use std::future::{pending, Future};
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{sleep, Sleep};

use crate::backoff::Backoff;
use crate::config::Secret;
use crate::metrics::SessionMetrics;
use crate::rotation::Rotation;
use crate::xmpp::{ConnectError, Endpoint, Inbound, ServerAddress, Session};

type Connecting = Pin<Box<dyn Future<Output = Result<Session, ConnectError>>>>;

/// Where the connection to the server stands.
pub enum Stream {
    Connecting(Connecting),
    Paused(Pin<Box<Sleep>>),
    Up(Box<Session>),
    /// Shutdown: no stream and no new one.
    Closed,
}

/// What happened on the XMPP side.
// Stanzas are the hot path: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Happened {
    Connected(Box<Session>),
    ConnectFailed(ConnectError),
    PauseOver,
    Inbound(Inbound),
}

/// How to (re)connect.
pub struct Dialer {
    /// The server's nodes: each attempt goes to the next.
    pub servers: Rotation<ServerAddress>,
    pub endpoint: Endpoint,
    pub secret: Secret,
    pub metrics: SessionMetrics,
    pub backoff: Backoff,
}

impl Dialer {
    /// Connects to the next node.
    pub fn connect(&mut self) -> Stream {
        let (server, endpoint, secret, metrics) = (
            self.servers.next().clone(),
            self.endpoint.clone(),
            self.secret.clone(),
            self.metrics.clone(),
        );
        Stream::Connecting(Box::pin(async move {
            Session::connect(&server, &endpoint, secret.expose(), metrics).await
        }))
    }

    /// The node of the latest attempt.
    pub fn server(&self) -> &ServerAddress {
        self.servers.current()
    }

    /// Connects again after a pause that grows with each failure.
    pub fn pause(&mut self) -> (Stream, Duration) {
        let pause = self.backoff.next();
        (Stream::Paused(Box::pin(sleep(pause))), pause)
    }
}

impl Stream {
    /// The next thing to happen. Cancel-safe: all progress lives in `self`.
    pub async fn next(&mut self) -> Happened {
        match self {
            Stream::Connecting(connecting) => match connecting.await {
                Ok(session) => Happened::Connected(Box::new(session)),
                Err(e) => Happened::ConnectFailed(e),
            },
            Stream::Paused(pause) => {
                pause.await;
                Happened::PauseOver
            }
            Stream::Up(session) => Happened::Inbound(session.next().await),
            Stream::Closed => pending().await,
        }
    }

    pub fn session(&mut self) -> Option<&mut Session> {
        match self {
            Stream::Up(session) => Some(session),
            _ => None,
        }
    }

    pub fn backlog(&self) -> usize {
        match self {
            Stream::Up(session) => session.backlog(),
            _ => 0,
        }
    }
}
