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
        Self::ready_restored(configure, Restored::default())
    }

    /// [`Harness::ready_with`], restarted with what a store kept.
    fn ready_restored(configure: impl FnOnce(&mut Config), restored: Restored) -> Harness {
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
            restored,
            Metrics::new(),
            (now, wall_clock()),
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
        self.drain_committed();
    }

    /// Drains the outputs, answering every store batch among them as
    /// committed: the outputs.
    fn drain_committed(&mut self) -> Vec<Output> {
        let outputs = self.drain();
        for output in &outputs {
            if let Output::Commit(batch) = output {
                self.input(Input::Committed { batch: batch.id });
            }
        }
        outputs
    }

    fn input(&mut self, input: Input) {
        self.core.handle(input, self.now);
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        self.core.handle_timeout(self.now);
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output(ROOM)).collect()
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
        self.deliver_on(Lane::Normal, tag, payload);
    }

    /// A job from `lane`'s queue, its `tag`-th delivery there.
    fn deliver_on(&mut self, lane: Lane, tag: u64, payload: &str) {
        self.input(Input::Delivery(Delivery {
            id: JobId {
                generation: 1,
                lane,
                tag,
            },
            payload: payload.as_bytes().to_vec(),
            redelivered: false,
            age: None,
            received_at: wall_clock(),
            user_id: None,
        }));
    }

    /// [`Harness::ready`] with `n` more users online, `u0@localhost` on:
    /// their JIDs.
    fn with_online(n: usize) -> (Harness, Vec<String>) {
        let mut h = Harness::ready();
        let users: Vec<String> = (0..n).map(|i| format!("u{i}@localhost")).collect();
        for user in &users {
            h.phone_presence(user, PresenceType::None);
        }
        h.commit_all();
        (h, users)
    }

    /// A presence of `type_` from `user`'s phone.
    fn phone_presence(&mut self, user: &str, type_: PresenceType) {
        let presence = Presence::new(type_)
            .with_from(Jid::new(&format!("{user}/phone")).unwrap())
            .with_to(Jid::new("herald@broadcast.localhost").unwrap());
        self.input(Input::Stanza(presence.into()));
    }

    /// What the core queues while the stream's queue has `room`.
    fn drain_with_room(&mut self, room: usize) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output(room)).collect()
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
            Output::Ping(Iq::Get { id, .. }) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// The room the tests' stream queue always has: more than any job here.
const ROOM: usize = 10_000;

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
            lane: Lane::Normal,
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

mod adhoc;
mod barriers;
mod cancel;
mod control;
mod deferred;
mod groups;
mod names;
mod probes;
mod producers;
mod reach;
mod read_window;
mod receipts;
mod slices;
