//! A job's life through the core, input by input, with no server, broker
//! or store: what the simulation (`tests/simulation`) checks at random,
//! spelled out once in order.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::jobs::Stage;
use super::*;
use crate::broadcast::Broadcast;
use crate::config::Config;

struct Harness {
    core: Core<Broadcast>,
    now: Instant,
}

impl Harness {
    /// A core with a stream and a broker connection up, presence rebuilt,
    /// and alice online.
    fn ready() -> Harness {
        Self::ready_with(|_| {})
    }

    /// [`Harness::ready`] with `configure` applied to the configuration.
    fn ready_with(configure: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config::default();
        configure(&mut config);
        config.xmpp.domain = "broadcast.localhost".into();
        config.xmpp.secret = Some(crate::config::Secret::new("secret"));
        let settings = config.settings().unwrap();
        let handler = Broadcast::new(settings.limits, false, 100);
        let now = Instant::now();
        let core = Core::new(
            settings.core,
            handler,
            Restored::default(),
            Metrics::new(),
            now,
        );
        let mut h = Harness { core, now };
        h.input(Input::StreamUp);
        h.input(Input::BrokerUp { generation: 1 });
        let ping = h.pings().pop().expect("a barrier after the probes");
        h.answer(&ping);
        h.tick(Duration::from_secs(1));
        assert_eq!(h.core.phase(), Phase::Ready);
        let alice = Presence::new(PresenceType::None)
            .with_from(Jid::new("alice@localhost/phone").unwrap())
            .with_to(Jid::new("herald@broadcast.localhost").unwrap());
        h.input(Input::Stanza(alice.into()));
        h.commit_all();
        h
    }

    /// Drains the outputs, answering every store batch as committed.
    fn commit_all(&mut self) {
        for output in self.drain() {
            if let Output::Commit(batch) = output {
                self.input(Input::Committed { batch: batch.id });
            }
        }
    }

    fn input(&mut self, input: Input) {
        self.core.handle(input, self.now);
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        self.core.handle_timeout(self.now);
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    /// The ids of the barrier pings among what the core wrote.
    fn pings(&mut self) -> Vec<String> {
        ids_of_pings(&self.drain())
    }

    fn answer(&mut self, id: &str) {
        let answer = Iq::Result {
            from: Some(Jid::new("localhost").unwrap()),
            to: Some(Jid::new("broadcast.localhost").unwrap()),
            id: id.to_string(),
            payload: None,
        };
        self.input(Input::Stanza(answer.into()));
    }

    fn deliver(&mut self, tag: u64, payload: &str) {
        self.deliver_at(tag, payload, wall_clock());
    }

    /// Delivers a job that the shell took when the wall clock read `at`.
    fn deliver_at(&mut self, tag: u64, payload: &str, at: SystemTime) {
        self.input(Input::Delivery(Delivery {
            id: JobId { generation: 1, tag },
            payload: payload.as_bytes().to_vec(),
            redelivered: false,
            age: None,
            received_at: at,
        }));
    }
}

/// The wall clock the tests' jobs are taken at: 2026-12-06T12:00:00Z.
fn wall_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_558_400)
}

fn ids_of_pings(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Stanza(Stanza::Iq(Iq::Get { id, .. })) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

const JOB: &str = r#"{"id":"j1","to":["alice@localhost"],"body":"hello"}"#;

/// The recipients of the messages among `outputs`.
fn message_recipients(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Stanza(Stanza::Message(message)) => message.to.as_ref().map(Jid::to_string),
            Output::Message { to, .. } => Some(to.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn users_of_the_served_domains_count_and_others_are_ignored() {
    let job = r#"{"id":"j1","to":["alice@localhost","carol@second.localhost"],"body":"hi"}"#;
    for (user_domains, expected) in [
        (vec![], vec!["alice@localhost"]),
        (
            vec!["localhost", "second.localhost"],
            vec!["alice@localhost", "carol@second.localhost"],
        ),
    ] {
        let mut h = Harness::ready_with(|config| {
            config.xmpp.user_domains = user_domains.iter().map(|d| d.to_string()).collect();
        });
        let carol = Presence::new(PresenceType::None)
            .with_from(Jid::new("carol@second.localhost/desk").unwrap())
            .with_to(Jid::new("herald@broadcast.localhost").unwrap());
        h.input(Input::Stanza(carol.into()));
        h.commit_all();
        h.deliver(1, job);
        let outputs = h.drain();
        assert_eq!(message_recipients(&outputs), expected, "{user_domains:?}");
        // Nobody of an unserved domain is probed either.
        let probes = outputs
            .iter()
            .filter(|o| matches!(o, Output::Stanza(Stanza::Presence(_))))
            .count();
        assert_eq!(probes, 0, "{user_domains:?}");
    }
}

#[test]
fn a_job_is_acknowledged_only_after_it_is_read_committed_and_reported() {
    let mut h = Harness::ready();
    h.deliver(1, JOB);
    let outputs = h.drain();
    assert!(matches!(&outputs[0], Output::Message { .. }));
    let ping = ids_of_pings(&outputs)
        .pop()
        .expect("a barrier behind the message");
    assert_eq!(
        h.core.jobs.stage(JobId {
            generation: 1,
            tag: 1
        }),
        Some(Stage::Written)
    );

    h.answer(&ping);
    let Some(Output::Commit(batch)) = h.drain().pop() else {
        panic!("the completion goes to the store first");
    };
    h.input(Input::Committed { batch: batch.id });
    let outputs = h.drain();
    let Some(Output::Publish(report)) = outputs.first() else {
        panic!("then the report: {outputs:?}");
    };
    assert!(!outputs.iter().any(|o| matches!(o, Output::Ack { .. })));

    h.input(Input::Published {
        id: report.id.unwrap(),
    });
    let outputs = h.drain();
    assert!(
        matches!(
            outputs[0],
            Output::Ack {
                job: JobId { tag: 1, .. },
                multiple: true
            }
        ),
        "{outputs:?}"
    );
    assert_eq!(h.core.jobs.len(), 0);
}

#[test]
fn a_failed_commit_holds_the_report_and_is_retried_before_anything_else() {
    let mut h = Harness::ready();
    h.deliver(1, JOB);
    let ping = h.pings().pop().unwrap();
    h.answer(&ping);
    let Some(Output::Commit(batch)) = h.drain().pop() else {
        panic!("a commit");
    };
    let error = "No space left on device".to_string();
    h.input(Input::CommitFailed {
        batch: batch.clone(),
        error,
    });
    assert!(h.drain().is_empty(), "no report, no ack, no other batch");
    assert_eq!(h.core.metrics.store_failing.get(), 1);
    assert!(h.core.metrics.unready_reason().is_some());

    h.tick(Duration::from_secs(1));
    let Some(Output::Commit(again)) = h.drain().pop() else {
        panic!("the same batch again");
    };
    assert_eq!(again, batch);
    h.input(Input::Committed { batch: again.id });
    assert!(matches!(h.drain().first(), Some(Output::Publish(_))));
    assert_eq!(h.core.metrics.store_failing.get(), 0);
}

#[test]
fn a_lost_stream_requeues_what_was_not_proven_read_and_a_lost_broker_drops_its_jobs() {
    let mut h = Harness::ready();
    h.deliver(1, JOB);
    h.drain();
    h.input(Input::StreamLost);
    let outputs = h.drain();
    assert!(
        matches!(
            outputs[..],
            [Output::Requeue {
                job: JobId { tag: 1, .. }
            }]
        ),
        "{outputs:?}"
    );
    assert_eq!(h.core.phase(), Phase::Down { was_ready: true });

    let mut h = Harness::ready();
    h.deliver(1, JOB);
    h.drain();
    h.input(Input::BrokerLost { generation: 1 });
    assert!(h.drain().is_empty(), "the broker requeued it itself");
    assert_eq!(h.core.jobs.len(), 0);
    h.deliver(2, JOB);
    assert!(
        h.drain().is_empty(),
        "a delivery of the lost connection is dropped"
    );
}

#[test]
fn shutdown_requeues_held_jobs_and_finishes_once_the_server_read_the_rest() {
    let mut h = Harness::ready();
    h.deliver(1, JOB);
    let ping = h.pings().pop().unwrap();
    h.input(Input::Shutdown);
    assert!(matches!(h.core.phase(), Phase::Draining { .. }));
    h.deliver(2, JOB);
    assert!(matches!(
        h.drain()[..],
        [Output::Requeue {
            job: JobId { tag: 2, .. }
        }]
    ));
    h.answer(&ping);
    assert!(matches!(h.core.phase(), Phase::Closing { .. }));
    assert!(
        !h.core.is_finished(),
        "the job's completion is not committed yet"
    );
    h.tick(Duration::from_secs(6));
    assert!(
        h.core.is_finished(),
        "out of time: the broker redelivers the rest"
    );
}

#[test]
fn a_reply_in_a_jobs_thread_becomes_an_event_naming_the_job() {
    use xmpp_parsers::message::{Lang, Message, MessageType};
    let mut h = Harness::ready();
    h.deliver(1, JOB);
    let thread = h
        .drain()
        .into_iter()
        .find_map(|output| match output {
            Output::Message { template, to } => template.to_message(&to).thread,
            _ => None,
        })
        .expect("the job's message has a thread");
    let received = Destination::Events {
        routing_key: crate::broadcast::MESSAGE_KEY.into(),
    };
    for (thread, job) in [(Some(thread), Some("j1")), (None, None)] {
        let mut reply = Message::new(Some(Jid::new("herald@broadcast.localhost").unwrap()));
        reply.from = Some(Jid::new("alice@localhost/phone").unwrap());
        reply.type_ = MessageType::Chat;
        reply.bodies.insert(Lang::default(), "on my way".into());
        reply.thread = thread;
        h.input(Input::Stanza(reply.into()));
        let event = h
            .drain()
            .into_iter()
            .find_map(|output| match output {
                Output::Publish(publish) if publish.destination == received => {
                    Some(publish.payload)
                }
                _ => None,
            })
            .expect("a message.received event");
        let event: serde_json::Value = serde_json::from_slice(&event).unwrap();
        assert_eq!(event["job"].as_str(), job, "{event}");
        assert_eq!(event["body"], "on my way");
    }
}

/// Answers every ping and commits every batch until the core is quiet,
/// then gives the reports it published, by job id.
fn settle(h: &mut Harness) -> std::collections::HashMap<String, serde_json::Value> {
    let mut reports = std::collections::HashMap::new();
    loop {
        let outputs = h.drain();
        if outputs.is_empty() {
            return reports;
        }
        for id in ids_of_pings(&outputs) {
            h.answer(&id);
        }
        for output in outputs {
            match output {
                Output::Commit(batch) => h.input(Input::Committed { batch: batch.id }),
                Output::Publish(publish) => {
                    let report: serde_json::Value =
                        serde_json::from_slice(&publish.payload).unwrap();
                    if let Some(id) = report["id"].as_str() {
                        reports.insert(id.to_string(), report.clone());
                    }
                    if let Some(id) = publish.id {
                        h.input(Input::Published { id });
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn a_job_taken_after_its_deadline_sends_nothing_and_is_reported_expired() {
    let mut h = Harness::ready();
    // The jobs are taken at 12:00:00 (wall_clock()); bob is a stranger,
    // probed first, so his job is fanned out only later.
    let job = |id: &str, to: &str, expires_at: &str| {
        serde_json::json!({"id": id, "to": [to, "x@localhost/r"], "body": "hi", "expires_at": expires_at})
            .to_string()
    };
    h.deliver(
        1,
        &job("in-time", "alice@localhost", "2026-12-06T12:00:01Z"),
    );
    let in_time = h.drain();
    assert_eq!(message_recipients(&in_time), ["alice@localhost"]);
    h.deliver(
        2,
        &job("late", "alice@localhost", "2026-12-06T13:00:00+01:00"),
    );
    h.deliver(3, &job("held", "bob@localhost", "2026-12-06T12:00:02Z"));
    let late = h.drain();
    assert!(message_recipients(&late).is_empty(), "{late:?}");
    // bob's probe is read only once the deadline has passed.
    h.tick(Duration::from_secs(3));
    for ping in ids_of_pings(&in_time).iter().chain(&ids_of_pings(&late)) {
        h.answer(ping);
    }
    let mut reports = settle(&mut h);
    h.tick(Duration::from_secs(1));
    reports.extend(settle(&mut h));
    assert!(message_recipients(&h.drain()).is_empty());

    assert_eq!(reports["in-time"]["sent"], 1, "{reports:?}");
    assert!(reports["in-time"].get("expired").is_none());
    for late in ["late", "held"] {
        let report = &reports[late];
        assert_eq!(report["expired"], true, "{report}");
        assert_eq!(report["sent"], 0, "{report}");
        assert_eq!(report["skipped"]["expired"], 1, "{report}");
        assert_eq!(report["skipped"]["invalid"], 1, "{report}");
        assert_eq!(report["recipients"], 2, "{report}");
    }
    let expired = &h.core.metrics.recipients.expired;
    assert_eq!(expired.get(), 2);
}
