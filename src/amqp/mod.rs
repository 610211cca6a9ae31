//! The half of Herald that faces the business applications: the jobs queue
//! it consumes, the dead-letter queue, the events exchange it reports to,
//! and the control queue whose requests it answers.
//!
//! lapin runs its own I/O thread; Herald's state never leaves the core.
//! The link task ([`Link`]) keeps the connection up, does all waiting on
//! the broker, so that the loop never does, and carries out the core's
//! publishes and acknowledgements.

mod address;
mod channel;
mod control;
mod link;
mod store_stream;
pub mod tls;
mod topology;
mod unsettled;

pub use address::{addresses, BrokerAddress, DEFAULT_URL};
pub use channel::{ERROR_HEADER, PRODUCER_HEADER};
pub use link::{Command, Link, LinkEvent, LinkSettings};
pub use store_stream::{
    store_stream, Answer as StoreAnswer, StoreStream, StreamError, StreamStore,
    Writer as StoreWriter,
};
pub use tls::connect;
