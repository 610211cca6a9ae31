//! What goes into the core and what comes out of it. The shell turns
//! sockets, the broker, the store file and the clock into [`Input`]s and
//! carries out every [`Output`]; the core never does either itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;

use crate::groups::Groups;
use crate::store::{Change, CompletedJob, StoredDeferral, Subscription};
use crate::xmpp::wire::{Addressee, MessageTemplate, Outgoing};

/// What an earlier run left in the store.
#[derive(Debug, Default)]
pub struct Restored {
    pub subscriptions: Vec<Subscription>,
    /// Oldest first.
    pub completed: Vec<CompletedJob>,
    pub progress: Vec<(String, Vec<u8>)>,
    pub groups: Groups,
    /// Keys of cancelled jobs, oldest first.
    pub cancelled: Vec<String>,
    /// Jobs' windows still open.
    pub deferrals: Vec<StoredDeferral>,
}

/// A job's place with the broker: the connection it came on (numbered from
/// 1), the lane (each lane's queue is consumed on a channel of its own)
/// and its delivery tag on that channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    pub generation: u64,
    pub lane: Lane,
    pub tag: u64,
}

/// Which queue a job came from. Urgent jobs are fanned out before the
/// others, and between the slices of one in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Urgent,
    Normal,
}

impl Lane {
    /// Urgent first.
    pub const ALL: [Lane; 2] = [Lane::Urgent, Lane::Normal];

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A job as the broker delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: JobId,
    pub payload: Vec<u8>,
    /// The broker delivered it before: an earlier attempt may have sent
    /// some of its messages.
    pub redelivered: bool,
    /// How long ago it was published (from its AMQP timestamp), if known.
    pub age: Option<Duration>,
    /// The wall-clock time when the shell took it from the broker: the
    /// core's only reading of the calendar (its own time is monotonic),
    /// for deadlines producers write as dates (a job's `expires_at`).
    pub received_at: SystemTime,
    /// The AMQP `user_id`: the broker user who published it, as the
    /// broker checked (see [`crate::producers`]).
    pub user_id: Option<String>,
}

/// A control request's place with the broker: the connection it came on
/// and its delivery tag on the control channel (a space of its own, apart
/// from the jobs').
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    pub generation: u64,
    pub tag: u64,
}

/// A control request as the broker delivered it, with where to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub payload: Vec<u8>,
    /// The AMQP `reply_to`: the queue (or direct reply-to name) the answer
    /// goes to through the default exchange.
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The AMQP `user_id`, as for a [`Delivery`].
    pub user_id: Option<String>,
    /// The wall-clock time when the shell took it, as for a [`Delivery`]:
    /// what the answer's times are told in.
    pub received_at: SystemTime,
}

/// A stanza that did not parse; IQ requests among them still get an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidStanza {
    pub kind: String,
    pub from: Option<String>,
    pub id: Option<String>,
    pub type_: Option<String>,
    pub error: String,
}

/// Everything the core reacts to, besides time ([`crate::core::Core::handle_timeout`]).
// Stanzas are the hot path: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input {
    /// The XEP-0114 handshake succeeded on a new stream.
    StreamUp,
    Stanza(Stanza),
    InvalidStanza(InvalidStanza),
    /// The stream ended: what was written and not proven read may be lost.
    StreamLost,
    /// A broker connection is up; its deliveries carry `generation`.
    BrokerUp {
        generation: u64,
    },
    Delivery(Delivery),
    /// A control request: answered at once from the core's state.
    Request(Request),
    /// The broker connection `generation` is gone: the broker requeues its
    /// unacknowledged jobs by itself and its publishes are lost.
    BrokerLost {
        generation: u64,
    },
    /// The broker confirmed publish `id`.
    Published {
        id: u64,
    },
    /// The broker refused a publish (or its channel closed under it); the
    /// shell gives it back to be retried.
    PublishRefused {
        publish: Publish,
    },
    /// The store committed batch `id`.
    Committed {
        batch: u64,
    },
    /// The store could not commit a batch; nothing of it was written, and
    /// the shell gives it back to be retried.
    CommitFailed {
        batch: Batch,
        error: String,
    },
    /// Stop taking jobs, let the server confirm what was written, give the
    /// rest back.
    Shutdown,
}

/// Where a publish goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The events exchange, with this routing key.
    Events { routing_key: String },
    /// The dead-letter queue, keeping the job's own AMQP properties and
    /// saying why.
    DeadLetter { job: JobId, reason: String },
    /// The answer to a control request: through the default exchange to
    /// its `reply_to`, with its `correlation_id`. The request is
    /// acknowledged once the broker has taken it (or refused it).
    Reply {
        request: RequestId,
        reply_to: String,
        correlation_id: Option<String>,
    },
    /// A job Herald queues itself (an operator's ad-hoc broadcast): to
    /// that lane's jobs queue through the default exchange, persistent.
    Job { lane: Lane },
    /// A control request with nowhere to answer: to the dead-letter queue,
    /// keeping its AMQP properties and saying why; then acknowledged.
    DeadRequest { request: RequestId, reason: String },
}

/// A message for the broker. With an `id`, the core waits for its
/// confirm ([`Input::Published`]); without one it is best effort (events
/// that describe a moment already past).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub id: Option<u64>,
    /// The broker connection it belongs to: the shell drops it if that
    /// connection is gone (its job was requeued).
    pub generation: u64,
    pub destination: Destination,
    pub payload: Vec<u8>,
}

/// Store changes to commit together, in order, before any later batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: u64,
    pub changes: Vec<Change>,
}

/// What the shell is to do, in the order given.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Output {
    /// Write a stanza to the current stream.
    Stanza(Stanza),
    /// Write a barrier ping to the current stream: the server answers it
    /// once it has read everything written before it. A stream made of
    /// several sessions writes it to each and answers it once all did.
    Ping(Iq),
    /// Write one message of a broadcast to the current stream.
    Message {
        template: Arc<MessageTemplate>,
        to: Addressee,
    },
    Publish(Publish),
    /// Acknowledge the job (with `multiple`: and every earlier delivery of
    /// its connection not yet settled).
    Ack {
        job: JobId,
        multiple: bool,
    },
    /// Give the job back to the queue.
    Requeue {
        job: JobId,
    },
    /// Commit a batch; answer [`Input::Committed`] or [`Input::CommitFailed`].
    Commit(Batch),
}

impl From<Outgoing> for Output {
    fn from(outgoing: Outgoing) -> Output {
        match outgoing {
            Outgoing::Stanza(stanza) => Output::Stanza(*stanza),
            Outgoing::Message { template, to } => Output::Message { template, to },
        }
    }
}

/// The outputs the shell has not taken yet, in order, and how many stanzas
/// were ever queued: the marks barriers measure the server's reading by.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    queue: VecDeque<Output>,
    stanzas: u64,
}

impl Outputs {
    pub fn push_back(&mut self, output: Output) {
        if matches!(
            output,
            Output::Stanza(_) | Output::Ping(_) | Output::Message { .. }
        ) {
            self.stanzas += 1;
        }
        self.queue.push_back(output);
    }

    pub fn pop_front(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Stanzas queued since the core started, taken or not.
    pub fn stanzas_queued(&self) -> u64 {
        self.stanzas
    }

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &Output> {
        self.queue.iter()
    }
}
