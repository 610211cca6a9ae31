//! Ad-hoc commands (XEP-0050) end to end on Prosody and on ejabberd: an
//! operator of `xmpp.admins` logged in with a real c2s session executes
//! Herald's broadcast command, fills in the form, and the other online
//! users get the message and its job is reported (even where
//! `[producers]` refuses every producer but Herald); a user who is no
//! operator is refused and nobody gets anything; the online users command
//! counts who is online.

use std::time::Duration;

use herald_testkit::c2s::XmppUser;
use herald_testkit::events::{next_report, report_within};
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use xmpp_parsers::minidom::Element;

const WAIT: Duration = Duration::from_secs(20);
/// How long users are watched for a message that must not come.
const QUIET: Duration = Duration::from_secs(2);
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const ADMINS: [(&str, &str); 1] = [("HERALD_XMPP__ADMINS", r#"["root@localhost"]"#)];

herald_testkit::on_both_servers!(
    an_operators_broadcast_reaches_the_others_and_is_reported,
    a_non_operator_is_refused_and_nobody_gets_anything,
    online_users_answers_with_the_count,
);

/// Sends the IQ set `<command/>` `inner` (its attributes and children)
/// from `user` to Herald and returns the answer.
async fn command(user: &mut XmppUser, id: &str, inner: &str) -> Element {
    let xml = format!(
        "<iq xmlns='jabber:client' type='set' id='{id}' to='broadcast.localhost'>\
         <command xmlns='{COMMANDS}' {inner}</iq>"
    );
    let answer = user
        .exchange(&xml, "iq", |iq| iq.attr("id") == Some(id), WAIT)
        .await;
    answer.unwrap_or_else(|| panic!("no answer to {xml}"))
}

/// The `<command/>` of a result, or the error condition of an error.
fn outcome(answer: &Element) -> Result<&Element, String> {
    match answer.attr("type") {
        Some("result") => Ok(answer.get_child("command", COMMANDS).expect("a command")),
        _ => Err(answer
            .get_child("error", "jabber:client")
            .and_then(|error| {
                let stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
                (error.children()).find(|c| c.ns() == stanzas && c.name() != "text")
            })
            .map_or_else(String::new, |condition| condition.name().to_string())),
    }
}

async fn an_operators_broadcast_reaches_the_others_and_is_reported<S: XmppServer>() {
    // The job Herald queues for it carries Herald's own broker user, and
    // passes even where every other producer is refused.
    let env = [ADMINS[0], ("HERALD_PRODUCERS__UNLISTED", "refuse")];
    let mut stack = Stack::<S>::start_with_env(&["root", "alice", "bob"], &env).await;
    let mut root = stack.online("root").await;
    let mut alice = stack.online("alice").await;
    let mut bob = stack.online("bob").await;

    let items = format!(
        "<iq xmlns='jabber:client' type='get' id='items' to='broadcast.localhost'>\
         <query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>"
    );
    let listed = root
        .exchange(&items, "iq", |iq| iq.attr("id") == Some("items"), WAIT)
        .await
        .expect("the command list");
    let query = listed.children().next().expect("a query");
    let nodes: Vec<&str> = query.children().filter_map(|i| i.attr("node")).collect();
    assert_eq!(nodes, ["broadcast", "online-users", "groups"]);

    let form = command(&mut root, "exec", "node='broadcast' action='execute'/>").await;
    let form = outcome(&form).expect("the form");
    assert_eq!(form.attr("status"), Some("executing"));
    let sessionid = form.attr("sessionid").expect("a session").to_string();
    let submit = format!(
        "node='broadcast' sessionid='{sessionid}' action='complete'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='recipients'><value>all</value></field>\
         <field var='body'><value>Fire drill at 3</value></field>\
         <field var='type'><value>headline</value></field>\
         </x></command>"
    );
    let done = command(&mut root, "submit", &submit).await;
    let done = outcome(&done).expect("completed");
    assert_eq!(done.attr("status"), Some("completed"));
    let job = format!("adhoc-{sessionid}");
    let note = done.get_child("note", COMMANDS).expect("a note").text();
    assert_eq!(note, format!("queued as job {job}"));

    for user in [&mut alice, &mut bob] {
        let (from, body, kind) = user.next_message(WAIT).await.expect("the broadcast");
        assert_eq!(
            (from.as_str(), body.as_str(), kind.as_str()),
            ("herald@broadcast.localhost", "Fire drill at 3", "headline")
        );
    }
    let report = next_report(&mut stack.reports, &job).await;
    // root follows Herald too: an operator is a subscriber like any other.
    assert_eq!(report["recipients"], 3, "{report}");
    assert_eq!(report["sent"], 3, "{report}");
}

async fn a_non_operator_is_refused_and_nobody_gets_anything<S: XmppServer>() {
    let mut stack = Stack::<S>::start_with_env(&["root", "alice", "bob"], &ADMINS).await;
    let mut root = stack.online("root").await;
    let mut alice = stack.online("alice").await;

    let refused = command(&mut alice, "exec", "node='broadcast' action='execute'/>").await;
    assert_eq!(outcome(&refused).err().as_deref(), Some("forbidden"));
    // Even with a made-up session and a form, nothing is queued.
    let submit = "node='broadcast' sessionid='1-1'>\
                  <x xmlns='jabber:x:data' type='submit'>\
                  <field var='recipients'><value>all</value></field>\
                  <field var='body'><value>not from an operator</value></field>\
                  </x></command>";
    let refused = command(&mut alice, "submit", submit).await;
    assert_eq!(outcome(&refused).err().as_deref(), Some("forbidden"));

    root.expect_no_message(QUIET).await;
    alice.expect_no_message(QUIET).await;
    let report = report_within(&mut stack.reports, "adhoc-1-1", QUIET).await;
    assert!(report.is_none(), "{report:?}");
}

async fn online_users_answers_with_the_count<S: XmppServer>() {
    let mut stack = Stack::<S>::start_with_env(&["root", "alice", "bob"], &ADMINS).await;
    let mut root = stack.online("root").await;
    let _alice = stack.online("alice").await;

    let answer = command(
        &mut root,
        "online",
        "node='online-users' action='execute'/>",
    )
    .await;
    let done = outcome(&answer).expect("completed");
    assert_eq!(done.attr("status"), Some("completed"));
    let note = done.get_child("note", COMMANDS).expect("a note").text();
    assert_eq!(
        note,
        "2 users online, 2 available\nalice@localhost\nroot@localhost"
    );
}
