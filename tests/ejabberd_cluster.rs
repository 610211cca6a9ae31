//! Herald on an ejabberd cluster: private ejabberd 23.01 nodes on loopback
//! joined into one Mnesia cluster serving the same domain
//! (testkit/src/ejabberd/cluster.rs), the real `herald` binary attached to
//! one node's component port with every node listed in `xmpp.servers`, real
//! c2s users logged in on different nodes, the shared RabbitMQ.
//!
//! What an operator relies on, and these tests check: a job reaches every
//! available user on every node once, and its report counts them all; a
//! user leaving on another node than Herald's is seen; when the node
//! Herald is attached to dies, in the middle of a job or between two,
//! Herald goes on to the next node, every recipient of every job is
//! accounted for in one report per job, duplicates stay within what the
//! report allows, and the users of the dead node (disconnected with it)
//! count offline from then on.

use std::time::{Duration, Instant};

use herald_testkit::delivery::{assert_everyone_got_it, own_report, reports_of};
use herald_testkit::ejabberd::on_cluster::{
    assert_counts, cluster_of, job_to_everyone, log_in_everywhere, HeraldOnCluster, COLLECT,
    FREEZING, OFFLINE_PER_NODE, ONLINE_PER_NODE,
};
use herald_testkit::events::await_presence;
use herald_testkit::server::{signal, XmppServer};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_available_user_on_every_node_gets_a_job_once_and_leaving_on_another_node_is_seen() {
    const NODES: usize = 2;
    let cluster = cluster_of(NODES);
    let mut attached = HeraldOnCluster::start(&cluster, &[]).await;
    assert_eq!(
        attached.node(&cluster),
        0,
        "the first server is tried first"
    );
    let mut users = log_in_everywhere(&cluster).await;
    let online = NODES * ONLINE_PER_NODE;
    attached
        .herald
        .wait_metric("herald_online_users", online as f64, WAIT);

    attached
        .deliver_to_everyone_once(&mut users, "everyone", "to every node")
        .await;

    // Two users of the node Herald is not attached to go: one logs out,
    // the other's connection just drops. The server tells Herald.
    let mut second = users.pop().expect("the second node's users");
    let dropped = second.pop().expect("a user");
    let left = second.pop().expect("another user");
    let (dropped_jid, left_jid) = (dropped.jid(), left.jid());
    left.disconnect().await;
    dropped.drop_connection();
    await_presence(&mut attached.presence, &left_jid, None).await;
    await_presence(&mut attached.presence, &dropped_jid, None).await;

    let report = attached
        .deliver(job_to_everyone(NODES, "after-leaving", "still here"))
        .await;
    assert_counts(&report, online - 2, NODES * OFFLINE_PER_NODE + 2);
    users.push(second);
    for node in users.iter_mut() {
        let twice = assert_everyone_got_it(node, "still here", COLLECT, &report).await;
        assert_eq!(twice, 0, "{report}");
    }
    assert_eq!(
        attached.herald.stop(),
        Some(0),
        "{}",
        attached.herald.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_moves_to_the_next_node_when_its_node_dies_mid_job_or_between_jobs() {
    const NODES: usize = 3;
    let began = Instant::now();
    let mut cluster = cluster_of(NODES);
    let env = FREEZING;
    let mut attached = HeraldOnCluster::start(&cluster, &env).await;
    assert_eq!(attached.node(&cluster), 0);
    let mut users = log_in_everywhere(&cluster).await;
    let (online, offline) = (NODES * ONLINE_PER_NODE, NODES * OFFLINE_PER_NODE);
    attached
        .herald
        .wait_metric("herald_online_users", online as f64, WAIT);

    // Mid-job: the first node, frozen, reads the job's messages from
    // Herald's stream but routes none of them; then it dies.
    let frozen = cluster.node(0).pid().expect("the first node runs");
    signal(frozen, "STOP");
    attached
        .amqp
        .publish_json(
            &attached.names.jobs,
            &job_to_everyone(NODES, "mid-kill", "evacuate"),
        )
        .await;
    attached.herald.wait_log_count("job fanned out", 1, WAIT);
    let killed_at = Instant::now();
    cluster.node_mut(0).kill();
    attached.herald.wait_log_count("XMPP stream lost", 1, WAIT);
    attached
        .herald
        .wait_log_count("XMPP component connected", 2, WAIT);
    let reconnected = killed_at.elapsed();
    attached.herald.wait_log_count("taking jobs", 2, WAIT);
    let taking_jobs = killed_at.elapsed();
    assert_eq!(attached.node(&cluster), 1, "the next server in the list");

    // The job came again on the new stream: the users of the surviving
    // nodes got it, those of the dead node count offline.
    let report = own_report(&reports_of(&mut attached.reports, "mid-kill").await);
    assert_counts(&report, online - ONLINE_PER_NODE, offline + ONLINE_PER_NODE);
    let mut twice = 0;
    for node in users[1..].iter_mut() {
        twice += assert_everyone_got_it(node, "evacuate", COLLECT, &report).await;
    }
    let report_allows = report["possible_duplicates"].clone();

    // Between two jobs: the node Herald moved to dies too.
    cluster.node_mut(1).kill();
    attached.herald.wait_log_count("XMPP stream lost", 2, WAIT);
    attached
        .herald
        .wait_log_count("XMPP component connected", 3, WAIT);
    assert_eq!(attached.node(&cluster), 2, "the last node left");
    attached
        .herald
        .wait_metric("herald_online_users", ONLINE_PER_NODE as f64, WAIT);
    let report = attached
        .deliver(job_to_everyone(NODES, "after-kills", "all clear"))
        .await;
    assert_counts(&report, ONLINE_PER_NODE, offline + 2 * ONLINE_PER_NODE);
    let again = assert_everyone_got_it(&mut users[2], "all clear", COLLECT, &report).await;
    assert_eq!(again, 0, "{report}");

    eprintln!(
        "Herald on the next node {reconnected:?} after the kill, taking jobs again after \
         {taking_jobs:?}; {twice} users got it twice (its report allows {report_allows}); \
         whole test {:?}",
        began.elapsed()
    );
    attached.stop_leaving_nothing().await;
}
