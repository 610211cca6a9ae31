//! The half of Herald that faces the business applications: the jobs queue
//! it consumes, the dead-letter queue, and the events exchange it reports to.
//!
//! lapin runs its own I/O thread; Herald's state never leaves the event
//! loop. The link task ([`Link`]) keeps the connection up and does all
//! waiting on the broker, so that the loop never does.

mod ack_window;
mod link;
pub mod tls;
mod topology;

pub use link::{Job, Link, Publisher, Taken, ERROR_HEADER};
pub use tls::connect;
