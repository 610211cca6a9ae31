//! Groups through the core: each change answered only once the store has
//! committed it (an error reply if the commit fails), reads answered at
//! once, groups restored from the store, and jobs to groups and to all
//! subscribers counting each user once.

use serde_json::{json, Value};

use super::control::with_users;
use super::*;

impl Harness {
    pub(super) fn request(&mut self, tag: u64, body: &Value) {
        self.input(Input::Request(Request {
            id: RequestId { generation: 1, tag },
            payload: body.to_string().into_bytes(),
            reply_to: Some("replies".into()),
            correlation_id: Some(format!("c{tag}")),
            user_id: None,
            received_at: wall_clock(),
        }));
    }

    /// Sends a group change; checks that nothing is answered before its
    /// batch is committed; commits it and returns the reply.
    pub(super) fn change(&mut self, tag: u64, body: &Value) -> Value {
        self.request(tag, body);
        let outputs = self.drain();
        assert!(
            !outputs.iter().any(|o| matches!(o, Output::Publish(_))),
            "no reply before the commit: {outputs:?}"
        );
        let Some(Output::Commit(batch)) = outputs.into_iter().last() else {
            panic!("a batch for the change");
        };
        self.input(Input::Committed { batch: batch.id });
        self.only_reply()
    }

    /// The one reply among what the core wrote.
    pub(super) fn only_reply(&mut self) -> Value {
        let replies: Vec<Publish> = self
            .drain()
            .into_iter()
            .filter_map(|output| match output {
                Output::Publish(publish) => Some(publish),
                _ => None,
            })
            .collect();
        let [reply] = &replies[..] else {
            panic!("one reply: {replies:?}");
        };
        assert!(matches!(reply.destination, Destination::Reply { .. }));
        serde_json::from_slice(&reply.payload).unwrap()
    }

    /// Runs a job to its report (answering probes and barriers, and
    /// committing): who got a message, and the report.
    pub(super) fn job(&mut self, tag: u64, job: &Value) -> (Vec<String>, Value) {
        self.deliver(tag, &job.to_string());
        let mut sent = Vec::new();
        for _ in 0..10 {
            let outputs = self.drain();
            sent.extend(message_recipients(&outputs));
            for output in &outputs {
                match output {
                    Output::Publish(report) => {
                        sent.sort();
                        return (sent, serde_json::from_slice(&report.payload).unwrap());
                    }
                    Output::Commit(batch) => self.input(Input::Committed { batch: batch.id }),
                    _ => {}
                }
            }
            for ping in ids_of_pings(&outputs) {
                self.answer(&ping);
            }
            // A job held for probes goes once they had time to be answered.
            self.tick(Duration::from_secs(1));
        }
        panic!("no report");
    }
}

fn result(reply: &Value) -> &Value {
    assert_eq!(reply["ok"], true, "{reply}");
    &reply["result"]
}

#[test]
fn each_change_is_answered_after_its_commit_with_what_it_did() {
    let mut h = Harness::ready();
    let put = json!({"op": "group.put", "group": "ops", "members": ["b@x", "a@x", "b@x"]});
    assert_eq!(
        *result(&h.change(1, &put)),
        json!({"group": "ops", "size": 2, "added": 2, "removed": 0})
    );
    let add = json!({"op": "group.add", "group": "ops", "members": ["a@x", "c@x"]});
    assert_eq!(
        *result(&h.change(2, &add)),
        json!({"group": "ops", "size": 3, "added": 1, "removed": 0})
    );
    let remove = json!({"op": "group.remove", "group": "ops", "members": ["a@x", "z@x"]});
    assert_eq!(
        *result(&h.change(3, &remove)),
        json!({"group": "ops", "size": 2, "added": 0, "removed": 1})
    );
    h.request(4, &json!({"op": "group.get", "group": "ops", "limit": 1}));
    let page = h.only_reply();
    assert_eq!(
        *result(&page),
        json!({"group": "ops", "size": 2, "members": ["b@x"], "next": "b@x"})
    );
    h.request(
        5,
        &json!({"op": "group.get", "group": "ops", "after": "b@x"}),
    );
    assert_eq!(result(&h.only_reply())["members"], json!(["c@x"]));
    h.request(6, &json!({"op": "group.list"}));
    assert_eq!(
        *result(&h.only_reply()),
        json!({"total": 1, "groups": [{"name": "ops", "size": 2}]})
    );
    let delete = json!({"op": "group.delete", "group": "ops"});
    assert_eq!(
        *result(&h.change(7, &delete)),
        json!({"group": "ops", "deleted": true, "removed": 2})
    );
    assert_eq!(result(&h.change(8, &delete))["deleted"], false);
    h.request(9, &json!({"op": "group.get", "group": "ops"}));
    assert_eq!(h.only_reply()["error"]["code"], "unknown_group");
}

#[test]
fn a_bad_member_or_name_is_refused_at_once_saying_which() {
    let mut h = Harness::ready();
    for (tag, body, says) in [
        (
            1,
            json!({"op": "group.put", "group": "g", "members": ["a@x", "b@x/phone"]}),
            "members[1] \"b@x/phone\"",
        ),
        (
            2,
            json!({"op": "group.add", "group": "g", "members": ["x"]}),
            "members[0] \"x\"",
        ),
        (
            3,
            json!({"op": "group.put", "group": "g", "members": ["h@broadcast.localhost"]}),
            "Herald's own domain",
        ),
        (
            4,
            json!({"op": "group.put", "group": "a b", "members": []}),
            "group name",
        ),
        (
            5,
            json!({"op": "group.remove", "group": "none", "members": ["a@x"]}),
            "no group",
        ),
    ] {
        h.request(tag, &body);
        let reply = h.only_reply();
        assert_eq!(reply["ok"], false, "{body}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
}

#[test]
fn a_failed_commit_is_answered_with_an_error_and_the_change_is_retried() {
    let mut h = Harness::ready();
    h.request(
        1,
        &json!({"op": "group.put", "group": "g", "members": ["a@x"]}),
    );
    let Some(Output::Commit(batch)) = h.drain().pop() else {
        panic!("a batch");
    };
    h.input(Input::CommitFailed {
        batch: batch.clone(),
        error: "No space left on device".into(),
    });
    let reply = h.only_reply();
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "store_failed");
    h.tick(Duration::from_secs(1));
    let Some(Output::Commit(again)) = h.drain().pop() else {
        panic!("the batch again");
    };
    assert_eq!(again, batch);
    h.input(Input::Committed { batch: again.id });
    assert!(h.drain().is_empty(), "answered once");
}

#[test]
fn committed_groups_are_there_for_a_core_started_from_the_store() {
    let mut h = Harness::ready();
    let mut contents = crate::store::Contents::new(10);
    h.request(
        1,
        &json!({"op": "group.put", "group": "g", "members": ["a@x", "b@x"]}),
    );
    h.request(
        2,
        &json!({"op": "group.remove", "group": "g", "members": ["a@x"]}),
    );
    h.request(
        3,
        &json!({"op": "group.add", "group": "h", "members": ["c@x"]}),
    );
    h.request(4, &json!({"op": "group.delete", "group": "h"}));
    for output in h.drain() {
        if let Output::Commit(batch) = output {
            for change in batch.changes {
                contents.apply(change);
            }
        }
    }
    let groups = contents.into_restored().groups;
    let names: Vec<_> = groups
        .iter()
        .map(|(name, members)| (name, members.len()))
        .collect();
    assert_eq!(names, [("g", 1)]);
}

#[test]
fn a_user_in_to_and_in_two_groups_gets_one_message_and_counts_once() {
    let mut h = with_users();
    let put = |group: &str, members: &[&str]| json!({"op": "group.put", "group": group, "members": members});
    h.change(1, &put("g1", &["alice@localhost", "bob@localhost"]));
    h.change(2, &put("g2", &["bob@localhost", "carol@localhost"]));
    let job = json!({
        "id": "j1", "body": "hi",
        "to": ["alice@localhost", "dave@localhost"],
        "groups": ["g1", "g2", "g3"],
    });
    let (sent, report) = h.job(1, &job);
    assert_eq!(sent, ["alice@localhost", "bob@localhost"]);
    assert_eq!(report["recipients"], 4, "{report}");
    assert_eq!(report["sent"], 2);
    assert_eq!(report["skipped"]["offline"], 1, "dave");
    assert_eq!(report["skipped"]["unavailable"], 1, "carol is away");
    assert_eq!(report["missing_groups"], json!(["g3"]));
}

#[test]
fn all_subscribers_reaches_everyone_who_shares_presence_once() {
    let mut h = with_users();
    h.change(
        1,
        &json!({"op": "group.put", "group": "g", "members": ["alice@localhost", "eve@localhost"]}),
    );
    let job = json!({"id": "j1", "body": "hi", "all_subscribers": true, "groups": ["g"]});
    let (sent, report) = h.job(1, &job);
    assert_eq!(sent, ["alice@localhost", "bob@localhost"]);
    // alice, bob, carol, dave (subscribers, dave offline) and eve (in g only).
    assert_eq!(report["recipients"], 5, "{report}");
    assert_eq!(report["skipped"]["offline"], 2);
    assert!(report.get("missing_groups").is_none());
}
