//! Ad-hoc commands through the core: what admins and others see in disco,
//! a broadcast from form to queued job (answered only after the broker's
//! confirm), forbidden, a bad form, cancel, a refused publish.

use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

use super::*;

const ADMIN: &str = "root@localhost/desk";
const COMMANDS: &str = "http://jabber.org/protocol/commands";

fn with_admin() -> Harness {
    Harness::ready_with(|config| config.xmpp.admins = vec!["root@localhost".into()])
}

impl Harness {
    /// Sends an IQ of `type_` with `payload` (XML in its namespace) from
    /// `from`; the stanzas the core wrote back.
    fn iq(&mut self, from: &str, type_: &str, payload: &str) -> Vec<Output> {
        let xml = format!(
            "<iq xmlns='jabber:component:accept' type='{type_}' id='q1' from='{from}' \
             to='broadcast.localhost'>{payload}</iq>"
        );
        let iq = Iq::try_from(xml.parse::<Element>().unwrap()).unwrap();
        self.input(Input::Stanza(iq.into()));
        self.drain()
    }

    /// The answer to `payload`, which must be the one stanza written.
    fn command(&mut self, from: &str, payload: &str) -> Iq {
        let mut answers = answers(self.iq(from, "set", payload));
        assert_eq!(answers.len(), 1, "{answers:?}");
        answers.pop().unwrap()
    }
}

/// The IQ answers among `outputs`.
fn answers(outputs: Vec<Output>) -> Vec<Iq> {
    outputs
        .into_iter()
        .filter_map(|output| match output {
            Output::Stanza(Stanza::Iq(iq @ (Iq::Result { .. } | Iq::Error { .. }))) => Some(iq),
            _ => None,
        })
        .collect()
}

fn payload(iq: &Iq) -> &Element {
    match iq {
        Iq::Result {
            payload: Some(payload),
            ..
        } => payload,
        other => panic!("not a result with a payload: {other:?}"),
    }
}

fn condition(iq: &Iq) -> (DefinedCondition, String) {
    match iq {
        Iq::Error { error, .. } => (
            error.defined_condition.clone(),
            error.texts.values().next().cloned().unwrap_or_default(),
        ),
        other => panic!("not an error: {other:?}"),
    }
}

fn execute(node: &str) -> String {
    format!("<command xmlns='{COMMANDS}' node='{node}' action='execute'/>")
}

/// The broadcast form submitted in session `sessionid` with `fields`.
fn submit(sessionid: &str, fields: &[(&str, &str)]) -> String {
    let fields: String = fields
        .iter()
        .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
        .collect();
    format!(
        "<command xmlns='{COMMANDS}' node='broadcast' sessionid='{sessionid}'>\
         <x xmlns='jabber:x:data' type='submit'>{fields}</x></command>"
    )
}

/// Executes the broadcast command as the admin; its session id.
fn open_broadcast(h: &mut Harness) -> String {
    let answer = h.command(ADMIN, &execute("broadcast"));
    let command = payload(&answer);
    assert_eq!(command.attr("status"), Some("executing"));
    assert!(command.get_child("x", "jabber:x:data").is_some(), "a form");
    command.attr("sessionid").unwrap().to_string()
}

#[test]
fn admins_see_the_commands_and_others_an_empty_list() {
    let mut h = with_admin();
    let query =
        format!("<query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/>");
    let nodes = |iq: &Iq| -> Vec<String> {
        payload(iq)
            .children()
            .filter_map(|item| item.attr("node").map(str::to_string))
            .collect()
    };
    let admin = answers(h.iq(ADMIN, "get", &query));
    assert_eq!(nodes(&admin[0]), ["broadcast", "online-users", "groups"]);
    let other = answers(h.iq("alice@localhost/phone", "get", &query));
    assert_eq!(nodes(&other[0]), Vec::<String>::new());

    let info = answers(h.iq(
        "alice@localhost/phone",
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    ));
    let features: Vec<&str> = payload(&info[0])
        .children()
        .filter_map(|f| f.attr("var"))
        .collect();
    assert!(features.contains(&COMMANDS), "{features:?}");
}

#[test]
fn a_broadcast_is_queued_and_completed_only_once_the_broker_confirms() {
    let mut h = with_admin();
    let sessionid = open_broadcast(&mut h);
    let outputs = h.iq(
        ADMIN,
        "set",
        &submit(
            &sessionid,
            &[
                ("recipients", "all"),
                ("body", "Fire drill at 3"),
                ("type", "headline"),
            ],
        ),
    );
    let publishes: Vec<Publish> = outputs
        .into_iter()
        .filter_map(|output| match output {
            Output::Publish(publish) => Some(publish),
            Output::Stanza(Stanza::Iq(iq)) => panic!("answered before the confirm: {iq:?}"),
            _ => None,
        })
        .collect();
    assert_eq!(publishes.len(), 1);
    let publish = &publishes[0];
    assert_eq!(publish.destination, Destination::Job { lane: Lane::Urgent });
    let job: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(job["id"], format!("adhoc-{sessionid}"));
    assert_eq!(job["body"], "Fire drill at 3");
    assert_eq!(job["type"], "headline");
    assert_eq!(job["all_subscribers"], true);
    assert!(job.get("from").is_none(), "Herald's default sender: {job}");

    h.input(Input::Published {
        id: publish.id.unwrap(),
    });
    let answer = answers(h.drain())
        .pop()
        .expect("answered after the confirm");
    let command = payload(&answer);
    assert_eq!(command.attr("status"), Some("completed"));
    let note = command.get_child("note", COMMANDS).unwrap().text();
    assert_eq!(note, format!("queued as job adhoc-{sessionid}"));

    // The session is closed: submitting again queues nothing.
    let again = h.command(
        ADMIN,
        &submit(&sessionid, &[("recipients", "all"), ("body", "x")]),
    );
    assert_eq!(condition(&again).0, DefinedCondition::BadRequest);
}

#[test]
fn a_refused_publish_is_an_error_and_not_retried() {
    let mut h = with_admin();
    let sessionid = open_broadcast(&mut h);
    let form = submit(&sessionid, &[("recipients", "all"), ("body", "hi")]);
    let publish = first_publish(h.iq(ADMIN, "set", &form)).unwrap();
    h.input(Input::PublishRefused { publish });
    let answer = answers(h.drain()).pop().expect("an answer");
    assert_eq!(condition(&answer).0, DefinedCondition::ServiceUnavailable);
    h.tick(Duration::from_secs(120));
    let retried = h
        .drain()
        .into_iter()
        .any(|o| matches!(o, Output::Publish(_)));
    assert!(!retried, "the operator sends it again, not Herald");
}

#[test]
fn others_are_forbidden_and_nothing_is_queued() {
    let mut h = with_admin();
    let outputs = h.iq("alice@localhost/phone", "set", &execute("broadcast"));
    assert!(!outputs.iter().any(|o| matches!(o, Output::Publish(_))));
    let answer = answers(outputs).pop().unwrap();
    assert_eq!(condition(&answer).0, DefinedCondition::Forbidden);
    // Nobody is an admin by default.
    let mut h = Harness::ready();
    let answer = h.command(ADMIN, &execute("online-users"));
    assert_eq!(condition(&answer).0, DefinedCondition::Forbidden);
}

#[test]
fn a_bad_form_is_a_bad_request_saying_why_and_the_session_stays_open() {
    let mut h = with_admin();
    let sessionid = open_broadcast(&mut h);
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("recipients", "all")], "body"),
        (
            &[("recipients", "group"), ("group", "ops"), ("body", "b")],
            "no group named \"ops\"",
        ),
        (
            &[
                ("recipients", "users"),
                ("users", "not a jid@"),
                ("body", "b"),
            ],
            "bare JID",
        ),
        (
            &[("recipients", "all"), ("type", "loud"), ("body", "b")],
            "type \"loud\"",
        ),
    ];
    for (fields, says) in cases {
        let answer = h.command(ADMIN, &submit(&sessionid, fields));
        let (condition, text) = condition(&answer);
        assert_eq!(condition, DefinedCondition::BadRequest);
        assert!(text.contains(says), "{text:?} should say {says:?}");
    }
    let cancel = format!(
        "<command xmlns='{COMMANDS}' node='broadcast' sessionid='{sessionid}' action='cancel'/>"
    );
    let answer = h.command(ADMIN, &cancel);
    assert_eq!(payload(&answer).attr("status"), Some("canceled"));
}

#[test]
fn online_users_counts_and_lists_them() {
    let mut h = with_admin();
    let answer = h.command(ADMIN, &execute("online-users"));
    let command = payload(&answer);
    assert_eq!(command.attr("status"), Some("completed"));
    assert!(command.attr("sessionid").is_some_and(|id| !id.is_empty()));
    let note = command.get_child("note", COMMANDS).unwrap().text();
    assert_eq!(note, "1 users online, 1 available\nalice@localhost");
}

#[test]
fn groups_lists_them_with_their_sizes_and_a_broadcast_addresses_one() {
    let mut h = with_admin();
    let put = serde_json::json!({"op": "group.put", "group": "ops", "members": ["alice@localhost", "bob@localhost"]});
    assert_eq!(h.change(1, &put)["ok"], true);
    let answer = h.command(ADMIN, &execute("groups"));
    let note = payload(&answer).get_child("note", COMMANDS).unwrap().text();
    assert_eq!(note, "1 groups\nops (2 members)");

    let sessionid = open_broadcast(&mut h);
    let form = submit(
        &sessionid,
        &[("recipients", "group"), ("group", "ops"), ("body", "b")],
    );
    let publish = first_publish(h.iq(ADMIN, "set", &form)).expect("the job published");
    let job: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(job["groups"], serde_json::json!(["ops"]), "{job}");
    assert!(job.get("all_subscribers").is_none(), "{job}");
}

#[test]
fn a_broadcast_whose_connection_is_lost_before_the_confirm_is_an_error_saying_so() {
    let mut h = with_admin();
    let sessionid = open_broadcast(&mut h);
    let form = submit(&sessionid, &[("recipients", "all"), ("body", "hi")]);
    let outputs = h.iq(ADMIN, "set", &form);
    assert!(outputs.iter().any(|o| matches!(o, Output::Publish(_))));
    h.input(Input::BrokerLost { generation: 1 });
    let answer = answers(h.drain()).pop().expect("an answer");
    let (kind, text) = condition(&answer);
    assert_eq!(kind, DefinedCondition::ServiceUnavailable);
    assert!(text.contains("may or may not be queued"), "{text}");

    // With no broker connection, nothing is published.
    let sessionid = open_broadcast(&mut h);
    let form = submit(&sessionid, &[("recipients", "all"), ("body", "hi")]);
    let outputs = h.iq(ADMIN, "set", &form);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Publish(_))));
    let (kind, text) = condition(&answers(outputs)[0]);
    assert_eq!(kind, DefinedCondition::ServiceUnavailable);
    assert!(text.contains("no broker connection"), "{text}");
}

#[test]
fn a_command_nodes_info_says_what_it_is_to_admins_only() {
    let mut h = with_admin();
    let query = "<query xmlns='http://jabber.org/protocol/disco#info' node='broadcast'/>";
    let info = answers(h.iq(ADMIN, "get", query));
    let info = payload(&info[0]);
    assert_eq!(info.attr("node"), Some("broadcast"));
    let identity = info
        .get_child("identity", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert_eq!(identity.attr("category"), Some("automation"));
    assert_eq!(identity.attr("type"), Some("command-node"));
    let refused = answers(h.iq("alice@localhost/phone", "get", query));
    assert_eq!(condition(&refused[0]).0, DefinedCondition::Forbidden);
}

/// The first publish among `outputs`.
fn first_publish(outputs: Vec<Output>) -> Option<Publish> {
    outputs.into_iter().find_map(|output| match output {
        Output::Publish(publish) => Some(publish),
        _ => None,
    })
}
