//! A RabbitMQ cluster of private nodes on loopback, for the tests of Herald
//! on a cluster (failover between nodes, quorum queues).
//!
//! Each node is a [`PrivateBroker`]: its own node name, ports, data dir and
//! process group, stopped by pid when dropped (also when a test panics).
//! They share one Erlang cookie, written into each node's `HOME` before it
//! boots. The nodes boot at once; then every node but the first leaves its
//! own one-node cluster and joins the first's, one node after the other,
//! with `rabbitmqctl stop_app`, `join_cluster`, `start_app`, the way an
//! operator forms a cluster by hand (RabbitMQ resets a node as it joins). A node that is killed stays dead:
//! the others carry on (quorum queues keep working while a majority lives).

use std::time::Instant;

use super::PrivateBroker;
use crate::erlang::boot_side_by_side;
use crate::server::random_hex;

/// Running (or killed) nodes of one cluster, the first being the one the
/// others joined.
pub struct PrivateCluster {
    nodes: Vec<PrivateBroker>,
}

impl PrivateCluster {
    /// Boots `size` nodes and joins them into one cluster; returns once
    /// every node runs in it. Panics with the logs if that fails. Blocking:
    /// fine to call from async tests.
    pub fn start(size: usize) -> PrivateCluster {
        assert!(size >= 2, "a cluster of {size} nodes is no cluster");
        let began = Instant::now();
        let cookie = format!("HERALDTEST{}", random_hex().to_uppercase());
        let nodes = boot_side_by_side(size, |_| PrivateBroker::boot(None, Some(&cookie)));
        let booted = began.elapsed();
        let cluster = PrivateCluster { nodes };
        let first = cluster.nodes[0].node().to_string();
        // One at a time: two nodes joining at once race in Mnesia's schema
        // (seen here: `start_app` of one failed with a mnesia_app badmatch).
        for node in &cluster.nodes[1..] {
            node.ctl(&["stop_app"]);
            node.ctl(&["join_cluster", &first]);
            node.ctl(&["start_app"]);
        }
        cluster.assert_running_together();
        eprintln!(
            "RabbitMQ cluster of {size} nodes: booted in {booted:?}, joined in {:?}",
            began.elapsed() - booted
        );
        cluster
    }

    pub fn nodes(&self) -> &[PrivateBroker] {
        &self.nodes
    }

    pub fn node_mut(&mut self, index: usize) -> &mut PrivateBroker {
        &mut self.nodes[index]
    }

    /// Every node's `amqp://` URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(PrivateBroker::url).collect()
    }

    /// The index of the node that listens at `address` (`127.0.0.1:PORT`,
    /// as Herald logs the broker it connected to).
    pub fn index_at(&self, address: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.address() == address)
    }

    /// The URL of a node that still runs, other than `except`.
    pub fn url_of_another(&mut self, except: usize) -> String {
        let index = (0..self.nodes.len())
            .find(|&i| i != except && self.nodes[i].is_running())
            .expect("another node of the cluster runs");
        self.nodes[index].url()
    }

    /// Panics unless the first node sees every node running in its cluster.
    fn assert_running_together(&self) {
        let status = self.nodes[0].ctl(&["cluster_status", "--formatter", "json"]);
        let json = status.find('{').map_or("", |at| &status[at..]);
        let status: serde_json::Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("rabbitmqctl cluster_status: {e}:\n{status}"));
        let running = &status["running_nodes"];
        for node in &self.nodes {
            assert!(
                running
                    .as_array()
                    .is_some_and(|nodes| nodes.iter().any(|n| n == node.node())),
                "{} is not running in the cluster: {status}",
                node.node()
            );
        }
    }
}
