//! Herald given several broker addresses (`amqp.urls`): it connects to one
//! node at a time and, when connecting fails or the connection is lost,
//! goes on to the next. First against the shared broker behind an address
//! where nothing listens; then on a three-node RabbitMQ cluster (private
//! nodes on loopback, testkit/src/rabbitmq/cluster.rs) with quorum queues
//! and the store in a stream (`store.backend = "stream"`), where the node
//! Herald is connected to dies in the middle of a job, and a Herald started
//! afterwards with a store path of its own still knows the job completed.
//! Real Prosody, real c2s users, the real `herald` binary.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use herald_testkit::amqp::{amqp_url, Amqp};
use herald_testkit::c2s::XmppUser;
use herald_testkit::delivery::{assert_everyone_got_it, own_report};
use herald_testkit::herald::{Herald, Names};
use herald_testkit::prosody::Prosody;
use herald_testkit::rabbitmq::PrivateCluster;
use herald_testkit::server::XmppServer;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const ONLINE: usize = 100;
const OFFLINE: usize = 400;

/// A loopback address where nothing listens (a port just given up).
fn nothing_listens() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_refuses_the_connection_is_passed_over_for_the_next() {
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = nothing_listens();
    let urls = [format!("amqp://guest:guest@{dead}/%2f"), amqp_url()];
    let mut herald = Herald::start_on_brokers(&server, &names, dir.path(), &urls, &[]);
    herald.wait_log_count("AMQP connected", 1, WAIT);
    let failed = herald.log_lines("AMQP connection failed");
    assert!(
        failed
            .first()
            .is_some_and(|line| line.contains(&format!("broker={dead}"))),
        "the first node was tried first: {failed:?}"
    );
    let connected = herald.log_lines("AMQP connected");
    assert_eq!(connected.len(), 1, "{connected:?}");
    assert!(!connected[0].contains(&dead), "{connected:?}");
    assert_eq!(herald.log_count("guest:guest"), 0, "no password in the log");

    let mut alice = XmppUser::login_available(&server, "alice", "r").await;
    herald.wait_metric("herald_online_users", 1.0, WAIT);
    let amqp = Amqp::connect().await;
    let job = json!({"id": "next-node", "to": [server.jid("alice")], "body": "via the next node"});
    amqp.publish_json(&names.jobs, &job).await;
    let message = alice.next_message(WAIT).await.expect("alice got the job");
    assert_eq!(message.1, "via the next node");
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
    amqp.close().await;
}

/// `herald send` with `args`, configured by `env` alone.
fn herald_send(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("HERALD_")) {
        command.env_remove(key);
    }
    command
        .arg("send")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run herald send")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_send_publishes_through_the_first_node_that_answers() {
    let amqp = Amqp::connect().await;
    let jobs = herald_testkit::amqp::unique_name("herald-test-send-urls.jobs");
    amqp.channel
        .queue_declare(
            jobs.as_str().into(),
            lapin::options::QueueDeclareOptions::durable(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("declare the jobs queue");
    let dead = nothing_listens();
    let dead_url = format!("amqp://guest:guest@{dead}/%2f");
    let job = ["--no-wait", "--to", "alice@localhost", "--body", "hi"];

    let urls = format!("[\"{dead_url}\", \"{}\"]", amqp_url());
    let env = [
        ("HERALD_AMQP__URLS", urls.as_str()),
        ("HERALD_AMQP__JOBS_QUEUE", &jobs),
    ];
    let sent = herald_send(&env, &job);
    let stderr = String::from_utf8_lossy(&sent.stderr);
    assert!(sent.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to the broker at {dead}")),
        "{stderr}"
    );
    assert!(!stderr.contains("guest:guest"), "no password: {stderr}");
    assert_eq!(amqp.message_count(&jobs).await, Some(1));

    let urls = format!("[\"{dead_url}\", \"{dead_url}\"]");
    let env = [
        ("HERALD_AMQP__URLS", urls.as_str()),
        ("HERALD_AMQP__JOBS_QUEUE", &jobs),
    ];
    let failed = herald_send(&env, &job);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("amqp.url or amqp.urls"), "{stderr}");
    amqp.delete_queue(&jobs).await;
    amqp.close().await;
}

fn job_to_everyone(id: &str, body: &str) -> Value {
    let mut to: Vec<String> = (0..ONLINE).map(|i| format!("u{i}@localhost")).collect();
    to.extend((0..OFFLINE).map(|i| format!("ghost{i}@localhost")));
    json!({"id": id, "to": to, "body": body})
}

/// The index of the node Herald connected to last, from its log.
fn connected_node(herald: &Herald, cluster: &PrivateCluster) -> usize {
    let lines = herald.log_lines("AMQP connected");
    let line = lines.last().expect("Herald connected to the broker");
    let address = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("broker="))
        .unwrap_or_else(|| panic!("no broker= in {line:?}"));
    cluster
        .index_at(address)
        .unwrap_or_else(|| panic!("{address} is no node of the cluster"))
}

/// Every report of job `id` caught by the quorum queue `reports`: waits for
/// the first, then takes more until none comes for a few seconds.
async fn reports_of(url: &str, reports: &str, id: &str) -> Vec<Value> {
    let amqp = Amqp::connect_to(url).await;
    let first = amqp.get_one(reports, WAIT).await;
    let mut all: Vec<Value> = first.into_iter().map(|m| m.json()).collect();
    let more = amqp.drain(reports, Duration::from_secs(3)).await;
    all.extend(more.iter().map(|m| m.json()));
    amqp.close().await;
    all.retain(|report| report["id"] == id);
    all
}

fn assert_counts_everyone(report: &Value) {
    assert_eq!(report["recipients"], ONLINE + OFFLINE, "{report}");
    assert_eq!(report["sent"], ONLINE, "{report}");
    assert_eq!(report["skipped"]["offline"], OFFLINE, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_herald_uses_mid_job_loses_nothing_and_herald_moves_to_another() {
    let began = Instant::now();
    let mut cluster = PrivateCluster::start(3);
    let booted = began.elapsed();
    let names: Vec<String> = (0..ONLINE).map(|i| format!("u{i}")).collect();
    let user_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let server = Prosody::start(&user_refs);
    let queues = Names::unique();
    let dir = tempfile::tempdir().expect("temp dir");
    // The store in a stream, replicated by the cluster (its leader on the
    // node Herald declares it through: the one killed); checkpoints every
    // 10 recipients; a read timeout far above the time the server is
    // frozen; no probes of the offline recipients (they have no accounts,
    // and a frozen server would hold the job on its probes).
    let env = [
        ("HERALD_AMQP__QUEUE_TYPE", "quorum"),
        ("HERALD_STORE__BACKEND", "stream"),
        ("HERALD_BROADCAST__CHECKPOINT_EVERY", "10"),
        ("HERALD_XMPP__READ_TIMEOUT_SECS", "600"),
        ("HERALD_XMPP__UNKNOWN_PROBE_TTL_SECS", "0"),
    ];
    let urls = cluster.urls();
    let mut herald = Herald::start_on_brokers(&server, &queues, dir.path(), &urls, &env);
    herald.wait_log_count("AMQP connected", 1, WAIT);
    let first = connected_node(&herald, &cluster);

    // Reports are caught in a quorum queue too, so that they outlive any
    // one node.
    let amqp = Amqp::connect_to(&cluster.url_of_another(first)).await;
    let reports = amqp.bind_quorum_queue(&queues.events, "job.report").await;
    amqp.close().await;
    let mut users = Vec::new();
    for name in &names {
        users.push(XmppUser::login_available(&server, name, "r").await);
    }
    herald.wait_metric("herald_online_users", ONLINE as f64, WAIT);

    // A frozen server confirms nothing: the job is written but cannot
    // complete before the node goes away.
    let prosody = server.pid().expect("prosody runs");
    herald_testkit::server::signal(prosody, "STOP");
    let amqp = Amqp::connect_to(&cluster.url_of_another(first)).await;
    amqp.publish_json(&queues.jobs, &job_to_everyone("mid-kill", "evacuate"))
        .await;
    amqp.close().await;
    herald.wait_log_count("job fanned out", 1, WAIT);

    let killed_at = Instant::now();
    cluster.node_mut(first).kill();
    herald.wait_log_count("AMQP connection lost", 1, WAIT);
    // Herald moves on to another node; the quorum queue, led from a
    // surviving node now, redelivers the unacknowledged job, which Herald
    // delivers again (its first attempt belongs to a lost connection).
    herald.wait_log_count("AMQP connected", 2, WAIT);
    let reconnected = killed_at.elapsed();
    let now = connected_node(&herald, &cluster);
    assert_ne!(now, first, "Herald connected to the node that was killed");
    // Thawed first: Herald writes no more than the read window lets it
    // to a server that has not read the first attempt.
    herald_testkit::server::signal(prosody, "CONT");
    herald.wait_log_count("job fanned out", 2, WAIT);

    let survivor = cluster.url_of_another(first);
    let report = own_report(&reports_of(&survivor, &reports, "mid-kill").await);
    assert_counts_everyone(&report);
    let twice =
        assert_everyone_got_it(&mut users, "evacuate", Duration::from_secs(3), &report).await;
    let report_allows = report["possible_duplicates"].clone();
    herald.wait_readyz(200, WAIT);

    // A job published after the kill is delivered to everyone once.
    let amqp = Amqp::connect_to(&survivor).await;
    amqp.publish_json(&queues.jobs, &job_to_everyone("after-kill", "all clear"))
        .await;
    let report = own_report(&reports_of(&survivor, &reports, "after-kill").await);
    assert_counts_everyone(&report);
    for user in users.iter_mut() {
        let message = user
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("{} got nothing after the kill", user.jid()));
        assert_eq!(message.1, "all clear");
    }
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
    assert_eq!(amqp.message_count(&queues.jobs).await, Some(0));

    // What the first Herald committed outlived the stream's first leader:
    // a successor with a store path of its own reads that the job was done,
    // and reports it again only as a duplicate.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let mut successor = Herald::start_on_brokers(&server, &queues, elsewhere.path(), &urls, &env);
    amqp.publish_json(&queues.jobs, &job_to_everyone("mid-kill", "evacuate"))
        .await;
    let again = reports_of(&survivor, &reports, "mid-kill").await;
    assert!(
        again.iter().all(|report| report["duplicate"] == true) && !again.is_empty(),
        "{again:?}"
    );
    assert!(
        !elsewhere.path().join("herald.store").exists(),
        "a store file"
    );
    assert_eq!(successor.stop(), Some(0), "{}", successor.log_text());
    amqp.close().await;
    eprintln!(
        "cluster boot {booted:?}, Herald on another node {reconnected:?} after the kill, \
         {twice} users got the first job twice (its report allows {}), whole test {:?}",
        report_allows,
        began.elapsed()
    );
}
