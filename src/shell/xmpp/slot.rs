//! One session of Herald's stream, with what it takes to (re)open it: the
//! attempt under way, the pause before the next, or the session itself.
//! A slot dials one node, or every node in turn when it is the stream's
//! only session.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{sleep, Sleep};

use crate::backoff::Backoff;
use crate::config::Secret;
use crate::metrics::SessionMetrics;
use crate::rotation::Rotation;
use crate::xmpp::{ConnectError, Endpoint, Inbound, ServerAddress, Session};

type Connecting = Pin<Box<dyn Future<Output = Result<Session, ConnectError>>>>;

/// As whom to connect, the same for every slot.
pub struct Dial {
    pub endpoint: Endpoint,
    pub secret: Secret,
    pub metrics: SessionMetrics,
}

enum State {
    Connecting(Connecting),
    Paused(Pin<Box<Sleep>>),
    Up(Box<Session>),
    /// Neither connected nor trying: the stream is closed or lost.
    Idle,
}

/// What happened to a slot.
// Stanzas are the hot path: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum SlotEvent {
    Connected,
    /// The attempt failed; the next one follows after `retry_in`.
    Failed {
        error: ConnectError,
        retry_in: Duration,
    },
    Inbound(Inbound),
}

pub struct Slot {
    state: State,
    servers: Rotation<ServerAddress>,
    backoff: Backoff,
    /// An attempt ended (connected or failed) since the stream was lost.
    pub tried: bool,
}

impl Slot {
    pub fn new(servers: Vec<ServerAddress>, backoff: Backoff) -> Slot {
        Slot {
            state: State::Idle,
            servers: Rotation::new(servers),
            backoff,
            tried: false,
        }
    }

    /// The node of the latest attempt.
    pub fn server(&self) -> &ServerAddress {
        self.servers.current()
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up(_))
    }

    /// Stanzas queued on the session, not yet handed to its socket.
    pub fn backlog(&self) -> usize {
        match &self.state {
            State::Up(session) => session.backlog(),
            _ => 0,
        }
    }

    pub fn session(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Up(session) => Some(session),
            _ => None,
        }
    }

    /// Connects to the next node now (after a pause that grows with each
    /// failure, unless `at_once`); returns the pause.
    pub fn reconnect(&mut self, at_once: bool, dial: &Dial) -> Option<Duration> {
        self.tried = false;
        if at_once {
            self.backoff.reset();
            self.connect(dial);
            return None;
        }
        let pause = self.backoff.next();
        self.state = State::Paused(Box::pin(sleep(pause)));
        Some(pause)
    }

    /// Takes the session out, leaving the slot idle.
    pub fn take(&mut self) -> Option<Box<Session>> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Up(session) => Some(session),
            _ => None,
        }
    }

    /// The next thing to happen. Cancel-safe: all progress lives in `self`.
    pub fn poll_event(&mut self, cx: &mut Context<'_>, dial: &Dial) -> Poll<SlotEvent> {
        loop {
            match &mut self.state {
                State::Connecting(connecting) => {
                    let connected = ready!(connecting.as_mut().poll(cx));
                    self.tried = true;
                    return Poll::Ready(match connected {
                        Ok(session) => {
                            self.state = State::Up(Box::new(session));
                            SlotEvent::Connected
                        }
                        Err(error) => {
                            let retry_in = self.backoff.next();
                            self.state = State::Paused(Box::pin(sleep(retry_in)));
                            SlotEvent::Failed { error, retry_in }
                        }
                    });
                }
                State::Paused(pause) => {
                    ready!(pause.as_mut().poll(cx));
                    self.connect(dial);
                }
                State::Up(session) => return session.poll_next(cx).map(SlotEvent::Inbound),
                State::Idle => return Poll::Pending,
            }
        }
    }

    fn connect(&mut self, dial: &Dial) {
        let (server, endpoint, secret, metrics) = (
            self.servers.next().clone(),
            dial.endpoint.clone(),
            dial.secret.clone(),
            dial.metrics.clone(),
        );
        self.state = State::Connecting(Box::pin(async move {
            Session::connect(&server, &endpoint, secret.expose(), metrics).await
        }));
    }
}
