//! Herald's test kit: real servers, real clients, a fake server and the
//! Herald launcher, shared by the integration tests (`tests/`), the load test
//! (`loadtest/`), the fuzz targets (`fuzz/`) and the examples.
//!
//! * [`server::XmppServer`] is what a test needs of an XMPP server, whichever
//!   it is: addresses, domains, the component secret, users' passwords, stop
//!   and start again. Tests written against it run on both servers below
//!   ([`on_both_servers!`] makes one test per server).
//! * [`prosody::Prosody`] starts a private Prosody 0.12 (loopback only, ports
//!   picked per run, state in a temp dir) with users provisioned by writing
//!   Prosody's storage files. Every test starts its own Prosody (Prosody
//!   refuses a second component connection for one domain), so tests can run
//!   in parallel.
//! * [`ejabberd::Ejabberd`] starts a private ejabberd 23.01 the same way, as
//!   a plain Erlang node with a unique name, with users provisioned by one
//!   RPC that loops inside the node ([`erlang`] has the epmd it and
//!   RabbitMQ's private nodes register with);
//!   [`ejabberd::EjabberdCluster`] joins several such nodes into one cluster.
//! * [`c2s`] is the one c2s client (plaintext, SASL PLAIN, bind on
//!   tokio-xmpp's XML stream layer): [`c2s::XmppUser`] for tests and
//!   examples, [`c2s::raw`] for the load test's thousands of receivers.
//! * [`http`] reads Herald's /metrics, /healthz and /readyz.
//! * [`component`] connects a bare XEP-0114 component, to see what a server
//!   routes to it.
//! * [`amqp`] has RabbitMQ helpers (lapin): publish with confirms, tap a topic
//!   exchange, fetch one message from a queue.
//! * [`fake_server::FakeServer`] is a fake server's XEP-0114 listener: it
//!   accepts Herald, answers its pings, counts what it writes and sends
//!   whatever a test scripts; for tests it also parses all Herald writes
//!   strictly, for the load test it floods Herald with presence.
//! * [`herald::Herald`] runs the `herald` binary with a config written by
//!   [`herald::config`], which serializes Herald's own `Config`.
//! * [`delivery`] reads what one job did: its reports and the copies of its
//!   message each user got.
//! * [`xml`] writes stanzas with Herald's stream encoder and re-parses any
//!   stream strictly; [`job_check`] holds the properties of any job payload.
//! * [`cut_proxy::CutProxy`] sits between Herald and a server's component
//!   port and cuts the connection in the middle of a stanza, in either
//!   direction.
//! * [`rabbitmq::PrivateBroker`] starts a private RabbitMQ node (its own
//!   node name, ports and data dir) for tests that stop, restart or
//!   reconfigure the broker; the shared broker is never touched.
//!   [`rabbitmq::PrivateCluster`] joins several such nodes into one cluster.
//! * [`certs::TestPki`] makes a throw-away CA, server and client
//!   certificates with the `openssl` command line, for the TLS tests.
//! * [`stack::Stack`] is an XMPP server plus Herald, for tests that act as
//!   a producer (`herald send`, the example producers) or break something.
//!
//! Nothing here skips: a missing Prosody or ejabberd, or an unreachable
//! RabbitMQ, makes the test panic with a message saying so.

pub mod amqp;
pub mod c2s;
pub mod certs;
pub mod component;
pub mod crowd;
pub mod cut_proxy;
pub mod delivery;
pub mod draw;
pub mod ejabberd;
pub mod erlang;
pub mod events;
pub mod fake_server;
pub mod herald;
pub mod http;
pub mod job_check;
pub mod prosody;
pub mod rabbitmq;
pub mod server;
pub mod stack;
pub mod xml;

/// Runs generic test bodies on every server: for each `name`, an
/// `async fn name<S: XmppServer>()` in the calling file becomes the tests
/// `prosody::name` and `ejabberd::name`, so a failure names the server.
///
/// ```ignore
/// async fn delivers<S: XmppServer>() { let server = S::start(&["alice"]); ... }
/// herald_testkit::on_both_servers!(delivers);
/// ```
#[macro_export]
macro_rules! on_both_servers {
    ($($test:ident),+ $(,)?) => {
        mod prosody {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<$crate::prosody::Prosody>().await
                }
            )+
        }
        mod ejabberd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<$crate::ejabberd::Ejabberd>().await
                }
            )+
        }
    };
}

pub use server::random_hex;
