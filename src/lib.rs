//! Herald: an XMPP external component (XEP-0114) for presence-aware mass
//! message delivery.
//!
//! Herald binds a subdomain of an XMPP server, keeps a live presence book of
//! every user who has one of its JIDs on their roster, and delivers
//! broadcast jobs taken from an AMQP queue to the recipients who can read
//! them now, reporting every recipient back over AMQP.
//!
//! Architecture, after the non-blocking design that won in the paper Herald
//! comes from: one event loop on one thread owns all state ([`app`]).
//! Everything else is either an input to that loop ([`xmpp`] for the
//! server, [`amqp`] for the broker) or pure code it calls ([`presence`],
//! [`broadcast`]). The [`handler::Handler`] trait is the extension point.
//! [`metrics`] are written by the loop and served by [`http`].
//! [`send`] is the other side: the `herald send` producer.

pub mod amqp;
pub mod app;
mod backoff;
pub mod broadcast;
pub mod config;
pub mod handler;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod send;
pub mod store;
pub mod xmpp;

pub use app::{run, run_with, AppError};
pub use config::Config;
pub use handler::{Context, Handler, JobOutcome, Tally};
