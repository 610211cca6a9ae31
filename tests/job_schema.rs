//! docs/job.schema.json must describe what Herald accepts: its fields,
//! required fields and enums match `Job::parse`, its examples are accepted,
//! and what it forbids (unknown fields) Herald refuses. No network.

use std::collections::BTreeSet;

use herald::broadcast::fanout::Skipped;
use herald::broadcast::job::MessageKind;
use herald::broadcast::{Job, JobError, JobLimits, Report};
use herald::presence::{Policy, Show};
use serde_json::{json, Value};
use xmpp_parsers::jid::BareJid;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/job.schema.json");
    let text = std::fs::read_to_string(path).expect("docs/job.schema.json is readable");
    serde_json::from_str(&text).expect("docs/job.schema.json is valid JSON")
}

fn limits() -> JobLimits {
    JobLimits {
        component_domain: BareJid::new("broadcast.localhost").unwrap(),
        default_from: "herald".into(),
        max_body_bytes: 65536,
        max_recipients: 100000,
        allowed_from: Vec::new(),
    }
}

fn parse(job: &Value) -> Result<Job, JobError> {
    Job::parse(job.to_string().as_bytes(), &limits())
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .collect()
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

fn examples(schema: &Value) -> &Vec<Value> {
    let examples = schema["examples"].as_array().expect("schema has examples");
    assert!(examples.len() >= 2, "at least two examples");
    examples
}

#[test]
fn schema_is_draft_2020_12_object_without_additional_properties() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(set(&strings(&schema["required"])), set(&["id", "body"]));
    assert_eq!(
        keys(&schema["properties"]),
        set(&["id", "to", "body", "subject", "type", "from", "policy"])
    );
}

#[test]
fn field_constraints_match_job_parse() {
    let schema = schema();
    let props = &schema["properties"];
    for field in ["id", "body", "subject", "from"] {
        assert_eq!(props[field]["type"], "string", "{field}");
    }
    assert_eq!(props["to"]["type"], "array");
    assert_eq!(props["to"]["default"], json!([]));
    assert_eq!(props["id"]["minLength"], 1);
    assert_eq!(props["body"]["minLength"], 1);

    let max_id = props["id"]["maxLength"].as_u64().unwrap() as usize;
    assert_eq!(max_id, 256);
    let id = "é".repeat(max_id);
    assert!(parse(&json!({"id": id, "body": "b"})).is_ok());
    let id = "é".repeat(max_id + 1);
    assert!(matches!(
        parse(&json!({"id": id, "body": "b"})),
        Err(JobError::Field { field: "id", .. })
    ));
    assert!(parse(&json!({"id": "  ", "body": "b"})).is_err());
    assert!(parse(&json!({"id": "j", "body": ""})).is_err());
}

#[test]
fn every_example_is_accepted() {
    let schema = schema();
    let allowed = keys(&schema["properties"]);
    let required = strings(&schema["required"]);
    for example in examples(&schema) {
        for field in keys(example) {
            assert!(allowed.contains(field), "{field} in {example}");
        }
        for field in &required {
            assert!(
                example.get(*field).is_some(),
                "{field} missing in {example}"
            );
        }
        let job = parse(example).unwrap_or_else(|e| panic!("{example} refused: {e}"));
        assert_eq!(job.id, example["id"].as_str().unwrap());
        let recipients = example
            .get("to")
            .map_or(0, |to| to.as_array().unwrap().len());
        assert_eq!(job.recipients.len(), recipients, "{example}");
    }
}

#[test]
fn type_enum_is_what_herald_accepts() {
    let schema = schema();
    let type_ = &schema["properties"]["type"];
    let values = strings(&type_["enum"]);
    assert_eq!(values, ["chat", "normal", "headline"]);
    let expected = [
        MessageKind::Chat,
        MessageKind::Normal,
        MessageKind::Headline,
    ];
    for (value, kind) in values.iter().zip(expected) {
        let job = parse(&json!({"id": "j", "body": "b", "type": value})).unwrap();
        assert_eq!(job.kind, kind, "{value}");
    }
    assert!(parse(&json!({"id": "j", "body": "b", "type": "groupchat"})).is_err());

    let default = type_["default"].as_str().unwrap();
    let job = parse(&json!({"id": "j", "body": "b"})).unwrap();
    let with_default = parse(&json!({"id": "j", "body": "b", "type": default})).unwrap();
    assert_eq!(job.kind, with_default.kind);
    assert_eq!(job.kind, MessageKind::default());
}

#[test]
fn policy_enum_is_what_herald_accepts() {
    let schema = schema();
    let policy = &schema["properties"]["policy"];
    let values = strings(&policy["enum"]);
    assert_eq!(values, ["available", "online"]);
    for (value, expected) in values.iter().zip([Policy::Available, Policy::Online]) {
        let job = parse(&json!({"id": "j", "body": "b", "policy": value})).unwrap();
        assert_eq!(job.policy, expected, "{value}");
    }
    assert!(parse(&json!({"id": "j", "body": "b", "policy": "always"})).is_err());

    let default = policy["default"].as_str().unwrap();
    let job = parse(&json!({"id": "j", "body": "b"})).unwrap();
    let with_default = parse(&json!({"id": "j", "body": "b", "policy": default})).unwrap();
    assert_eq!(job.policy, with_default.policy);
    assert_eq!(job.policy, Policy::default());
}

#[test]
fn from_defaults_to_the_configured_sender_on_the_component_domain() {
    let job = parse(&json!({"id": "j", "body": "b"})).unwrap();
    assert_eq!(job.from.to_string(), "herald@broadcast.localhost");
    let job = parse(&json!({"id": "j", "body": "b", "from": "alerts"})).unwrap();
    assert_eq!(job.from.to_string(), "alerts@broadcast.localhost");
    for bad in ["", "a@b", "a/b"] {
        assert!(
            matches!(
                parse(&json!({"id": "j", "body": "b", "from": bad})),
                Err(JobError::Field { field: "from", .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn additional_and_missing_properties_are_refused() {
    let schema = schema();
    let example = &examples(&schema)[0];
    for extra in ["polciy", "recipients", "priority"] {
        let mut job = example.clone();
        job.as_object_mut()
            .unwrap()
            .insert(extra.into(), json!("online"));
        match parse(&job) {
            Err(JobError::Json(reason)) => {
                assert!(reason.contains("unknown field"), "{reason}")
            }
            other => panic!("{extra}: expected unknown field error, got {other:?}"),
        }
    }
    for field in strings(&schema["required"]) {
        let mut job = example.clone();
        job.as_object_mut().unwrap().remove(field);
        assert!(
            matches!(parse(&job), Err(JobError::Json(_))),
            "missing {field}"
        );
    }
}

#[test]
fn report_definition_matches_the_report_herald_publishes() {
    let schema = schema();
    let def = &schema["$defs"]["report"];
    let report = Report {
        id: "j".into(),
        recipients: 4,
        sent: 1,
        skipped: Skipped {
            offline: 1,
            unavailable: 1,
            invalid: 1,
        },
        ..Report::default()
    };
    assert!(report.is_complete());
    let published = serde_json::to_value(&report).unwrap();
    assert_eq!(keys(&published), set(&strings(&def["required"])));
    let duplicate = serde_json::to_value(Report {
        duplicate: true,
        possible_duplicates: 1,
        ..report.clone()
    })
    .unwrap();
    assert_eq!(keys(&duplicate), keys(&def["properties"]));
    assert_eq!(
        duplicate["duplicate"],
        def["properties"]["duplicate"]["const"]
    );
    let skipped = &def["properties"]["skipped"];
    assert_eq!(keys(&published["skipped"]), keys(&skipped["properties"]));
    assert_eq!(
        keys(&published["skipped"]),
        set(&strings(&skipped["required"]))
    );
    for example in def["examples"].as_array().unwrap() {
        assert_eq!(keys(example), keys(&published));
        let skipped = &example["skipped"];
        let counted: u64 = ["offline", "unavailable", "invalid"]
            .iter()
            .map(|k| skipped[*k].as_u64().unwrap())
            .sum::<u64>()
            + example["sent"].as_u64().unwrap();
        assert_eq!(counted, example["recipients"].as_u64().unwrap());
    }
}

#[test]
fn presence_show_values_match_herald() {
    let schema = schema();
    let show = &schema["$defs"]["presenceChanged"]["properties"]["show"]["enum"];
    let mut expected: Vec<Value> = [Show::Online, Show::Chat, Show::Away, Show::Xa, Show::Dnd]
        .into_iter()
        .map(|s| {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            Value::from(s.as_str())
        })
        .collect();
    expected.push(Value::Null);
    assert_eq!(show.as_array().unwrap(), &expected);
}
