//! The urgent lane end to end (each test on Prosody and on ejabberd): a job
//! on the urgent queue goes out beside a big job of the jobs queue, each is
//! reported once and acknowledged on its own channel, and every user gets
//! every message once. That the urgent job goes between the big one's
//! slices is proven in the core's tests (`src/core/tests/slices.rs`); here
//! the order users saw is printed, not asserted (it depends on timing).

use std::collections::BTreeMap;
use std::time::Duration;

use herald_testkit::events::EVENT_WAIT;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
/// Recipients of the big job besides alice and bob: users of a domain
/// Herald does not serve, offline to it (and not probed).
const ELSEWHERE: usize = 4_000;

herald_testkit::on_both_servers!(an_urgent_job_goes_out_beside_a_big_one_and_both_are_acknowledged);

async fn an_urgent_job_goes_out_beside_a_big_one_and_both_are_acknowledged<S: XmppServer>() {
    // A queue of two stanzas: the big job goes out in slices of at most
    // two messages (and eight recipients walked).
    let env = [("HERALD_XMPP__OUTBOUND_HIGH_WATER", "2")];
    let mut stack = Stack::<S>::start_with_env(&["alice", "bob"], &env).await;
    let mut alice = stack.online("alice").await;
    let mut bob = stack.online("bob").await;

    let mut to = vec!["alice@localhost".to_string()];
    to.extend((0..ELSEWHERE).map(|i| format!("user{i}@elsewhere.test")));
    to.push("bob@localhost".into());
    stack
        .publish(json!({"id": "routine", "to": to, "body": "routine"}))
        .await;
    stack
        .publish_urgent(
            json!({"id": "alert", "to": ["alice@localhost", "bob@localhost"], "body": "alert"}),
        )
        .await;

    let mut reports = BTreeMap::new();
    for _ in 0..2 {
        let report = stack
            .reports
            .next_matching("job.report", EVENT_WAIT, |r| {
                r["id"] == "routine" || r["id"] == "alert"
            })
            .await
            .expect("a report for each job");
        let id = report["id"].as_str().unwrap_or_default().to_string();
        println!("report of {id}");
        assert!(reports.insert(id, report).is_none(), "one report each");
    }
    let report = &reports["routine"];
    assert_eq!(report["recipients"], ELSEWHERE + 2, "{report}");
    assert_eq!(report["sent"], 2, "{report}");
    assert_eq!(report["skipped"]["offline"], ELSEWHERE, "{report}");
    let report = &reports["alert"];
    assert_eq!(report["recipients"], 2, "{report}");
    assert_eq!(report["sent"], 2, "{report}");
    for user in [&mut alice, &mut bob] {
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let (_, body, _) = user.next_message(WAIT).await.expect("two messages each");
            bodies.push(body);
        }
        println!("{} got {bodies:?} in that order", user.bare_jid());
        bodies.sort();
        assert_eq!(bodies, ["alert", "routine"], "{}", user.bare_jid());
    }

    // Both jobs were acknowledged, each on its own channel: a graceful
    // stop leaves nothing to requeue.
    assert_eq!(stack.herald.stop(), Some(0));
    for queue in [&stack.names.jobs, &stack.names.urgent] {
        assert_eq!(stack.amqp.message_count(queue).await, Some(0), "{queue}");
    }
}
