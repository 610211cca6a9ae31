//! Groups end to end on Prosody and on ejabberd: the `herald group`
//! commands against the real `herald` over RabbitMQ, jobs to groups that
//! overlap each other and `to` reaching real c2s users once each, groups
//! kept across a restart, a group of 100,000 members, and a job to all
//! subscribers.

use std::time::Duration;

use herald_testkit::events::next_report;
use herald_testkit::herald::herald_cli as herald;
use herald_testkit::server::XmppServer;
use herald_testkit::stack::Stack;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// How long a user is watched for a second copy of a message.
const QUIET: Duration = Duration::from_secs(2);

herald_testkit::on_both_servers!(
    each_group_operation_and_a_job_to_overlapping_groups,
    groups_survive_a_restart,
    a_group_of_100000_members_is_made_read_back_and_addressed,
    all_subscribers_reaches_each_user_who_shares_presence_once,
);

fn result(reply: &Value) -> &Value {
    assert_eq!(reply["ok"], true, "{reply}");
    &reply["result"]
}

async fn each_group_operation_and_a_job_to_overlapping_groups<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob", "carol", "dave", "erin"]).await;
    let mut online = Vec::new();
    for user in ["alice", "bob", "carol"] {
        online.push(stack.online(user).await);
    }
    let config = stack.config_path().to_path_buf();
    let group = |args: &'static [&'static str], code| {
        let config = config.clone();
        async move {
            let mut all = vec!["group"];
            all.extend(args);
            herald(&config, &all, code).await
        }
    };

    let put = group(
        &[
            "put",
            "g1",
            "alice@localhost",
            "bob@localhost",
            "dave@localhost",
        ],
        0,
    )
    .await;
    assert_eq!(
        *result(&put),
        json!({"group": "g1", "size": 3, "added": 3, "removed": 0})
    );
    group(&["put", "g2", "bob@localhost", "carol@localhost"], 0).await;
    let add = group(&["add", "g2", "erin@localhost", "bob@localhost"], 0).await;
    assert_eq!(
        *result(&add),
        json!({"group": "g2", "size": 3, "added": 1, "removed": 0})
    );
    let remove = group(&["remove", "g1", "dave@localhost"], 0).await;
    assert_eq!(
        *result(&remove),
        json!({"group": "g1", "size": 2, "added": 0, "removed": 1})
    );
    let page = group(&["get", "g2", "--limit", "2"], 0).await;
    assert_eq!(
        *result(&page),
        json!({"group": "g2", "size": 3, "members": ["bob@localhost", "carol@localhost"], "next": "carol@localhost"})
    );
    let rest = group(
        &["get", "g2", "--limit", "2", "--after", "carol@localhost"],
        0,
    )
    .await;
    assert_eq!(result(&rest)["members"], json!(["erin@localhost"]));
    group(&["put", "doomed"], 0).await;
    let list = group(&["list"], 0).await;
    assert_eq!(
        *result(&list),
        json!({"total": 3, "groups": [
            {"name": "doomed", "size": 0}, {"name": "g1", "size": 2}, {"name": "g2", "size": 3}
        ]})
    );
    let delete = group(&["delete", "doomed"], 0).await;
    assert_eq!(
        *result(&delete),
        json!({"group": "doomed", "deleted": true, "removed": 0})
    );
    let gone = group(&["get", "doomed"], 1).await;
    assert_eq!(gone["error"]["code"], "unknown_group", "{gone}");
    // Refused before anything is sent: a member with a resource.
    let status = std::process::Command::new(herald_testkit::herald::herald_bin(None).unwrap())
        .args(["--config"])
        .arg(&config)
        .args(["group", "add", "g1", "alice@localhost/desk"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
    let said = String::from_utf8_lossy(&status.stderr);
    assert!(
        said.contains("members[0] \"alice@localhost/desk\""),
        "{said}"
    );

    // alice: to and g1; bob: g1 and g2; carol: to and g2; erin: g2,
    // never logged in; dave left g1.
    stack
        .publish(json!({
            "id": "overlap",
            "body": "once each",
            "to": ["alice@localhost", "carol@localhost"],
            "groups": ["g1", "g2", "nope"],
        }))
        .await;
    let report = next_report(&mut stack.reports, "overlap").await;
    assert_eq!(report["recipients"], 4, "{report}");
    assert_eq!(report["sent"], 3, "{report}");
    assert_eq!(report["skipped"]["offline"], 1, "erin: {report}");
    assert_eq!(report["missing_groups"], json!(["nope"]), "{report}");
    for user in &mut online {
        let (_, body, _) = user.next_message(WAIT).await.expect("the message");
        assert_eq!(body, "once each");
        user.expect_no_message(QUIET).await;
    }
}

async fn groups_survive_a_restart<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob"]).await;
    let config = stack.config_path().to_path_buf();
    let put = ["group", "put", "kept", "alice@localhost", "bob@localhost"];
    herald(&config, &put, 0).await;
    herald(&config, &["group", "put", "dropped", "bob@localhost"], 0).await;
    herald(&config, &["group", "remove", "kept", "bob@localhost"], 0).await;
    herald(&config, &["group", "delete", "dropped"], 0).await;

    assert_eq!(stack.herald.stop(), Some(0), "a clean stop");
    stack.herald.restart();

    let list = herald(&config, &["group", "list"], 0).await;
    assert_eq!(
        *result(&list),
        json!({"total": 1, "groups": [{"name": "kept", "size": 1}]})
    );
    let kept = herald(&config, &["group", "get", "kept"], 0).await;
    assert_eq!(result(&kept)["members"], json!(["alice@localhost"]));
    let mut alice = stack.online("alice").await;
    stack
        .publish(json!({"id": "after-restart", "body": "still a member", "groups": ["kept"]}))
        .await;
    let report = next_report(&mut stack.reports, "after-restart").await;
    assert_eq!(
        (report["recipients"].clone(), report["sent"].clone()),
        (json!(1), json!(1)),
        "{report}"
    );
    let (_, body, _) = alice.next_message(WAIT).await.expect("the message");
    assert_eq!(body, "still a member");
}

/// 99,999 members on a domain the server does not serve (Herald counts
/// them offline without probing each) and alice, online.
async fn a_group_of_100000_members_is_made_read_back_and_addressed<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice"]).await;
    let mut alice = stack.online("alice").await;
    let config = stack.config_path().to_path_buf();
    let mut members: Vec<String> = (0..99_999)
        .map(|i| format!("member{i:06}@elsewhere.example"))
        .collect();
    members.push("alice@localhost".into());
    members.sort();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("members.txt");
    std::fs::write(&file, members.join("\n")).unwrap();
    let file = file.to_str().unwrap();

    let started = std::time::Instant::now();
    let put = herald(
        &config,
        &["group", "put", "big", "--file", file, "--timeout", "60"],
        0,
    )
    .await;
    let put_took = started.elapsed();
    assert_eq!(
        *result(&put),
        json!({"group": "big", "size": 100_000, "added": 100_000, "removed": 0})
    );
    let started = std::time::Instant::now();
    let mut read = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["group", "get", "big", "--limit", "10000"];
        if let Some(after) = &after {
            args.extend(["--after", after.as_str()]);
        }
        let page = herald(&config, &args, 0).await;
        let page = result(&page);
        assert_eq!(page["size"], 100_000);
        read.extend(
            page["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    let read_took = started.elapsed();
    assert_eq!(read, members, "every member once, in JID order");
    eprintln!("100,000 members: put {put_took:?}, read back in 10 pages {read_took:?}");

    stack
        .publish(json!({"id": "to-big", "body": "to all of big", "groups": ["big"]}))
        .await;
    let report = next_report(&mut stack.reports, "to-big").await;
    assert_eq!(report["recipients"], 100_000, "{report}");
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(report["skipped"]["offline"], 99_999, "{report}");
    let (_, body, _) = alice.next_message(WAIT).await.expect("the message");
    assert_eq!(body, "to all of big");
}

/// alice and bob online; carol shared presence and left; dave never
/// logged in (Herald has never heard of him), erin is only in the group.
async fn all_subscribers_reaches_each_user_who_shares_presence_once<S: XmppServer>() {
    let mut stack = Stack::<S>::start(&["alice", "bob", "carol", "dave", "erin"]).await;
    let mut online = vec![stack.online("alice").await, stack.online("bob").await];
    let carol = stack.online("carol").await;
    carol.disconnect().await;
    herald_testkit::events::await_presence(&mut stack.presence, "carol@localhost/desk", None).await;
    let config = stack.config_path().to_path_buf();
    let put = ["group", "put", "g", "alice@localhost", "erin@localhost"];
    herald(&config, &put, 0).await;
    stack
        .publish(json!({
            "id": "everyone",
            "body": "to all who follow",
            "to": ["bob@localhost"],
            "groups": ["g"],
            "all_subscribers": true,
        }))
        .await;
    let report = next_report(&mut stack.reports, "everyone").await;
    // alice, bob, carol (subscribers) and erin (in g); not dave.
    assert_eq!(report["recipients"], 4, "{report}");
    assert_eq!(report["sent"], 2, "{report}");
    assert_eq!(report["skipped"]["offline"], 2, "carol and erin: {report}");
    for user in &mut online {
        let (_, body, _) = user.next_message(WAIT).await.expect("the message");
        assert_eq!(body, "to all who follow");
        user.expect_no_message(QUIET).await;
    }
}
