//! Who may do what (`[producers]`): a job refused for its producer is
//! dead-lettered before anything of it goes out, a request answered
//! `forbidden`; Herald's own jobs and, by default, unlisted producers pass.

use serde_json::{json, Value};

use super::*;
use crate::config::ProducerConfig;
use crate::producers::Unlisted;

/// billing: sends as `billing` to group `customers` (at most 3
/// recipients, 2 jobs a second) and may ask for `status`; Herald's own
/// broker user is `guest` (the default URL's).
fn billing(unlisted: Unlisted) -> Harness {
    billing_restored(unlisted, Restored::default())
}

/// [`billing`], restarted with what a store kept.
fn billing_restored(unlisted: Unlisted, restored: Restored) -> Harness {
    let mut h = Harness::ready_restored(
        |config| {
            config.producers.unlisted = unlisted;
            let billing = ProducerConfig {
                from: vec!["billing".into()],
                groups: vec!["customers".into()],
                control: vec!["status".into()],
                max_recipients: Some(3),
                jobs_per_sec: Some(2.0),
                ..ProducerConfig::default()
            };
            config.producers.users.insert("billing".into(), billing);
        },
        restored,
    );
    let members = ["alice@localhost"];
    for (tag, group) in [(1, "customers"), (2, "ops")] {
        let put = json!({"op": "group.put", "group": group, "members": members});
        h.request_as(Some("guest"), tag, &put);
        h.commit_all();
    }
    h.drain();
    h
}

impl Harness {
    fn deliver_as(&mut self, user: Option<&str>, tag: u64, payload: &Value) {
        self.delivery_as(user, tag, payload, false);
    }

    /// `payload` redelivered by the broker, first published by `user`.
    fn redeliver_as(&mut self, user: &str, tag: u64, payload: &Value) {
        self.delivery_as(Some(user), tag, payload, true);
    }

    fn delivery_as(&mut self, user: Option<&str>, tag: u64, payload: &Value, redelivered: bool) {
        self.input(Input::Delivery(Delivery {
            id: JobId {
                generation: 1,
                lane: Lane::Normal,
                tag,
            },
            payload: payload.to_string().into_bytes(),
            redelivered,
            age: None,
            received_at: wall_clock(),
            user_id: user.map(str::to_string),
        }));
    }

    /// The job's dead letter's reason, or its messages' recipients.
    fn outcome(&mut self) -> Result<Vec<String>, String> {
        let outputs = self.drain();
        let dead = outputs.iter().find_map(|output| match output {
            Output::Publish(Publish {
                destination: Destination::DeadLetter { reason, .. },
                ..
            }) => Some(reason.clone()),
            _ => None,
        });
        match dead {
            Some(reason) => {
                assert_eq!(message_recipients(&outputs), Vec::<String>::new());
                Err(reason)
            }
            None => Ok(message_recipients(&outputs)),
        }
    }

    fn request_as(&mut self, user: Option<&str>, tag: u64, body: &Value) {
        self.input(Input::Request(Request {
            id: RequestId { generation: 1, tag },
            payload: body.to_string().into_bytes(),
            reply_to: Some("replies".into()),
            correlation_id: None,
            user_id: user.map(str::to_string),
            received_at: wall_clock(),
        }));
    }

    /// The reply to a request answered at once (not after a commit).
    fn ask_as(&mut self, user: Option<&str>, tag: u64, body: &Value) -> Value {
        self.request_as(user, tag, body);
        let reply = self.drain().into_iter().find_map(|output| match output {
            Output::Publish(publish) => Some(publish.payload),
            _ => None,
        });
        serde_json::from_slice(&reply.expect("a reply")).unwrap()
    }
}

fn job(id: &str, fields: Value) -> Value {
    let mut job = json!({"id": id, "body": "hi", "from": "billing"});
    for (key, value) in fields.as_object().unwrap() {
        job[key] = value.clone();
    }
    job
}

#[test]
fn a_listed_producer_sends_within_its_grant_and_is_refused_beyond_it() {
    let mut h = billing(Unlisted::Allow);
    let billing = Some("billing");
    h.deliver_as(billing, 1, &job("ok", json!({"groups": ["customers"]})));
    assert_eq!(h.outcome(), Ok(vec!["alice@localhost".to_string()]));
    h.tick(Duration::from_secs(10));

    let refusals = [
        (json!({"from": "ceo"}), "may not send as \"ceo\""),
        (json!({"from": null}), "may not send as \"herald\""),
        (json!({"groups": ["ops"]}), "may not address group \"ops\""),
        (json!({"all_subscribers": true}), "all subscribers"),
        (
            json!({"to": ["carol@localhost", "dave@localhost", "erin@localhost"], "groups": ["customers"]}),
            "4 recipients",
        ),
    ];
    for (tag, (fields, said)) in (2..).zip(refusals) {
        h.deliver_as(billing, tag, &job(&format!("j{tag}"), fields));
        let reason = h.outcome().unwrap_err();
        assert!(reason.contains(said), "{said}: {reason}");
        assert!(reason.starts_with("refused: "), "{reason}");
        h.tick(Duration::from_secs(10));
    }
}

#[test]
fn a_refused_job_is_refused_before_it_is_found_a_duplicate() {
    let mut h = billing(Unlisted::Allow);
    h.deliver_as(
        None,
        1,
        &job("same", json!({"from": "ceo", "to": ["alice@localhost"]})),
    );
    assert_eq!(h.outcome(), Ok(vec!["alice@localhost".to_string()]));
    h.settle();
    h.deliver_as(Some("billing"), 2, &job("same", json!({"from": "ceo"})));
    assert!(h.outcome().unwrap_err().contains("may not send as"));
}

#[test]
fn all_subscribers_counts_every_subscriber_against_the_limit() {
    let mut h = Harness::ready_with(|config| {
        let wide = ProducerConfig {
            from: vec!["*".into()],
            all_subscribers: true,
            max_recipients: Some(2),
            ..ProducerConfig::default()
        };
        config.producers.users.insert("wide".into(), wide);
    });
    // alice alone shares presence: one recipient.
    let to_all =
        json!({"id": "all-1", "body": "hi", "all_subscribers": true, "to": ["alice@localhost"]});
    h.deliver_as(Some("wide"), 1, &to_all);
    assert_eq!(h.outcome(), Ok(vec!["alice@localhost".to_string()]));
    for user in ["bob@localhost", "carol@localhost"] {
        h.phone_presence(user, PresenceType::None);
    }
    h.commit_all();
    let to_all = json!({"id": "all-2", "body": "hi", "all_subscribers": true});
    h.deliver_as(Some("wide"), 2, &to_all);
    let reason = h.outcome().unwrap_err();
    assert!(reason.contains("3 recipients"), "{reason}");
}

#[test]
fn jobs_over_the_rate_are_dead_lettered_and_the_rate_refills_with_time() {
    let mut h = billing(Unlisted::Allow);
    let billing = Some("billing");
    let to_alice = |id: &str| job(id, json!({"to": ["alice@localhost"]}));
    // A burst of two, then the third at the same instant is over.
    h.deliver_as(billing, 1, &to_alice("r1"));
    h.deliver_as(billing, 2, &to_alice("r2"));
    h.deliver_as(billing, 3, &to_alice("r3"));
    let outputs = h.drain();
    let dead: Vec<&str> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Publish(Publish {
                destination: Destination::DeadLetter { reason, .. },
                ..
            }) => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].starts_with("rate limit: "), "{}", dead[0]);
    assert_eq!(message_recipients(&outputs).len(), 2);
    // Others are not held back, nor Herald's own jobs.
    h.deliver_as(None, 4, &to_alice("other"));
    h.deliver_as(Some("guest"), 5, &to_alice("own"));
    assert_eq!(h.outcome().map(|to| to.len()), Ok(2));
    // Half a second later, one more.
    h.tick(Duration::from_millis(500));
    h.deliver_as(billing, 6, &to_alice("r4"));
    assert_eq!(h.outcome().map(|to| to.len()), Ok(1));
    h.deliver_as(billing, 7, &to_alice("r5"));
    assert!(h.outcome().unwrap_err().starts_with("rate limit: "));
}

#[test]
fn a_redelivered_job_is_not_counted_against_the_rate_again() {
    let mut h = billing(Unlisted::Allow);
    for tag in 1..=2 {
        h.deliver_as(Some("billing"), tag, &job(&format!("r{tag}"), json!({})));
    }
    h.drain();
    h.redeliver_as(
        "billing",
        3,
        &job("again", json!({"to": ["alice@localhost"]})),
    );
    assert_eq!(h.outcome().map(|to| to.len()), Ok(1));
}

#[test]
fn a_redelivery_that_went_out_in_part_is_not_judged_again() {
    // Published before a restart narrowed billing's grant, and got past
    // bob (its checkpoint is in the store).
    let done = br#"{"next":1,"sent":1,"offline":0,"unavailable":0,"invalid":0}"#;
    let restored = Restored {
        progress: vec![("beyond".into(), done.to_vec())],
        ..Restored::default()
    };
    let mut h = billing_restored(Unlisted::Allow, restored);
    let to = json!({"from": "ceo", "to": ["bob@localhost", "alice@localhost"]});
    h.redeliver_as("billing", 1, &job("beyond", to.clone()));
    assert_eq!(h.outcome(), Ok(vec!["alice@localhost".to_string()]));
    // The same job published afresh is judged (another producer cannot
    // take over a job by its id), and so is a redelivery that saved nothing.
    h.deliver_as(Some("billing"), 2, &job("beyond", to.clone()));
    assert!(h.outcome().is_err());
    h.redeliver_as("billing", 3, &job("fresh", to));
    assert!(h.outcome().is_err());
}

#[test]
fn unlisted_producers_pass_by_default_and_are_refused_when_told() {
    let to_alice = json!({"id": "u", "body": "hi", "to": ["alice@localhost"]});
    let mut h = billing(Unlisted::Allow);
    h.deliver_as(None, 1, &to_alice);
    assert_eq!(h.outcome().map(|to| to.len()), Ok(1));
    h.deliver_as(
        Some("stranger"),
        2,
        &json!({"id": "u2", "body": "hi", "to": ["alice@localhost"]}),
    );
    assert_eq!(h.outcome().map(|to| to.len()), Ok(1));

    let mut h = billing(Unlisted::Refuse);
    h.deliver_as(None, 1, &to_alice);
    let reason = h.outcome().unwrap_err();
    assert!(reason.contains("no AMQP user_id"), "{reason}");
    h.deliver_as(Some("stranger"), 2, &to_alice);
    let reason = h.outcome().unwrap_err();
    assert!(
        reason.contains("\"stranger\" is not in producers.users"),
        "{reason}"
    );
    // Herald's own jobs (an ad-hoc broadcast) carry its broker user.
    h.deliver_as(Some("guest"), 3, &to_alice);
    assert_eq!(h.outcome().map(|to| to.len()), Ok(1));
}

#[test]
fn a_request_beyond_the_grant_is_answered_forbidden() {
    let mut h = billing(Unlisted::Refuse);
    let status = h.ask_as(Some("billing"), 11, &json!({"op": "status"}));
    assert_eq!(status["ok"], true, "{status}");
    let cancel = h.ask_as(Some("billing"), 12, &json!({"op": "cancel", "id": "x"}));
    assert_eq!(cancel["ok"], false, "{cancel}");
    assert_eq!(cancel["error"]["code"], "forbidden", "{cancel}");
    let message = cancel["error"]["message"].as_str().unwrap();
    assert!(message.contains("may not ask for \"cancel\""), "{message}");
    let anonymous = h.ask_as(None, 13, &json!({"op": "status"}));
    assert_eq!(anonymous["error"]["code"], "forbidden", "{anonymous}");
    let own = h.ask_as(
        Some("guest"),
        14,
        &json!({"op": "group.get", "group": "ops"}),
    );
    assert_eq!(own["result"]["size"], 1, "{own}");
    // Nothing was cancelled: a job of that id still goes out.
    h.deliver_as(
        Some("guest"),
        1,
        &json!({"id": "x", "body": "hi", "to": ["alice@localhost"]}),
    );
    assert_eq!(h.outcome().map(|to| to.len()), Ok(1));
}

/// `herald_refusals_total` as rendered: (reason, count) of every label.
fn refusals(h: &Harness) -> Vec<(String, u64)> {
    let text = String::from_utf8(h.core.metrics.render()).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("herald_refusals_total{reason=\""))
        .map(|rest| {
            let (reason, count) = rest.split_once("\"} ").unwrap();
            (reason.to_string(), count.parse().unwrap())
        })
        .collect()
}

#[test]
fn refusals_are_counted_by_their_kind() {
    let mut h = billing(Unlisted::Refuse);
    let counted = |h: &Harness| -> Vec<(String, u64)> {
        refusals(h).into_iter().filter(|(_, n)| *n > 0).collect()
    };
    assert_eq!(refusals(&h).len(), crate::producers::Refusal::REASONS.len());
    assert_eq!(counted(&h), []);
    h.deliver_as(Some("billing"), 1, &job("j1", json!({"from": "ceo"})));
    h.outcome().unwrap_err();
    h.deliver_as(None, 2, &job("j2", json!({"groups": ["customers"]})));
    h.outcome().unwrap_err();
    let reply = h.ask_as(Some("billing"), 3, &json!({"op": "online"}));
    assert_eq!(reply["error"]["code"], "forbidden");
    h.deliver_as(Some("billing"), 4, &job("j4", json!({"groups": ["ops"]})));
    h.outcome().unwrap_err();
    let count = |reason: &str, n: u64| (reason.to_string(), n);
    assert_eq!(
        counted(&h),
        [
            count("from", 1),
            count("group", 1),
            count("no_user_id", 1),
            count("operation", 1)
        ]
    );
}
