//! Herald with a session to every node of an ejabberd cluster
//! (`xmpp.connect_every_node`): private ejabberd 23.01 nodes on loopback
//! (testkit/src/ejabberd/cluster.rs), the real `herald` binary, real c2s
//! users logged in on each node, the shared RabbitMQ.
//!
//! What an operator relies on, and this test checks: the sessions make one
//! stream, so users of every node are seen and reached once; a job counts
//! as read only once every node has read its part (a frozen node holds the
//! report back); when a node dies in the middle of a job, Herald starts its
//! stream again on the sessions left (without reopening them), every
//! recipient is accounted for in one report, duplicates stay within what
//! it allows, and the dead node's users count offline.

use std::time::{Duration, Instant};

use herald_testkit::delivery::{assert_everyone_got_it, own_report, reports_of};
use herald_testkit::ejabberd::on_cluster::{
    assert_counts, cluster_of, job_to_everyone, log_in_everywhere, HeraldOnCluster, COLLECT,
    FREEZING, OFFLINE_PER_NODE, ONLINE_PER_NODE,
};
use herald_testkit::events::report_within;
use herald_testkit::server::{signal, XmppServer};

const WAIT: Duration = Duration::from_secs(30);
/// How long a job written into a frozen node must stay unreported: far
/// longer than the live nodes take to answer the barrier after it.
const FROZEN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_to_every_node_makes_one_stream_that_waits_for_every_node_and_outlives_one() {
    const NODES: usize = 3;
    let began = Instant::now();
    let mut cluster = cluster_of(NODES);
    // A session to every node, and the settings for freezing one.
    let env = [
        ("HERALD_XMPP__CONNECT_EVERY_NODE", "true"),
        FREEZING[0],
        FREEZING[1],
        FREEZING[2],
    ];
    let mut attached = HeraldOnCluster::start(&cluster, &env).await;
    attached
        .herald
        .wait_metric("herald_xmpp_sessions", NODES as f64, WAIT);
    let mut users = log_in_everywhere(&cluster).await;
    let (online, offline) = (NODES * ONLINE_PER_NODE, NODES * OFFLINE_PER_NODE);
    // Each user's presence comes on their own node's session: all of them
    // are seen only if every session is read.
    attached
        .herald
        .wait_metric("herald_online_users", online as f64, WAIT);

    attached
        .deliver_to_everyone_once(&mut users, "everyone", "to every node")
        .await;

    // The last node, frozen, reads nothing of what Herald writes to it:
    // the live nodes answer the job's barriers, but the job is not read
    // until it too answers, so no report may go out.
    let frozen = cluster.node(NODES - 1).pid().expect("the last node runs");
    signal(frozen, "STOP");
    let job = job_to_everyone(NODES, "mid-kill", "evacuate");
    attached.amqp.publish_json(&attached.names.jobs, &job).await;
    attached.herald.wait_log_count("job fanned out", 2, WAIT);
    let early = report_within(&mut attached.reports, "mid-kill", FROZEN).await;
    assert_eq!(early, None, "reported before the frozen node read the job");

    // It dies: the stream is lost with it, and opened again on the others.
    let killed_at = Instant::now();
    cluster.node_mut(NODES - 1).kill();
    attached.herald.wait_log_count("XMPP stream lost", 1, WAIT);
    attached
        .herald
        .wait_log_count("XMPP component connected", 2, WAIT);
    let reconnected = killed_at.elapsed();
    attached
        .herald
        .wait_metric("herald_xmpp_sessions", (NODES - 1) as f64, WAIT);

    // The sessions to the live nodes stayed open: only the dead node's
    // was lost (reopening the others would race the server's routes to
    // the closed ones).
    let opened = attached.herald.log_count("XMPP session connected");
    assert_eq!(opened, NODES, "sessions opened in all");

    let report = own_report(&reports_of(&mut attached.reports, "mid-kill").await);
    let taking_jobs = killed_at.elapsed();
    assert_counts(&report, online - ONLINE_PER_NODE, offline + ONLINE_PER_NODE);
    let mut twice = 0;
    for node in users[..NODES - 1].iter_mut() {
        twice += assert_everyone_got_it(node, "evacuate", COLLECT, &report).await;
    }
    eprintln!(
        "stream again on {} nodes {reconnected:?} after the kill, the job reported after \
         {taking_jobs:?}; {twice} users got it twice (its report allows {}); whole test {:?}",
        NODES - 1,
        report["possible_duplicates"],
        began.elapsed()
    );
    attached.stop_leaving_nothing().await;
}
