//! The XMPP server under load: Prosody or ejabberd, started privately on
//! loopback with the run's users provisioned (see [`herald_testkit::prosody`] and
//! [`herald_testkit::ejabberd`]), or a cluster of ejabberd nodes with the
//! users spread over them and the component attached to the first.

use clap::ValueEnum;

use herald_testkit::ejabberd::{Ejabberd, EjabberdCluster};
use herald_testkit::herald::XmppTarget;
use herald_testkit::prosody::Prosody;
use herald_testkit::server::XmppServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerKind {
    Prosody,
    Ejabberd,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Ejabberd => "ejabberd",
        }
    }
}

pub enum Server {
    Prosody(Prosody),
    Ejabberd(Ejabberd),
    EjabberdCluster(EjabberdCluster),
}

/// The load test's logged-in users (`u0`, `u1`, ...) and churning users
/// (`c0`, ...), in swarm order.
pub struct Population {
    pub users: Vec<String>,
    pub churners: Vec<String>,
}

impl Population {
    pub fn new(users: usize, churners: usize) -> Population {
        Population {
            users: (0..users).map(|i| format!("u{i}")).collect(),
            churners: (0..churners).map(|i| format!("c{i}")).collect(),
        }
    }

    /// Everyone, users then churners: whom a server provisions.
    fn everyone(&self) -> Vec<String> {
        self.users.iter().chain(&self.churners).cloned().collect()
    }
}

impl Server {
    /// Starts the server with everyone in `population` provisioned (the
    /// component's JID on every roster), off the async threads: it blocks
    /// while it provisions.
    pub async fn launch(kind: ServerKind, population: &Population) -> Result<Server, String> {
        let names = population.everyone();
        tokio::task::spawn_blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            match kind {
                ServerKind::Prosody => Server::Prosody(Prosody::start(&names)),
                ServerKind::Ejabberd => Server::Ejabberd(Ejabberd::start(&names)),
            }
        })
        .await
        .map_err(|e| format!("{} did not start: {e}", kind.name()))
    }

    /// Starts `nodes` ejabberd nodes joined into one cluster, everyone in
    /// `population` provisioned, off the async threads.
    pub async fn launch_cluster(nodes: usize, population: &Population) -> Result<Server, String> {
        let names = population.everyone();
        tokio::task::spawn_blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            Server::EjabberdCluster(EjabberdCluster::start(nodes, &names))
        })
        .await
        .map_err(|e| format!("the ejabberd cluster did not start: {e}"))
    }

    /// The server, or a cluster's first node: the one the component
    /// attaches to (every node takes every user's login).
    pub fn api(&self) -> &dyn XmppServer {
        match self {
            Server::Prosody(s) => s,
            Server::Ejabberd(s) => s,
            Server::EjabberdCluster(s) => s.node(0),
        }
    }

    /// Every node's c2s listener: the swarm's users are spread over them.
    pub fn c2s_addrs(&self) -> Vec<String> {
        match self {
            Server::EjabberdCluster(s) => s.nodes().iter().map(|n| n.c2s_addr()).collect(),
            _ => vec![self.api().c2s_addr()],
        }
    }

    /// Every node's component listener, in the order Herald tries them.
    pub fn component_addrs(&self) -> Vec<String> {
        match self {
            Server::EjabberdCluster(s) => s.component_addrs(),
            _ => vec![self.api().component_addr()],
        }
    }

    /// Every node's OS pid, for the server's CPU.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Server::EjabberdCluster(s) => s.nodes().iter().filter_map(Ejabberd::pid).collect(),
            _ => self.pid().into_iter().collect(),
        }
    }

    /// Where the component under test connects.
    pub fn xmpp_target(&self) -> XmppTarget {
        XmppTarget::of(self.api())
    }

    /// The server's OS pid (for ejabberd, the Erlang VM's: `erl` execs it).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Server::Prosody(s) => s.pid(),
            Server::Ejabberd(s) => s.pid(),
            Server::EjabberdCluster(s) => s.node(0).pid(),
        }
    }

    /// Stops the server and starts it again on the same ports and data
    /// (its users are logged out). Blocks while it boots; panics if it does
    /// not come up.
    pub fn restart(&mut self) {
        match self {
            Server::Prosody(s) => s.start_again(),
            Server::Ejabberd(s) => s.start_again(),
            Server::EjabberdCluster(s) => {
                for node in 0..s.nodes().len() {
                    s.node_mut(node).start_again();
                }
            }
        }
    }

    /// Graceful stop (by pid, SIGTERM then SIGKILL after a grace period).
    pub fn stop(&mut self) {
        match self {
            Server::Prosody(s) => s.stop(),
            Server::Ejabberd(s) => s.stop(),
            Server::EjabberdCluster(s) => {
                for node in 0..s.nodes().len() {
                    s.node_mut(node).stop();
                }
            }
        }
    }
}
