//! Herald attached to a private ejabberd cluster
//! ([`super::EjabberdCluster`]), and the users of each node: what the
//! cluster tests share.

use std::time::Duration;

use serde_json::{json, Value};

use super::EjabberdCluster;
use crate::amqp::{Amqp, EventTap};
use crate::c2s::XmppUser;
use crate::delivery::{assert_everyone_got_it, own_report, reports_of};
use crate::herald::{Herald, Names};

/// How long users' messages are collected once a job is reported: the
/// server has read them all by then, delivery to c2s clients follows.
pub const COLLECT: Duration = Duration::from_secs(3);
/// Users logged in on each node.
pub const ONLINE_PER_NODE: usize = 10;
/// Provisioned users per node who never log in.
pub const OFFLINE_PER_NODE: usize = 2;

/// Herald's settings for a test that freezes a node while a job is
/// written to it: checkpoints every 5 recipients, so that the job spans
/// several; a read timeout far above the time it is frozen; no probes of
/// the users who never logged in (a frozen node would hold the job on its
/// probes).
pub const FREEZING: [(&str, &str); 3] = [
    ("HERALD_BROADCAST__CHECKPOINT_EVERY", "5"),
    ("HERALD_XMPP__READ_TIMEOUT_SECS", "600"),
    ("HERALD_XMPP__UNKNOWN_PROBE_TTL_SECS", "0"),
];

/// The users of node `node`: `n<node>u<i>`, the first [`ONLINE_PER_NODE`]
/// to log in there, the rest to stay offline.
pub fn users_of(node: usize) -> Vec<String> {
    (0..ONLINE_PER_NODE + OFFLINE_PER_NODE)
        .map(|i| format!("n{node}u{i}"))
        .collect()
}

/// Boots a cluster of `size` nodes with every node's users provisioned.
pub fn cluster_of(size: usize) -> EjabberdCluster {
    let names: Vec<String> = (0..size).flat_map(users_of).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    EjabberdCluster::start(size, &refs)
}

/// A job to every provisioned user of the `size` nodes.
pub fn job_to_everyone(size: usize, id: &str, body: &str) -> Value {
    let to: Vec<String> = (0..size)
        .flat_map(users_of)
        .map(|user| format!("{user}@localhost"))
        .collect();
    json!({"id": id, "to": to, "body": body})
}

/// Logs each node's online users in on that node; returns them per node.
pub async fn log_in_everywhere(cluster: &EjabberdCluster) -> Vec<Vec<XmppUser>> {
    let mut everyone = Vec::new();
    for (index, node) in cluster.nodes().iter().enumerate() {
        let mut users = Vec::new();
        for user in &users_of(index)[..ONLINE_PER_NODE] {
            users.push(XmppUser::login_available(node, user, "r").await);
        }
        everyone.push(users);
    }
    everyone
}

/// Herald attached to the cluster (every node listed, the first tried
/// first), with a tap on its reports and presence events.
pub struct HeraldOnCluster {
    pub herald: Herald,
    pub names: Names,
    pub amqp: Amqp,
    pub reports: EventTap,
    pub presence: EventTap,
    _dir: tempfile::TempDir,
}

impl HeraldOnCluster {
    pub async fn start(cluster: &EjabberdCluster, env: &[(&str, &str)]) -> HeraldOnCluster {
        let names = Names::unique();
        let dir = tempfile::tempdir().expect("temp dir");
        let servers = cluster.component_addrs();
        let herald = Herald::start_on_servers(cluster.node(0), &servers, &names, dir.path(), env);
        HeraldOnCluster {
            reports: EventTap::bind(&names.events, "job.report").await,
            presence: EventTap::bind(&names.events, "presence.changed").await,
            amqp: Amqp::connect().await,
            herald,
            names,
            _dir: dir,
        }
    }

    /// The index of the node Herald connected to last, from its log.
    pub fn node(&self, cluster: &EjabberdCluster) -> usize {
        let lines = self.herald.log_lines("XMPP component connected");
        let line = lines.last().expect("Herald connected to the server");
        let address = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("server="))
            .unwrap_or_else(|| panic!("no server= in {line:?}"));
        cluster
            .index_at(address)
            .unwrap_or_else(|| panic!("{address} is no node of the cluster"))
    }

    /// Publishes `job` and returns its one own report.
    pub async fn deliver(&mut self, job: Value) -> Value {
        let id = job["id"].as_str().expect("a job id").to_string();
        self.amqp.publish_json(&self.names.jobs, &job).await;
        own_report(&reports_of(&mut self.reports, &id).await)
    }

    /// Publishes a job to every provisioned user of the cluster's `users`
    /// nodes (all of them online) and checks that each got it once and
    /// the report counts them so; returns the report.
    pub async fn deliver_to_everyone_once(
        &mut self,
        users: &mut [Vec<XmppUser>],
        id: &str,
        body: &str,
    ) -> Value {
        let nodes = users.len();
        let report = self.deliver(job_to_everyone(nodes, id, body)).await;
        assert_counts(&report, nodes * ONLINE_PER_NODE, nodes * OFFLINE_PER_NODE);
        for node in users.iter_mut() {
            let twice = assert_everyone_got_it(node, body, COLLECT, &report).await;
            assert_eq!(twice, 0, "{report}");
        }
        report
    }

    /// Stops Herald, which must exit cleanly leaving no job in the queue
    /// and none dead.
    pub async fn stop_leaving_nothing(mut self) {
        let status = self.herald.stop();
        assert_eq!(status, Some(0), "{}", self.herald.log_text());
        let (jobs, dead) = (&self.names.jobs, &self.names.dead);
        assert_eq!(self.amqp.message_count(jobs).await, Some(0));
        assert_eq!(self.amqp.message_count(dead).await, Some(0));
    }
}

pub fn assert_counts(report: &Value, sent: usize, offline: usize) {
    assert_eq!(report["recipients"], sent + offline, "{report}");
    assert_eq!(report["sent"], sent, "{report}");
    assert_eq!(report["skipped"]["offline"], offline, "{report}");
}
