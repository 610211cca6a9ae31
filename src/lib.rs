//! Herald: an XMPP external component (XEP-0114) for presence-aware mass
//! message delivery.
//!
//! Herald binds a subdomain of an XMPP server, keeps a live presence book of
//! every user who has one of its JIDs on their roster, and delivers
//! broadcast jobs taken from an AMQP queue to the recipients who can read
//! them now, reporting every recipient back over AMQP.
//!
//! Architecture, after the non-blocking design that won in the paper Herald
//! comes from, made sans-I/O: one state machine owns all state and makes
//! every decision ([`core`]), with no sockets, tasks or clock of its own;
//! a thin shell on one thread ([`shell`]) feeds it what the server
//! ([`xmpp`]), the broker ([`amqp`]), the store ([`store`]) and the clock
//! report, and carries out what it returns. Pure code it calls:
//! [`presence`], [`broadcast`], [`producers`] (who may do what). The [`handler::Handler`] trait is the
//! extension point. [`metrics`] are written by the core and the shell and
//! served by [`http`].
//! [`send`] is the other side: the `herald send` producer, and the
//! control plane's client ([`control`] is its contract).

pub mod amqp;
mod backoff;
pub mod broadcast;
pub mod config;
pub mod control;
pub mod core;
pub mod groups;
pub mod handler;
pub mod http;
pub mod metrics;
mod pem;
pub mod presence;
pub mod producers;
mod rotation;
pub mod send;
pub mod shell;
pub mod store;
pub mod user_text;
pub mod xmpp;

pub use config::Config;
pub use handler::{Context, Handler, JobOutcome, JobSlices, Tally};
pub use shell::{run, run_with, AppError};
