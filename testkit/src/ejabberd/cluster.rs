//! An ejabberd cluster of private nodes on loopback, serving the same
//! domains, for the tests of Herald on a cluster (users on every node,
//! failover of the component connection between nodes).
//!
//! Each node is an [`Ejabberd`]: its own node name, ports, Mnesia
//! directory and process, killed by pid when dropped (also when a test
//! panics). They share one Erlang cookie, one component secret and the
//! users' passwords. The nodes boot at once, and the first provisions the
//! users while the others boot; then every other node joins the first's
//! Mnesia cluster, one node after the other (two nodes joining at once
//! race in Mnesia's schema), with `ejabberd_cluster:join/1`, what
//! `ejabberdctl join_cluster` runs: the node stops ejabberd, drops its own
//! Mnesia schema, copies every table from the cluster and starts ejabberd
//! again. A node that is killed stays dead: the others carry on.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{Ejabberd, Shared};
use crate::erlang::boot_side_by_side;
use crate::server::XmppServer;

/// How long a joined node may take to listen again after ejabberd restarted in it.
const RELISTEN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs in a hidden Erlang node: makes the ejabberd node join the cluster
/// of `HERALD_EJABBERD_JOIN`, then checks that the latter runs it.
const JOIN: &str = r#"
Env = fun(Name) -> list_to_atom(os:getenv(Name)) end,
Node = Env("HERALD_EJABBERD_NODE"),
First = Env("HERALD_EJABBERD_JOIN"),
case rpc:call(Node, ejabberd_cluster, join, [First], infinity) of
    ok ->
        Running = rpc:call(First, mnesia, system_info, [running_db_nodes]),
        case is_list(Running) andalso lists:member(Node, Running) of
            true -> io:format("joined ~p~n", [Running]), halt(0);
            false -> io:format("joined, but ~p runs ~p~n", [First, Running]), halt(1)
        end;
    Other -> io:format("joining failed: ~p~n", [Other]), halt(1)
end.
"#;

/// Running (or killed) nodes of one cluster, the first being the one the
/// others joined.
pub struct EjabberdCluster {
    nodes: Vec<Ejabberd>,
}

impl EjabberdCluster {
    /// Boots `size` nodes with `users` provisioned as by
    /// [`Ejabberd::start`], and joins them into one cluster; returns once
    /// every node runs in it and listens. Any node takes any user's login.
    /// Panics with the logs if that fails. Blocking: fine to call from
    /// async tests.
    pub fn start(size: usize, users: &[&str]) -> EjabberdCluster {
        assert!(size >= 2, "a cluster of {size} nodes is no cluster");
        let began = Instant::now();
        let shared = Shared::new(users);
        let nodes = boot_side_by_side(size, |index| {
            let mut node = Ejabberd::boot(shared.clone(), None);
            // Once, on the first node: the others copy its tables as they join.
            if index == 0 {
                node.provision();
            }
            node
        });
        let booted = began.elapsed();
        let cluster = EjabberdCluster { nodes };
        for node in &cluster.nodes[1..] {
            node.join(&cluster.nodes[0]);
        }
        eprintln!(
            "ejabberd cluster of {size} nodes, {} users: booted in {booted:?}, joined in {:?}",
            users.len(),
            began.elapsed() - booted
        );
        cluster
    }

    pub fn nodes(&self) -> &[Ejabberd] {
        &self.nodes
    }

    pub fn node(&self, index: usize) -> &Ejabberd {
        &self.nodes[index]
    }

    pub fn node_mut(&mut self, index: usize) -> &mut Ejabberd {
        &mut self.nodes[index]
    }

    /// Every node's component listener, `127.0.0.1:PORT`, in order (for
    /// Herald's `xmpp.servers`).
    pub fn component_addrs(&self) -> Vec<String> {
        self.nodes.iter().map(XmppServer::component_addr).collect()
    }

    /// The index of the node whose component listener is `address`
    /// (`127.0.0.1:PORT`, as Herald logs the server it connected to).
    pub fn index_at(&self, address: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.component_addr() == address)
    }
}

impl Ejabberd {
    /// Joins the cluster of `first` (see the module docs) and waits until
    /// this node listens again. Panics with both logs if that fails.
    fn join(&self, first: &Ejabberd) {
        let output = self.eval_hidden(JOIN, &[("HERALD_EJABBERD_JOIN", OsStr::new(&first.node))]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "{} could not join the cluster of {}: {said}\n--- {} ---\n{}\n--- {} ---\n{}",
            self.node,
            first.node,
            self.node,
            self.log_tail(30),
            first.node,
            first.log_tail(30),
        );
        // ejabberd started again: its listeners open anew.
        let deadline = Instant::now() + RELISTEN_TIMEOUT;
        for address in [self.c2s_addr(), self.component_addr()] {
            let address: SocketAddr = address.parse().expect("a loopback address");
            while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "{} does not listen on {address} after joining the cluster:\n{}",
                    self.node,
                    self.log_tail(30)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
