//! The extension point: what a component does with presence, messages, IQs
//! and jobs. The core ([`crate::core`]) owns the connection, the
//! presence book, subscriptions, service discovery and ping; a [`Handler`]
//! decides the rest and answers with effects through a [`Context`].
//! Broadcasting ([`crate::broadcast::Broadcast`]) is one handler; see
//! `examples/echo.rs` for another.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::message::Message;

use crate::core::{Earlier, Ledger, StrangerTest};
use crate::groups::Groups;
use crate::presence::{Policy, PresenceBook, PresenceChange};
use crate::producers::{Listed, Refusal};
use crate::user_text::{UserKey, UserText};
use crate::xmpp::wire::{Addressee, MessageTemplate, Outgoing};

/// An event for the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub routing_key: String,
    pub payload: Vec<u8>,
}

impl Event {
    pub fn json(routing_key: &str, payload: &impl Serialize) -> Event {
        Event {
            routing_key: routing_key.to_string(),
            // Serializing plain data structs to JSON cannot fail.
            payload: serde_json::to_vec(payload).unwrap_or_default(),
        }
    }
}

/// What the handler asked for while handling one input.
#[derive(Debug, Default)]
pub struct Effects {
    pub stanzas: Vec<Outgoing>,
    pub events: Vec<Event>,
    /// `(n, token)`: once the first `n` stanzas are read by the server, the
    /// job has reached `token` (see [`Context::checkpoint`]).
    pub checkpoints: Vec<(usize, Vec<u8>)>,
}

/// What a handler sees and can do while handling one input.
pub struct Context<'a> {
    domain: &'a BareJid,
    presence: &'a PresenceBook,
    jobs: &'a Ledger,
    groups: &'a Groups,
    redelivered: bool,
    wall_clock: Option<SystemTime>,
    strangers: Option<StrangerTest<'a>>,
    producer: Option<Listed<'a>>,
    deferral_room: usize,
    effects: &'a mut Effects,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        domain: &'a BareJid,
        presence: &'a PresenceBook,
        jobs: &'a Ledger,
        groups: &'a Groups,
        effects: &'a mut Effects,
    ) -> Self {
        Context {
            domain,
            presence,
            jobs,
            groups,
            redelivered: false,
            wall_clock: None,
            strangers: None,
            producer: None,
            deferral_room: 0,
            effects,
        }
    }

    /// The context of a job that may leave at most `room` recipients
    /// waiting in its window (see [`Deferral`]).
    pub(crate) fn with_deferral_room(mut self, room: usize) -> Self {
        self.deferral_room = room;
        self
    }

    /// How many recipients the job at hand may leave waiting in its window
    /// (`broadcast.max_deferred` less those waiting already); 0 outside a
    /// job.
    pub fn deferral_room(&self) -> usize {
        self.deferral_room
    }

    /// The context of a job from `producer`, a listed broker user; None:
    /// from a producer that may do anything.
    pub(crate) fn published_by(mut self, producer: Option<Listed<'a>>) -> Self {
        self.producer = producer;
        self
    }

    /// The context of a job the broker delivered before (to this or an
    /// earlier process), which may have been partly done already.
    pub(crate) fn for_redelivery(mut self, redelivered: bool) -> Self {
        self.redelivered = redelivered;
        self
    }

    /// The context of a job handled when the wall clock reads `at`.
    pub(crate) fn at_wall_clock(mut self, at: SystemTime) -> Self {
        self.wall_clock = Some(at);
        self
    }

    /// The context of a job the loop is willing to hold while it probes
    /// the users `test` calls strangers.
    pub(crate) fn probing(mut self, test: StrangerTest<'a>) -> Self {
        self.strangers = Some(test);
        self
    }

    /// Whether `user` (the text of their JID) is someone Herald knows nothing about: not a
    /// subscriber, and not probed in vain lately. Their presence is unknown
    /// rather than offline; a job that returns [`JobOutcome::Probe`] with
    /// them waits until their probes are answered. Always false when the
    /// loop does not probe for this call (probing turned off, or the job's
    /// probes were answered already).
    pub fn is_stranger(&self, user: UserText<'_>) -> bool {
        self.strangers
            .as_ref()
            .is_some_and(|test| test.is_stranger(user))
    }

    /// The wall-clock time now, while a job is handled (the shell reads it
    /// when the job arrives, the core adds the time since): for deadlines
    /// that producers write as dates. None for other inputs.
    pub fn wall_clock(&self) -> Option<SystemTime> {
        self.wall_clock
    }

    /// The listed producer of the job at hand and what it may do (see
    /// [`crate::producers`]); None when it may do anything (Herald's own
    /// job, or an unlisted producer while those are allowed).
    pub fn producer(&self) -> Option<Listed<'a>> {
        self.producer
    }

    /// Whether the job at hand was delivered before: an earlier attempt may
    /// have sent some of its messages already.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// Whether an earlier attempt at the job with this key, in this run or
    /// one that saved a checkpoint, may have sent some of its messages: a
    /// producer can publish a job again while its first copy was given up,
    /// and that copy is not marked redelivered.
    pub fn attempted_before(&self, key: &str) -> bool {
        self.jobs.attempted(key)
    }

    /// The last checkpoint token saved for the job with this key (see
    /// [`Context::checkpoint`]) by an attempt that did not complete.
    pub fn progress(&self, key: &str) -> Option<&[u8]> {
        self.jobs.progress(key)
    }

    /// Marks a point in the job: once the server has read the stanzas sent
    /// so far, `token` is saved for the job's key, and a later attempt at
    /// the same job finds it through [`Context::progress`].
    pub fn checkpoint(&mut self, token: Vec<u8>) {
        let sent = self.effects.stanzas.len();
        self.effects.checkpoints.push((sent, token));
    }

    /// Whether the job with this key was cancelled (the control operation
    /// `cancel`, within the remembered window): it is to send nothing.
    pub fn is_cancelled(&self, key: &str) -> bool {
        self.jobs.is_cancelled(key)
    }

    /// An earlier job with this key, in progress or completed (within the
    /// remembered window): the job at hand is then a duplicate.
    pub fn earlier_job(&self, key: &str) -> Option<Earlier<'_>> {
        self.jobs.earlier(key)
    }

    /// The component's domain, e.g. `broadcast.example.com`.
    pub fn domain(&self) -> &BareJid {
        self.domain
    }

    pub fn presence(&self) -> &'a PresenceBook {
        self.presence
    }

    /// The groups jobs can address (kept by the control plane).
    pub fn groups(&self) -> &Groups {
        self.groups
    }

    /// Every user who shares presence with Herald (has one of its JIDs on
    /// their roster, whether online or not), once each, in no particular
    /// order.
    pub fn subscribers(&self) -> impl Iterator<Item = &UserKey> {
        self.presence.subscribers()
    }

    /// Sends a stanza; its `from` must be on [`Context::domain`].
    pub fn send(&mut self, stanza: impl Into<Stanza>) {
        self.effects
            .stanzas
            .push(Outgoing::Stanza(Box::new(stanza.into())));
    }

    /// Sends one message of a broadcast: `template` to `to`. Its bytes are
    /// made from the template when written, and the message's text is held
    /// once for all its recipients.
    pub fn send_broadcast(&mut self, template: &Arc<MessageTemplate>, to: Addressee) {
        self.effects.stanzas.push(Outgoing::Message {
            template: Arc::clone(template),
            to,
        });
    }

    /// Publishes an event now (not tied to any job).
    pub fn publish(&mut self, event: Event) {
        self.effects.events.push(event);
    }
}

/// What happened to a job's recipients, for `herald_recipients_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub offline: u64,
    pub unavailable: u64,
    pub invalid: u64,
    /// Recipients of a job taken after its deadline.
    pub expired: u64,
    /// Recipients of a cancelled job not reached before it was cancelled.
    pub cancelled: u64,
    /// The job was cancelled (for `herald_jobs_total{outcome="cancelled"}`:
    /// `cancelled` may be 0 when every recipient left was invalid).
    pub job_cancelled: bool,
}

/// Recipients a job could not reach when it went out, who get its message
/// as soon as they can within a window: the core keeps them (and the
/// store, across restarts), watches their presence and publishes the
/// job's final report when the window ends or every one was reached.
#[derive(Debug)]
pub struct Deferral {
    pub template: Arc<MessageTemplate>,
    pub policy: Policy,
    /// When the window ends, on the wall clock.
    pub until: SystemTime,
    /// Each waiting recipient's position in the job and user (the
    /// normalised text of their bare JID), in position order.
    pub waiting: Vec<(u32, String)>,
    /// The final report names who was reached late and who was missed.
    pub names: bool,
    /// Its messages ask for delivery receipts: this many were sent at
    /// fan-out, and receipts are counted until the window ends.
    pub receipts: Option<usize>,
}

/// What to do with a job once the handler has seen it.
#[derive(Debug)]
pub enum JobOutcome {
    /// The stanzas sent through the context are the job's work. Once the
    /// server has read them, `report` is published and then the job is
    /// acknowledged. `tally` feeds the recipient metrics. A job with a
    /// `key` is remembered: a later job with the same key finds this one's
    /// report through [`Context::earlier_job`].
    Done {
        report: Option<Event>,
        /// Published, and confirmed by the broker, before the job is
        /// remembered as completed (and so before `report`): a job
        /// interrupted before then publishes them again.
        names: Vec<Event>,
        /// Recipients the message waits for, when the job keeps them in
        /// a window (see [`Deferral`]).
        deferral: Option<Deferral>,
        tally: Tally,
        key: Option<String>,
    },
    /// The job's stanzas go out a slice at a time, as the stream takes
    /// them (see [`JobSlices`]): a job of a million recipients never holds
    /// a million stanzas in memory, and presence, pings and control requests
    /// are handled between its slices. Jobs behind it wait their turn.
    Fanning(Box<dyn JobSlices>),
    /// Probe `users` (strangers, see [`Context::is_stranger`]) first:
    /// the loop sends each a presence probe, waits until the server has
    /// answered them, and then calls [`Handler::on_job`] again with the same
    /// job (and no strangers). Nothing sent through the context is written.
    Probe { users: Vec<BareJid> },
    /// The job repeats the earlier one with `key`: nothing is sent,
    /// `report` is published and the job acknowledged.
    Duplicate { report: Option<Event>, key: String },
    /// The job is refused: it goes to the dead-letter queue with `reason`
    /// and nothing sent through the context for it is written.
    DeadLetter { reason: String },
    /// Its producer may not publish it ([`Context::producer`]): a dead
    /// letter like [`JobOutcome::DeadLetter`], its reason the refusal's,
    /// and counted by the kind of refusal.
    Refused(Refusal),
}

/// The rest of a job whose handler returned [`JobOutcome::Fanning`].
pub trait JobSlices: std::fmt::Debug {
    /// The job's key (as in [`JobOutcome::Done`]), under which its
    /// checkpoints are saved while it is fanned out.
    fn key(&self) -> Option<&str>;

    /// Sends at most `budget` more stanzas through `ctx` (with checkpoints
    /// between them); the job's outcome once it has sent its last, None
    /// while more remain. Each call sees the presence of its moment.
    fn next_slice(&mut self, ctx: &mut Context<'_>, budget: usize) -> Option<JobOutcome>;

    /// The job was cancelled: nothing more is sent, and its outcome counts
    /// the recipients not walked yet as cancelled.
    fn cancel(&mut self) -> JobOutcome;
}

pub trait Handler {
    /// Called after the presence book recorded a change.
    fn on_presence(&mut self, _ctx: &mut Context<'_>, _change: &PresenceChange) {}

    /// Called for every `<message/>` addressed to the component's domain.
    fn on_message(&mut self, _ctx: &mut Context<'_>, _message: &Message) {}

    /// Called for IQ get/set requests the event loop does not answer itself
    /// (it answers disco#info and ping). Return the reply; `None` makes the
    /// loop answer `service-unavailable`, as RFC 6120 requires.
    fn on_iq(&mut self, _ctx: &mut Context<'_>, _iq: &Iq) -> Option<Iq> {
        None
    }

    /// Called for each job taken from the jobs queue, in order. It may be
    /// called more than once for a job: again after it returned
    /// [`JobOutcome::Probe`], and again for a job taken while an earlier
    /// one waited for probes (it is then examined early, so that its own
    /// probes go out at once, and run in its turn). Only the last call's
    /// outcome and effects count.
    fn on_job(&mut self, ctx: &mut Context<'_>, payload: &[u8]) -> JobOutcome;

    /// Extra features to announce in disco#info.
    fn features(&self) -> Vec<&'static str> {
        Vec::new()
    }
}
