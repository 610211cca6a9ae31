//! The half of Herald that faces the XMPP server: the XEP-0114 session and
//! the stanzas the component sends on its own behalf.

mod address;
pub mod commands;
mod depth;
pub mod session;
pub mod stanzas;
pub mod tls;
mod transport;
pub mod wire;

pub use address::{addresses, ServerAddress, DEFAULT_HOST, DEFAULT_PORT};
pub use session::{Closed, ConnectError, Endpoint, Inbound, Session};
pub use tls::LinkTls;
