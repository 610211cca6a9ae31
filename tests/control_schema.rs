//! docs/control.schema.json is the control plane's contract: boon checks
//! every JSON example in docs/control.md against it (each must be exactly
//! one of the requests or replies), Herald's own parser must agree on every
//! request, and every reply must read back as Herald's reply types. Replies
//! Herald builds are checked against the schema too. No network.

use std::path::Path;

use boon::{Compiler, SchemaIndex, Schemas};
use herald::control::{
    self, CancelResult, CancelState, GroupChanged, GroupDeleted, GroupList, GroupPage,
    GroupSummary, OnlineResult, OnlineUser, PresenceResult, Reply, RequestError, StatusResult,
    UserPresence,
};
use serde_json::{json, Value};

const SCHEMA_URL: &str = "file:///herald/docs/control.schema.json";
const REQUESTS: [&str; 10] = [
    "presenceRequest",
    "onlineRequest",
    "statusRequest",
    "cancelRequest",
    "groupPutRequest",
    "groupAddRequest",
    "groupRemoveRequest",
    "groupDeleteRequest",
    "groupGetRequest",
    "groupListRequest",
];
const REPLIES: [&str; 9] = [
    "presenceReply",
    "onlineReply",
    "statusReply",
    "cancelReply",
    "groupChangeReply",
    "groupDeleteReply",
    "groupGetReply",
    "groupListReply",
    "errorReply",
];

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Contract {
    schemas: Schemas,
    defs: Vec<(&'static str, SchemaIndex)>,
}

impl Contract {
    fn new() -> Contract {
        let schema: Value = serde_json::from_str(&read("docs/control.schema.json")).unwrap();
        let mut schemas = Schemas::new();
        let mut compiler = Compiler::new();
        compiler.add_resource(SCHEMA_URL, schema).unwrap();
        let defs = REQUESTS
            .into_iter()
            .chain(REPLIES)
            .map(|name| {
                let url = format!("{SCHEMA_URL}#/$defs/{name}");
                let index = compiler
                    .compile(&url, &mut schemas)
                    .unwrap_or_else(|e| panic!("schema {name}: {e:#}"));
                (name, index)
            })
            .collect();
        // The whole schema (a request) compiles too.
        compiler.compile(SCHEMA_URL, &mut schemas).unwrap();
        Contract { schemas, defs }
    }

    /// The definitions `value` is valid against.
    fn matching(&self, value: &Value) -> Vec<&'static str> {
        self.defs
            .iter()
            .filter(|(_, index)| self.schemas.validate(value, *index).is_ok())
            .map(|(name, _)| *name)
            .collect()
    }
}

/// The JSON code blocks of docs/control.md.
fn examples() -> Vec<Value> {
    let text = read("docs/control.md");
    let fence = "```json\n";
    text.match_indices(fence)
        .map(|(at, _)| {
            let block = &text[at + fence.len()..];
            let block = &block[..block.find("```").expect("closed code block")];
            serde_json::from_str(block).unwrap_or_else(|e| panic!("example {block}: {e}"))
        })
        .collect()
}

#[test]
fn every_example_is_one_request_or_reply_and_herald_reads_it_alike() {
    let contract = Contract::new();
    let examples = examples();
    let (mut requests, mut replies) = (0, 0);
    for example in &examples {
        let matching = contract.matching(example);
        let [def] = matching[..] else {
            panic!("{example} matches {matching:?}, not exactly one definition");
        };
        if REQUESTS.contains(&def) {
            control::parse(example.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("Herald refuses {example}: {e}"));
            requests += 1;
        } else {
            let reply: Reply = serde_json::from_value(example.clone()).unwrap();
            let result = reply.result.clone().unwrap_or_default();
            let typed = match def {
                "presenceReply" => serde_json::from_value::<PresenceResult>(result).is_ok(),
                "onlineReply" => serde_json::from_value::<OnlineResult>(result).is_ok(),
                "statusReply" => serde_json::from_value::<StatusResult>(result).is_ok(),
                "cancelReply" => serde_json::from_value::<CancelResult>(result).is_ok(),
                "groupChangeReply" => serde_json::from_value::<GroupChanged>(result).is_ok(),
                "groupDeleteReply" => serde_json::from_value::<GroupDeleted>(result).is_ok(),
                "groupGetReply" => serde_json::from_value::<GroupPage>(result).is_ok(),
                "groupListReply" => serde_json::from_value::<GroupList>(result).is_ok(),
                _ => reply.error.is_some(),
            };
            assert!(typed, "{example} does not read as Herald's {def}");
            replies += 1;
        }
    }
    assert!(
        requests >= 10 && replies >= 11,
        "{requests} requests, {replies} replies"
    );
    // Every kind is shown at least once.
    for def in REQUESTS.iter().chain(&REPLIES) {
        assert!(
            examples.iter().any(|e| contract.matching(e) == [*def]),
            "no example of {def}"
        );
    }
}

#[test]
fn requests_the_schema_refuses_herald_refuses() {
    let contract = Contract::new();
    for request in [
        json!({"op": "presence"}),
        json!({"op": "presence", "users": "alice@example.com"}),
        json!({"op": "online", "limit": 0}),
        json!({"op": "online", "limit": 10_001}),
        json!({"op": "status", "verbose": true}),
        json!({"op": "reboot"}),
        json!({"op": "cancel"}),
        json!({"op": "cancel", "id": " "}),
        json!({"op": "cancel", "id": "x".repeat(257)}),
        json!({"op": "cancel", "id": "j", "reason": "oops"}),
        json!({"users": []}),
        json!({"op": "group.put", "group": "a b", "members": []}),
        json!({"op": "group.put", "group": "x".repeat(65), "members": []}),
        json!({"op": "group.put", "group": "ops"}),
        json!({"op": "group.add", "group": "ops", "members": ["alice@example.com/phone"]}),
        json!({"op": "group.add", "group": "ops", "members": ["example.com"]}),
        json!({"op": "group.remove", "group": "ops", "members": "alice@example.com"}),
        json!({"op": "group.delete"}),
        json!({"op": "group.get", "group": "ops", "limit": 0}),
        json!({"op": "group.list", "limit": 10_001}),
        json!({"op": "group.list", "group": "ops"}),
    ] {
        assert!(
            contract.matching(&request).is_empty(),
            "schema passes {request}"
        );
        assert!(
            control::parse(request.to_string().as_bytes()).is_err(),
            "Herald takes {request}"
        );
    }
}

#[test]
fn replies_herald_builds_pass_the_schema() {
    let contract = Contract::new();
    let replies = [
        (
            "presenceReply",
            Reply::result(PresenceResult {
                users: vec![
                    UserPresence {
                        jid: "a@example.com".into(),
                        online: Some(true),
                        available: Some(false),
                        resources: Some(2),
                        show: Some(herald::presence::Show::Away),
                        since: Some("2026-12-06T12:00:00.250Z".into()),
                        show_since: Some("2026-12-06T12:05:00.000Z".into()),
                        error: None,
                    },
                    UserPresence {
                        jid: "a@example.com/r".into(),
                        online: None,
                        available: None,
                        resources: None,
                        show: None,
                        since: None,
                        show_since: None,
                        error: Some("not a bare JID".into()),
                    },
                ],
            }),
        ),
        (
            "onlineReply",
            Reply::result(OnlineResult {
                online: 1,
                available: 1,
                users: vec![OnlineUser {
                    jid: "a@example.com".into(),
                    available: true,
                }],
                next: Some("a@example.com".into()),
            }),
        ),
        (
            "statusReply",
            Reply::result(StatusResult {
                version: "0.1.0".into(),
                xmpp_connected: false,
                broker_connected: true,
                online_users: 0,
                online_resources: 0,
                subscriptions: 0,
                jobs_in_flight: 0,
                remembered_jobs: 0,
                cancelled: 0,
                groups: 2,
            }),
        ),
        (
            "cancelReply",
            Reply::result(CancelResult {
                id: "j".into(),
                state: CancelState::InProgress,
                report: Some(json!({"id": "j", "recipients": 3, "sent": 1,
                    "skipped": {"offline": 0, "unavailable": 0, "invalid": 0, "cancelled": 2},
                    "cancelled": true})),
            }),
        ),
        (
            "cancelReply",
            Reply::result(CancelResult {
                id: "j".into(),
                state: CancelState::Completed,
                report: None,
            }),
        ),
        (
            "groupChangeReply",
            Reply::result(GroupChanged {
                group: "ops".into(),
                size: 2,
                added: 1,
                removed: 0,
            }),
        ),
        (
            "groupDeleteReply",
            Reply::result(GroupDeleted {
                group: "ops".into(),
                deleted: false,
                removed: 0,
            }),
        ),
        (
            "groupGetReply",
            Reply::result(GroupPage {
                group: "ops".into(),
                size: 2,
                members: vec!["a@example.com".into()],
                next: Some("a@example.com".into()),
            }),
        ),
        (
            "groupListReply",
            Reply::result(GroupList {
                total: 1,
                groups: vec![GroupSummary {
                    name: "ops".into(),
                    size: 2,
                }],
                next: None,
            }),
        ),
        (
            "errorReply",
            Reply::error(&RequestError::UnknownGroup("ops".into())),
        ),
        (
            "errorReply",
            Reply::error(&RequestError::StoreFailed("disk full".into())),
        ),
        (
            "errorReply",
            Reply::error(&RequestError::UnknownOp("reboot".into())),
        ),
        (
            "errorReply",
            Reply::error(&RequestError::Forbidden(
                herald::producers::Refusal::Operation {
                    user: "billing".into(),
                    op: "cancel".into(),
                },
            )),
        ),
    ];
    for (def, reply) in replies {
        let value: Value = serde_json::from_slice(&reply.to_json()).unwrap();
        assert_eq!(contract.matching(&value), [def], "{value}");
    }
}
