//! The XMPP side of the shell: a session, or connecting to one, or the
//! pause before connecting again. The event loop polls it like any input.

use std::future::{pending, Future};
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{sleep, Sleep};

use crate::backoff::Backoff;
use crate::config::Secret;
use crate::metrics::SessionMetrics;
use crate::xmpp::{ConnectError, Endpoint, Inbound, Session};

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
    pub endpoint: Endpoint,
    pub secret: Secret,
    pub metrics: SessionMetrics,
    pub backoff: Backoff,
}

impl Dialer {
    pub fn connect(&self) -> Stream {
        let (endpoint, secret, metrics) = (
            self.endpoint.clone(),
            self.secret.clone(),
            self.metrics.clone(),
        );
        Stream::Connecting(Box::pin(async move {
            Session::connect(&endpoint, secret.expose(), metrics).await
        }))
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
