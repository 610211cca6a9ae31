//! The broker going away under Herald, on a private RabbitMQ node
//! (testkit/src/rabbitmq/mod.rs) so that it can be stopped and started again
//! without touching the shared one: real Prosody, real c2s users, the real
//! `herald` binary.

use std::time::Duration;

use herald_testkit::amqp::Amqp;
use herald_testkit::c2s::XmppUser;
use herald_testkit::herald::{Herald, Names};
use herald_testkit::http;
use herald_testkit::prosody::Prosody;
use herald_testkit::rabbitmq::PrivateBroker;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
const ONLINE: usize = 100;
const OFFLINE: usize = 400;

/// Prosody with `ONLINE` users logged in, Herald on a private broker, and a
/// durable queue that keeps Herald's reports across broker restarts.
struct World {
    broker: PrivateBroker,
    server: Prosody,
    names: Names,
    herald: Herald,
    users: Vec<XmppUser>,
    /// Durable queue bound to Herald's events exchange for `job.report`.
    reports: String,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start(env: &[(&str, &str)]) -> World {
        let broker = PrivateBroker::start();
        let names: Vec<String> = (0..ONLINE).map(|i| format!("u{i}")).collect();
        let user_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let server = Prosody::start(&user_refs);
        let queues = Names::unique();
        let dir = tempfile::tempdir().expect("temp dir");
        let url = broker.url();
        // No probes of unknown recipients: the offline recipients have no
        // accounts, and probing them would hold the job until the server
        // answers, while these tests freeze the server with the job in
        // flight (probing is tested in tests/unknown_recipients.rs).
        let mut all_env = vec![
            ("HERALD_AMQP__URL", url.as_str()),
            ("HERALD_XMPP__UNKNOWN_PROBE_TTL_SECS", "0"),
        ];
        all_env.extend_from_slice(env);
        let herald = Herald::start_with_env(&server, &queues, dir.path(), &all_env);
        let amqp = Amqp::connect_to(&url).await;
        let reports = amqp.bind_durable_queue(&queues.events, "job.report").await;
        assert!(amqp.wait_for_queue(&queues.jobs, WAIT).await);
        amqp.close().await;
        let mut users = Vec::new();
        for name in &names {
            users.push(XmppUser::login_available(&server, name, "r").await);
        }
        let mut world = World {
            broker,
            server,
            names: queues,
            herald,
            users,
            reports,
            _dir: dir,
        };
        world.wait_metric("herald_online_users", ONLINE as f64);
        world
    }

    /// A fresh connection to the private broker (the old ones die with it).
    async fn amqp(&self) -> Amqp {
        Amqp::connect_to(&self.broker.url()).await
    }

    async fn publish(&self, job: Value) {
        let amqp = self.amqp().await;
        amqp.publish_json(&self.names.jobs, &job).await;
        amqp.close().await;
    }

    /// Every report of job `id` that reached the durable queue: waits for
    /// the first, then takes more until none comes for a few seconds.
    async fn reports_of(&self, id: &str) -> Vec<Value> {
        let amqp = self.amqp().await;
        let first = amqp.get_one(&self.reports, WAIT).await;
        let mut all: Vec<Value> = first.into_iter().map(|m| m.json()).collect();
        all.extend(
            amqp.drain(&self.reports, Duration::from_secs(3))
                .await
                .iter()
                .map(|m| m.json()),
        );
        amqp.close().await;
        all.retain(|report| report["id"] == id);
        all
    }

    fn metric(&self, series: &str) -> f64 {
        http::value(&self.herald.metrics(), series)
    }

    fn wait_metric(&mut self, series: &str, value: f64) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.metric(series) != value {
            assert!(self.herald.is_running(), "{}", self.herald.log_text());
            assert!(
                std::time::Instant::now() < deadline,
                "{series} stayed {}, expected {value}",
                self.metric(series)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn job_to_everyone(&self, id: &str, body: &str) -> Value {
        let mut to: Vec<String> = (0..ONLINE).map(|i| format!("u{i}@localhost")).collect();
        to.extend((0..OFFLINE).map(|i| format!("ghost{i}@localhost")));
        json!({"id": id, "to": to, "body": body})
    }
}

/// The one report of `reports` that is the job's own, checked to count
/// every recipient.
fn own_report(reports: &[Value]) -> Value {
    let report = herald_testkit::delivery::own_report(reports);
    assert_eq!(report["recipients"], ONLINE + OFFLINE, "{report}");
    assert_eq!(report["sent"], ONLINE, "{report}");
    assert_eq!(report["skipped"]["offline"], OFFLINE, "{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_job_loses_nothing_and_the_job_gets_its_own_report() {
    // Checkpoints every 10 recipients; a read timeout far above the time
    // the server is frozen, so the XMPP stream is not given up meanwhile.
    let env = [
        ("HERALD_BROADCAST__CHECKPOINT_EVERY", "10"),
        ("HERALD_XMPP__READ_TIMEOUT_SECS", "600"),
    ];
    let mut world = World::start(&env).await;
    let prosody = world.server.pid().expect("prosody runs");

    // A frozen server confirms nothing: the job is written but cannot
    // complete before the broker goes away.
    herald_testkit::server::signal(prosody, "STOP");
    world
        .publish(world.job_to_everyone("mid-restart", "evacuate"))
        .await;
    world.herald.wait_log_count("job fanned out", 1, WAIT);

    world.broker.stop();
    world.herald.wait_log_count("AMQP connection lost", 1, WAIT);
    world.wait_metric("herald_amqp_connected", 0.0);
    assert_eq!(world.herald.readyz(), 503, "unready without the broker");

    // Herald reconnects by itself; the broker redelivers the persistent,
    // unacknowledged job, which Herald must deliver again (its first
    // attempt belongs to a lost connection and can never be reported),
    // not answer as a duplicate of itself. The server thaws first: what
    // Herald wrote to it frozen is still unread, and once the read
    // window's base round trip is old (a restart may take 10 s) Herald
    // writes no more than a probe's worth before the server reads.
    world.broker.start_again();
    world.wait_metric(r#"herald_amqp_connects_total{result="ok"}"#, 2.0);
    herald_testkit::server::signal(prosody, "CONT");
    world.herald.wait_log_count("job fanned out", 2, WAIT);

    let report = own_report(&world.reports_of("mid-restart").await);
    let window = Duration::from_secs(3);
    let received = futures_util::future::join_all(
        world
            .users
            .iter_mut()
            .map(|user| user.collect_messages(window)),
    )
    .await;
    let mut twice = 0;
    for (user, received) in world.users.iter().zip(&received) {
        assert!(!received.is_empty(), "{} got nothing", user.jid());
        assert!(received.iter().all(|m| m.body == "evacuate"));
        twice += usize::from(received.len() > 1);
    }
    let possible = report["possible_duplicates"].as_u64().unwrap_or(0) as usize;
    assert!(
        twice <= possible,
        "{twice} users got the message twice, the report allows {possible}: {report}"
    );
    world.herald.wait_readyz(200, WAIT);

    // A job published after the restart is delivered to everyone once.
    world
        .publish(world.job_to_everyone("after-restart", "all clear"))
        .await;
    own_report(&world.reports_of("after-restart").await);
    for user in world.users.iter_mut() {
        let message = user
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("{} got nothing after the restart", user.jid()));
        assert_eq!(message.1, "all clear");
    }
    assert_eq!(world.herald.stop(), Some(0), "{}", world.herald.log_text());
    let amqp = world.amqp().await;
    assert_eq!(amqp.message_count(&world.names.jobs).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_broker_never_took_before_a_restart_is_the_redelivered_jobs_own() {
    let env = [("HERALD_XMPP__READ_TIMEOUT_SECS", "600")];
    let mut world = World::start(&env).await;
    let prosody = world.server.pid().expect("prosody runs");

    // The job is written while the server is frozen; then the broker stops
    // reading what Herald publishes (a memory alarm) before the server may
    // confirm the job: it completes, but its report cannot get out.
    herald_testkit::server::signal(prosody, "STOP");
    world
        .publish(world.job_to_everyone("report-in-flight", "evacuate"))
        .await;
    world.herald.wait_log_count("job fanned out", 1, WAIT);
    world.broker.ctl(&["set_vm_memory_high_watermark", "0"]);
    world
        .broker
        .wait_log("memory resource limit alarm set", WAIT);
    herald_testkit::server::signal(prosody, "CONT");
    world.wait_metric(r#"herald_jobs_total{outcome="delivered"}"#, 1.0);
    for user in world.users.iter_mut() {
        let message = user
            .next_message(WAIT)
            .await
            .unwrap_or_else(|| panic!("{} got nothing", user.jid()));
        assert_eq!(message.1, "evacuate");
    }

    // The restart clears the alarm and requeues the unacknowledged job.
    // Its redelivery is recognised as completed: nothing is sent again,
    // and the report the broker never took is published as its own.
    world.broker.start_again();
    world.wait_metric(r#"herald_amqp_connects_total{result="ok"}"#, 2.0);
    let reports = world.reports_of("report-in-flight").await;
    assert_eq!(reports.len(), 1, "one report, no duplicate: {reports:?}");
    let report = own_report(&reports);
    // The first attempt's report: it resent nothing, so it warns of nothing.
    assert_eq!(report.get("possible_duplicates"), None, "{report}");
    for user in world.users.iter_mut() {
        user.expect_no_message(Duration::from_millis(20)).await;
    }
    assert_eq!(
        world.metric(r#"herald_stanzas_sent_total{kind="message"}"#),
        ONLINE as f64,
        "each message written once"
    );
    assert_eq!(world.herald.stop(), Some(0), "{}", world.herald.log_text());
    let amqp = world.amqp().await;
    assert_eq!(amqp.message_count(&world.names.jobs).await, Some(0));
}
