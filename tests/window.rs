//! A job's window (`deliver_within_secs`), end to end on both servers with
//! real c2s users: a recipient who logs in within it gets the message once
//! and the final report counts them late; one who stays away is missed;
//! Herald killed in the middle of a window still delivers to a late-comer
//! after its restart, once; delivery receipts (XEP-0184) a client sends
//! back are counted in the final report, which names who sent them, and
//! each is told in a `message.receipt` event.

use std::time::Duration;

use herald_testkit::amqp::EventTap;
use herald_testkit::c2s::XmppUser;
use herald_testkit::events::{await_presence, next_report};
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
/// How long to watch for a message that must not arrive.
const QUIET: Duration = Duration::from_millis(1500);

herald_testkit::on_both_servers!(
    a_late_comer_in_the_window_gets_it_once_and_one_who_stays_away_is_missed,
    a_window_outlives_herald_killed_in_the_middle_of_it,
    receipts_a_client_sends_back_are_counted_and_a_client_that_ignores_them_is_not,
);

async fn a_late_comer_in_the_window_gets_it_once_and_one_who_stays_away_is_missed<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob", "carol"]).await;
    let mut finals = EventTap::bind(&stack.names.events, "job.report.final.#").await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let to = ["alice@localhost", "bob@localhost", "carol@localhost"];
    // Long enough for bob to log in on a busy machine; carol never does.
    let job = json!({"id": "window", "to": to, "body": "evacuate", "deliver_within_secs": 12, "report_names": true});
    stack.publish(job).await;
    let report = next_report(&mut stack.reports, "window").await;
    assert_eq!(
        (&report["sent"], &report["deferred"]),
        (&json!(1), &json!(2)),
        "{report}"
    );
    assert_eq!(report["skipped"]["offline"], 2, "{report}");
    assert_eq!(alice.next_received(WAIT).await.unwrap().body, "evacuate");

    let mut bob = XmppUser::login_available(&stack.server, "bob", "desk").await;
    let late = bob.next_received(WAIT).await.expect("bob gets it late");
    assert_eq!(late.body, "evacuate");
    assert!(
        late.id.as_deref().is_some_and(|id| id.ends_with(".1")),
        "numbered by bob's place in the job: {:?}",
        late.id
    );
    bob.expect_no_message(QUIET).await;

    let names = finals
        .next_matching("job.report.final.names", WAIT, |p| p["id"] == "window")
        .await
        .expect("the final report's names");
    assert_eq!(names["late"], json!(["bob@localhost"]));
    assert_eq!(names["missed"], json!(["carol@localhost"]));
    let last = finals
        .next_matching("job.report.final", WAIT, |p| p["id"] == "window")
        .await
        .expect("a final report at the window's end");
    assert_eq!(
        (&last["deferred"], &last["late"], &last["missed"]),
        (&json!(2), &json!(1), &json!(1)),
        "{last}"
    );
    assert_eq!(last["names"]["parts"], 1, "{last}");
    assert_eq!(stack.metric("herald_deferred_reached_total"), 1.0);
    assert_eq!(stack.metric("herald_deferred_recipients"), 0.0);
    // Carol after the window: nothing.
    let mut carol = XmppUser::login_available(&stack.server, "carol", "desk").await;
    carol.expect_no_message(QUIET).await;
    assert_eq!(stack.herald.stop(), Some(0));
}

async fn a_window_outlives_herald_killed_in_the_middle_of_it<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob"]).await;
    let mut finals = EventTap::bind(&stack.names.events, "job.report.final").await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let job = json!({"id": "outlives", "to": ["alice@localhost", "bob@localhost"], "body": "shelter", "deliver_within_secs": 600});
    stack.publish(job).await;
    // Reported once the window is stored.
    let report = next_report(&mut stack.reports, "outlives").await;
    assert_eq!(report["deferred"], 1, "{report}");
    assert_eq!(alice.next_received(WAIT).await.unwrap().body, "shelter");
    assert_eq!(stack.metric("herald_deferred_recipients"), 1.0);

    stack.herald.kill();
    stack.herald.restart();
    stack.wait_metric("herald_deferred_recipients", 1.0).await;
    let mut bob = XmppUser::login_available(&stack.server, "bob", "desk").await;
    let late = bob
        .next_received(WAIT)
        .await
        .expect("bob gets it after the restart");
    assert_eq!(late.body, "shelter");
    bob.expect_no_message(QUIET).await;
    alice.expect_no_message(QUIET).await;
    // Everyone reached: the final report comes before the window's end.
    let last = finals
        .next_matching("job.report.final", WAIT, |p| p["id"] == "outlives")
        .await
        .expect("a final report once everyone was reached");
    assert_eq!((&last["late"], &last["missed"]), (&json!(1), &json!(0)));
    assert_eq!(stack.herald.stop(), Some(0));
}

async fn receipts_a_client_sends_back_are_counted_and_a_client_that_ignores_them_is_not<
    S: XmppServer,
>() {
    let env = [("HERALD_BROADCAST__RECEIPTS_WINDOW_SECS", "8")];
    let mut stack = Stack::<S>::start_with_env(&["alice", "bob"], &env).await;
    let mut finals = EventTap::bind(&stack.names.events, "job.report.final.#").await;
    let mut receipts = EventTap::bind(&stack.names.events, "message.receipt").await;
    let mut alice = XmppUser::login_available(&stack.server, "alice", "desk").await;
    await_presence(&mut stack.presence, "alice@localhost/desk", Some("online")).await;
    let mut bob = XmppUser::login_available(&stack.server, "bob", "desk").await;
    await_presence(&mut stack.presence, "bob@localhost/desk", Some("online")).await;
    let job = json!({"id": "receipts", "to": ["alice@localhost", "bob@localhost"], "body": "confirm", "receipts": true, "report_names": true});
    stack.publish(job).await;
    let report = next_report(&mut stack.reports, "receipts").await;
    assert_eq!(report["sent"], 2, "{report}");
    let message = alice.next_received(WAIT).await.expect("alice's message");
    assert!(
        message
            .stanza
            .get_child("request", "urn:xmpp:receipts")
            .is_some(),
        "it asks for a receipt: {:?}",
        message.stanza
    );
    let id = message.id.clone().expect("a message id");
    // Alice's client answers as XEP-0184 says, twice (a client may); bob's
    // ignores the request.
    for n in 0..2 {
        alice
            .send_xml(&format!(
                "<message xmlns='jabber:client' to='{}' id='r{n}'><received xmlns='urn:xmpp:receipts' id='{id}'/></message>",
                message.from
            ))
            .await;
    }
    assert_eq!(bob.next_received(WAIT).await.unwrap().body, "confirm");
    let told = receipts
        .next_matching("message.receipt", WAIT, |p| p["job"] == "receipts")
        .await
        .expect("alice's receipt told as it came");
    assert_eq!(
        (&told["user"], &told["id"]),
        (&json!("alice@localhost"), &json!(id)),
        "{told}"
    );
    assert!(
        told["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{told}"
    );
    let names = finals
        .next_matching("job.report.final.names", WAIT, |p| p["id"] == "receipts")
        .await
        .expect("the final report's names");
    assert_eq!(names["receipted"], json!(["alice@localhost"]), "{names}");
    let last = finals
        .next_matching("job.report.final", WAIT, |p| p["id"] == "receipts")
        .await
        .expect("a final report when the receipts' window ends");
    assert_eq!(last["receipts"], 1, "alice's, once: {last}");
    assert_eq!(last["deferred"], 0, "{last}");
    assert_eq!(stack.metric("herald_receipts_total"), 1.0);
    let again = receipts
        .next_matching("message.receipt", QUIET, |p| p["job"] == "receipts")
        .await;
    assert!(again.is_none(), "the repeat is not told: {again:?}");
    assert_eq!(stack.herald.stop(), Some(0));
}
