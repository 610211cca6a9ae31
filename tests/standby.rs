//! A second Herald on the same domain, queues and store is a standby: it
//! holds no XMPP connection and consumes nothing while the first lives,
//! and takes over when the first is killed (SIGKILL) in the middle of a
//! job. Real Prosody and ejabberd, real c2s users, real RabbitMQ (classic
//! and quorum queues), the real `herald` binary twice.

use std::time::{Duration, Instant};

use herald_testkit::amqp::{broker_connections_of, close_broker_connection, Amqp, EventTap};
use herald_testkit::c2s::XmppUser;
use herald_testkit::delivery::{assert_everyone_got_it, own_report, reports_of};
use herald_testkit::ejabberd::Ejabberd;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::prosody::Prosody;
use herald_testkit::server::{signal, XmppServer};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const ONLINE: usize = 100;
/// Recipients without an account: the job is big, its online part small.
const OFFLINE: usize = 1_000;

fn job(id: &str, body: &str, offline: usize) -> Value {
    let mut to: Vec<String> = (0..ONLINE).map(|i| format!("u{i}@localhost")).collect();
    to.extend((0..offline).map(|i| format!("ghost{i}@localhost")));
    json!({"id": id, "to": to, "body": body})
}

fn counts(report: &Value, offline: usize) {
    assert_eq!(report["recipients"], ONLINE + offline, "{report}");
    assert_eq!(report["sent"], ONLINE, "{report}");
    assert_eq!(report["skipped"]["offline"], offline, "{report}");
}

/// How many consumers the broker counts on `queue`.
async fn consumers(amqp: &Amqp, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    amqp.channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .expect("the jobs queue exists")
        .consumer_count()
}

fn metric(herald: &Herald, series: &str) -> f64 {
    herald_testkit::http::value(&herald.metrics(), series)
}

/// Where B's store is.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    /// A's, as on one host.
    Shared,
    /// One of its own, empty, as on another host without shared storage.
    Empty,
    /// Both's in a stream on the broker (`store.backend = "stream"`), each
    /// with a store path of its own that neither uses, as on two hosts.
    Stream,
}

/// Herald A, then B with the same names (and `store`); A is killed while
/// the server, frozen, holds a job A wrote; B takes it over. `env` is both's.
async fn a_standby_takes_over_a_killed_herald_mid_job<S: XmppServer>(
    server: S,
    pid: u32,
    env: &[(&str, &str)],
    store: Store,
) {
    let names = Names::unique();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let shared = dir_a.path().join("herald.store");
    let shared = shared.to_str().expect("a UTF-8 path");
    // Checkpoints every 10 recipients; a read timeout far above the time the
    // server is frozen.
    let mut env = env.to_vec();
    env.extend([
        ("HERALD_BROADCAST__CHECKPOINT_EVERY", "10"),
        ("HERALD_XMPP__READ_TIMEOUT_SECS", "600"),
    ]);
    if store == Store::Stream {
        env.push(("HERALD_STORE__BACKEND", "stream"));
    }
    let mut env_a = env.clone();
    // No probes of the recipients without an account. B on an empty store
    // must probe the recipients it never heard of: the online ones answer.
    env_a.push(("HERALD_XMPP__UNKNOWN_PROBE_TTL_SECS", "0"));
    let mut a = Herald::start_with_env(&server, &names, dir_a.path(), &env_a);
    let mut reports = EventTap::bind(&names.events, "job.report").await;
    let env_b = match store {
        Store::Shared => [env_a, vec![("HERALD_STORE__PATH", shared)]].concat(),
        Store::Empty => env,
        Store::Stream => env_a,
    };
    let mut b = Herald::launch_with_env(&server, &names, dir_b.path(), &env_b);
    b.wait_log_count("standing by", 1, WAIT);

    // B stands by: not ready, never tried the XMPP server, consumes nothing.
    let (status, body) = herald_testkit::http::get(&b.http_addr(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("standing by"), "{body}");
    assert_eq!(b.log_count("XMPP component connected"), 0);
    let amqp = Amqp::connect().await;
    let mut clients = Vec::new();
    for user in users() {
        clients.push(XmppUser::login_available(&server, &user, "r").await);
    }
    a.wait_metric("herald_online_users", ONLINE as f64, WAIT);
    amqp.publish_json(&names.jobs, &job("before", "drill", 0))
        .await;
    let report = own_report(&reports_of(&mut reports, "before").await);
    counts(&report, 0);
    let twice =
        assert_everyone_got_it(&mut clients, "drill", Duration::from_secs(2), &report).await;
    assert_eq!(twice, 0, "{report}");
    for (series, active, standby) in [
        ("herald_active", 1.0, 0.0),
        (r#"herald_jobs_total{outcome="delivered"}"#, 1.0, 0.0),
        (r#"herald_xmpp_connects_total{result="ok"}"#, 1.0, 0.0),
        (r#"herald_xmpp_connects_total{result="error"}"#, 0.0, 0.0),
    ] {
        assert_eq!(metric(&a, series), active, "A's {series}");
        assert_eq!(metric(&b, series), standby, "B's {series}");
    }
    assert_eq!(consumers(&amqp, &names.jobs).await, 1, "only A consumes");

    // A frozen server confirms nothing: A's job is written but cannot
    // complete before A dies.
    signal(pid, "STOP");
    amqp.publish_json(&names.jobs, &job("mid-kill", "evacuate", OFFLINE))
        .await;
    a.wait_log_count("job fanned out", 2, WAIT);
    let killed_at = Instant::now();
    a.kill();
    signal(pid, "CONT");
    b.wait_log_count("taking jobs", 1, WAIT);
    let ready_after = killed_at.elapsed();
    b.wait_log_count("job fanned out", 1, WAIT);
    let delivers_after = killed_at.elapsed();

    let report = own_report(&reports_of(&mut reports, "mid-kill").await);
    counts(&report, OFFLINE);
    let twice =
        assert_everyone_got_it(&mut clients, "evacuate", Duration::from_secs(3), &report).await;
    let allows = report["possible_duplicates"].as_u64().unwrap_or(0);
    b.wait_readyz(200, WAIT);
    assert_eq!(metric(&b, "herald_active"), 1.0);
    let remembered = match store {
        Store::Shared | Store::Stream => ONLINE,
        Store::Empty => 0,
    };
    assert_eq!(
        b.log_count(&format!("subscriptions={remembered} ")),
        1,
        "B's store"
    );
    if store == Store::Empty {
        // Of the cut job's recipients, none known: the online ones were
        // learned from their answers to probes.
        assert_eq!(b.log_count("probing unknown recipients users=1100"), 1);
    }
    assert_eq!(consumers(&amqp, &names.jobs).await, 1, "only B consumes");

    // A job published after the takeover reaches everyone once, through B.
    amqp.publish_json(&names.jobs, &job("after", "all clear", 0))
        .await;
    let report = own_report(&reports_of(&mut reports, "after").await);
    counts(&report, 0);
    let again =
        assert_everyone_got_it(&mut clients, "all clear", Duration::from_secs(2), &report).await;
    assert_eq!(again, 0, "{report}");
    assert_eq!(metric(&b, r#"herald_jobs_total{outcome="delivered"}"#), 2.0);
    if store != Store::Empty {
        // A's completed job, published again, is known to B: not sent.
        amqp.publish_json(&names.jobs, &job("before", "drill again", 0))
            .await;
        let again = reports_of(&mut reports, "before").await;
        let duplicate = again.last().expect("a report").clone();
        assert_eq!(duplicate["duplicate"], true, "{duplicate}");
        assert_eq!(metric(&b, r#"herald_jobs_total{outcome="delivered"}"#), 2.0);
    }
    assert_eq!(b.stop(), Some(0), "{}", b.log_text());
    assert_eq!(amqp.message_count(&names.jobs).await, Some(0));
    if store == Store::Stream {
        amqp.delete_queue(&format!("{}.store", names.jobs)).await;
    }
    amqp.close().await;
    eprintln!(
        "{}: SIGKILL of A -> B taking jobs {ready_after:?}, B fanned out the job {delivers_after:?}; \
         {twice} of {ONLINE} users got the cut job twice (its report allows {allows})",
        server.name(),
    );
}

/// Herald `a` says it steps down and exits with status 1, as a supervisor
/// then starts it again as a standby.
fn steps_down(a: &mut Herald) {
    a.wait_log_count("stepping down", 1, WAIT);
    let deadline = Instant::now() + WAIT;
    while a.is_running() {
        assert!(
            Instant::now() < deadline,
            "A did not exit:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.stop(), Some(1), "{}", a.log_text());
}

fn users() -> Vec<String> {
    (0..ONLINE).map(|i| format!("u{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_prosody_a_standby_takes_over_a_killed_herald_mid_job() {
    let users = users();
    let server = Prosody::start(&users.iter().map(String::as_str).collect::<Vec<_>>());
    let pid = server.pid().expect("prosody runs");
    a_standby_takes_over_a_killed_herald_mid_job(server, pid, &[], Store::Shared).await;
}

/// Two hosts, no shared storage: the store in a stream on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_in_a_stream_a_standby_on_another_host_keeps_what_the_first_knew() {
    let users = users();
    let server = Ejabberd::start(&users.iter().map(String::as_str).collect::<Vec<_>>());
    let pid = server.pid().expect("ejabberd runs");
    a_standby_takes_over_a_killed_herald_mid_job(server, pid, &[], Store::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_ejabberd_a_standby_takes_over_a_killed_herald_mid_job() {
    let users = users();
    let server = Ejabberd::start(&users.iter().map(String::as_str).collect::<Vec<_>>());
    let pid = server.pid().expect("ejabberd runs");
    a_standby_takes_over_a_killed_herald_mid_job(server, pid, &[], Store::Shared).await;
}

/// RabbitMQ 3.10 accepts a second exclusive consumer on a quorum queue:
/// the lock queue keeps the standby out there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quorum_queues_a_standby_takes_over_a_killed_herald_mid_job() {
    let users = users();
    let server = Prosody::start(&users.iter().map(String::as_str).collect::<Vec<_>>());
    let pid = server.pid().expect("prosody runs");
    let env = [("HERALD_AMQP__QUEUE_TYPE", "quorum")];
    a_standby_takes_over_a_killed_herald_mid_job(server, pid, &env, Store::Shared).await;
}

/// A standby on another host without shared storage: B starts on an empty
/// store, learns the online recipients of the cut job by probing them and
/// keeps the guarantees for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_empty_store_a_standby_probes_and_keeps_the_guarantees() {
    let users = users();
    let server = Ejabberd::start(&users.iter().map(String::as_str).collect::<Vec<_>>());
    let pid = server.pid().expect("ejabberd runs");
    a_standby_takes_over_a_killed_herald_mid_job(server, pid, &[], Store::Empty).await;
}

/// An active Herald whose broker connection is closed loses the token to
/// the standby at once; when it reconnects and finds the token taken, it
/// steps down (closing its XMPP stream, which Prosody lets only one
/// connection hold) and exits with status 1; the standby opens the store
/// once the first let go of it, connects and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_herald_that_lost_the_jobs_queue_steps_down() {
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let shared = dir_a.path().join("herald.store");
    let shared = shared.to_str().expect("a UTF-8 path");
    let mut a = Herald::start(&server, &names, dir_a.path());
    let mut reports = EventTap::bind(&names.events, "job.report").await;
    let env = [("HERALD_STORE__PATH", shared)];
    let mut b = Herald::launch_with_env(&server, &names, dir_b.path(), &env);
    b.wait_log_count("standing by", 1, WAIT);
    let mut alice = XmppUser::login_available(&server, "alice", "desk").await;
    a.wait_metric("herald_online_users", 1.0, WAIT);

    let connections = broker_connections_of(a.pid().expect("A runs"));
    assert_eq!(connections.len(), 1, "{connections:?}");
    close_broker_connection(&connections[0]);
    steps_down(&mut a);
    b.wait_log_count("taking jobs", 1, WAIT);
    assert_eq!(b.log_count("subscriptions=1 "), 1, "B opened A's store");

    let job = json!({"id": "after-step-down", "to": ["alice@localhost"], "body": "from B"});
    let amqp = Amqp::connect().await;
    amqp.publish_json(&names.jobs, &job).await;
    let report = own_report(&reports_of(&mut reports, "after-step-down").await);
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(alice.next_message(WAIT).await.expect("message").1, "from B");
    assert_eq!(metric(&b, r#"herald_jobs_total{outcome="delivered"}"#), 1.0);
    assert_eq!(b.stop(), Some(0), "{}", b.log_text());
    amqp.close().await;
}

/// With the store in a stream: A loses the broker while frozen, B takes the
/// jobs queue (reading the store, appending its fence) and dies before A
/// comes back. A gets the jobs queue again at once, but what B committed is
/// not in A: A finds B's fence after its own and steps down, appending
/// nothing; its restart would read the stream whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_in_a_stream_a_herald_overtaken_while_away_steps_down() {
    let server = Ejabberd::start(&["alice"]);
    let names = Names::unique();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("HERALD_STORE__BACKEND", "stream")];
    let mut a = Herald::start_with_env(&server, &names, dir_a.path(), &env);
    let mut b = Herald::launch_with_env(&server, &names, dir_b.path(), &env);
    b.wait_log_count("standing by", 1, WAIT);
    let _alice = XmppUser::login_available(&server, "alice", "desk").await;
    a.wait_metric("herald_online_users", 1.0, WAIT);

    let pid = a.pid().expect("A runs");
    let connections = broker_connections_of(pid);
    assert_eq!(connections.len(), 1, "{connections:?}");
    signal(pid, "STOP");
    close_broker_connection(&connections[0]);
    // B has read the store and appended its fence. (It may not take jobs:
    // ejabberd shares the domain's stanzas with A's frozen connection.)
    b.wait_log_count("store opened", 1, WAIT);
    b.kill();
    signal(pid, "CONT");

    a.wait_log_count(
        "another Herald held the jobs queue while this one had lost the broker",
        1,
        WAIT,
    );
    steps_down(&mut a);
    let amqp = Amqp::connect().await;
    amqp.delete_queue(&format!("{}.store", names.jobs)).await;
    amqp.close().await;
}
