//! docs/job.schema.json is the job contract: a JSON Schema validator (boon)
//! checks every corpus job (tests/corpus/jobs), every JSON example in the
//! docs and in the schema, and hand-made edge cases against it, and each
//! verdict is compared with `Job::parse`'s. Every job Herald accepts must
//! pass the schema; a job the schema passes and Herald refuses must be one
//! of the cases the schema's description lists as beyond JSON Schema.
//! No network.

mod contract;

use std::path::Path;

use contract::{assert_agree, parse, refused_field, schema_json, Contract};
use herald::broadcast::fanout::Skipped;
use herald::broadcast::{Job, Report};
use herald::presence::Show;
use herald_testkit::job_check::limits;
use serde_json::{json, Value};

/// Corpus jobs that pass the schema and that Herald refuses, with the field
/// of Herald's refusal (sorted by name): each is a case the schema's
/// description lists.
const BEYOND_THE_SCHEMA: [(&str, &str); 7] = [
    ("reject-body-over-limit.json", "body"),
    ("reject-duplicate-field.json", "json"),
    ("reject-expires-at-no-such-day.json", "expires_at"),
    ("reject-multibyte-body-over-limit.json", "body"),
    ("reject-subject-over-limit.json", "subject"),
    ("reject-thousands-with-one-unparseable.json", "recipient"),
    ("reject-too-many-recipients.json", "to"),
];

#[test]
fn every_corpus_job_gets_the_same_verdict_from_the_schema_or_is_listed() {
    let contract = Contract::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/jobs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "corpus too small: {names:?}");
    let mut beyond = Vec::new();
    for name in &names {
        let payload = std::fs::read(dir.join(name)).unwrap();
        let herald = parse(&payload);
        // What is not JSON at all no schema can judge (description, (5)).
        let value = serde_json::from_slice::<Value>(&payload).ok();
        let schema = value.as_ref().is_some_and(|v| contract.job_valid(v));
        if name.starts_with("accept-") {
            assert!(herald.is_ok(), "{name}: Herald refused it: {herald:?}");
            assert!(schema, "{name}: Herald accepts it, the schema does not");
        } else {
            let error = herald.expect_err(name);
            if schema {
                let listed = BEYOND_THE_SCHEMA.iter().find(|(n, _)| n == name);
                let (_, field) = listed.unwrap_or_else(|| {
                    panic!("{name}: the schema passes it and Herald refuses it ({error}), and it is not listed")
                });
                assert_eq!(refused_field(&error), *field, "{name}: {error}");
                beyond.push(name.as_str());
            }
        }
    }
    let listed: Vec<&str> = BEYOND_THE_SCHEMA.iter().map(|(n, _)| *n).collect();
    assert_eq!(beyond, listed, "listed corpus files the schema now refuses");
}

/// Code blocks in the Markdown `text` of the given language.
fn code_blocks<'a>(text: &'a str, language: &str) -> Vec<&'a str> {
    let fence = format!("```{language}\n");
    text.match_indices(&fence)
        .map(|(at, _)| {
            let block = &text[at + fence.len()..];
            &block[..block.find("```").expect("closed code block")]
        })
        .collect()
}

/// Every JSON example in the docs: jobs (JSON blocks, and the `job = {...}`
/// of Python examples, written in JSON) and events.
fn doc_examples() -> Vec<(String, Value)> {
    let mut examples = Vec::new();
    let mut docs: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        // Its examples are the control contract's (tests/control_schema.rs).
        .filter(|p| !p.ends_with("control.md"))
        .collect();
    docs.sort();
    for path in docs {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for block in code_blocks(&text, "json") {
            let value = serde_json::from_str(block)
                .unwrap_or_else(|e| panic!("{name}: JSON example {block}: {e}"));
            examples.push((name.clone(), value));
        }
        for block in code_blocks(&text, "python") {
            if let Some(at) = block.find("job = {") {
                let rest = &block[at + "job = ".len()..];
                let end = rest.find("}\n").expect("job literal ends a line");
                let value = serde_json::from_str(&rest[..=end])
                    .unwrap_or_else(|e| panic!("{name}: Python job is not JSON: {e}"));
                examples.push((name.clone(), value));
            }
        }
    }
    examples
}

#[test]
fn every_example_in_the_docs_and_the_schema_is_valid() {
    let contract = Contract::new();
    let schema = schema_json();
    let mut jobs = 0;
    let mut examples = doc_examples();
    for example in schema["examples"].as_array().unwrap() {
        examples.push(("schema examples".into(), example.clone()));
    }
    for (def, _) in &contract.events {
        for example in schema["$defs"][def]["examples"]
            .as_array()
            .into_iter()
            .flatten()
        {
            examples.push((format!("schema {def} examples"), example.clone()));
        }
    }
    for (source, example) in &examples {
        if example.get("body").is_some() && example.get("id").is_some() {
            assert!(contract.job_valid(example), "{source}: {example}");
            let job = parse(example.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{source}: Herald refuses {example}: {e}"));
            assert_eq!(job.id, example["id"].as_str().unwrap());
            jobs += 1;
        } else {
            let matching: Vec<&str> = contract
                .events
                .iter()
                .filter(|(name, _)| contract.event(name, example).is_ok())
                .map(|(name, _)| *name)
                .collect();
            assert_eq!(
                matching.len(),
                1,
                "{source}: {example} matches {matching:?}"
            );
        }
    }
    assert!(jobs >= 5, "only {jobs} job examples found in {examples:?}");
}

#[test]
fn schema_and_herald_agree_on_nulls_blanks_and_shapes() {
    let contract = Contract::new();
    let accepted = [
        json!({"id": "j", "body": "b"}),
        json!({"id": "j", "body": "b", "subject": null, "from": null}),
        json!({"id": "j", "body": "b", "subject": ""}),
        json!({"id": "j", "body": " \t b \r\n", "subject": " "}),
        json!({"id": "j", "body": "\u{FEFF}"}),
        json!({"id": "é".repeat(256), "body": "b"}),
        json!({"id": "j", "body": "b", "to": [], "type": "normal", "policy": "online"}),
        json!({"id": "j", "body": "b", "type": "headline", "from": "alerts"}),
        json!({"id": "j", "body": "<&>\u{FFFD}\u{10FFFF}"}),
        json!({"id": "j", "body": "b", "expires_at": "2026-12-06T12:00:00Z"}),
        json!({"id": "j", "body": "b", "expires_at": "2026-12-06t12:00:00.250z"}),
        json!({"id": "j", "body": "b", "expires_at": "2026-12-06T12:00:00-05:30"}),
        json!({"id": "j", "body": "b", "expires_at": "2026-12-06 12:00:00+00:00"}),
        json!({"id": "j", "body": "b", "expires_at": null}),
        json!({"id": "j", "body": "b", "storage": "no-store"}),
        json!({"id": "j", "body": "b", "storage": "no-permanent-store"}),
        json!({"id": "j", "body": "b", "storage": "default"}),
        json!({"id": "j", "body": "b", "groups": ["ops", "A.b_c-9"], "all_subscribers": true}),
        json!({"id": "j", "body": "b", "groups": [], "all_subscribers": false}),
        json!({"id": "j", "body": "b", "groups": ["x".repeat(64)]}),
    ];
    let refused = [
        json!({"id": "j"}),
        json!({"body": "b"}),
        json!({"id": "j", "body": ""}),
        json!({"id": "j", "body": " \r\n\t "}),
        json!({"id": "j", "body": "\u{3000}\u{85}"}),
        json!({"id": " ", "body": "b"}),
        json!({"id": "é".repeat(257), "body": "b"}),
        json!({"id": "j", "body": null}),
        json!({"id": "j", "body": "b", "to": null}),
        json!({"id": "j", "body": "b", "to": "alice@example.com"}),
        json!({"id": "j", "body": "b", "type": null}),
        json!({"id": "j", "body": "b", "type": "groupchat"}),
        json!({"id": "j", "body": "b", "policy": null}),
        json!({"id": "j", "body": "b", "policy": "always"}),
        json!({"id": "j", "body": "b", "polciy": "online"}),
        json!({"id": "j", "body": "b", "from": ""}),
        json!({"id": "j", "body": "b", "from": "a@b"}),
        json!({"id": "j", "body": "b", "from": "a/b"}),
        json!({"id": "j", "body": "a\u{1}b"}),
        json!({"id": "j\u{b}", "body": "b"}),
        json!({"id": "j", "body": "b", "subject": "\u{1b}[31m"}),
        json!({"id": "j", "body": "\u{FFFE}"}),
        json!({"id": "j", "body": "b", "to": ["a\u{0}@localhost"]}),
        json!({"id": "j", "body": "b", "expires_at": "tomorrow"}),
        json!({"id": "j", "body": "b", "expires_at": "2026-12-06"}),
        json!({"id": "j", "body": "b", "expires_at": "2026-12-06T12:00:00"}),
        json!({"id": "j", "body": "b", "expires_at": "2026-12-06T12:00Z"}),
        json!({"id": "j", "body": "b", "expires_at": 1796558400}),
        json!({"id": "j", "body": "b", "storage": null}),
        json!({"id": "j", "body": "b", "storage": "no_store"}),
        json!({"id": "j", "body": "b", "storage": true}),
        json!({"id": "j", "body": "b", "groups": null}),
        json!({"id": "j", "body": "b", "groups": "ops"}),
        json!({"id": "j", "body": "b", "groups": ["ops team"]}),
        json!({"id": "j", "body": "b", "groups": [""]}),
        json!({"id": "j", "body": "b", "groups": ["x".repeat(65)]}),
        json!({"id": "j", "body": "b", "groups": vec!["g"; 1001]}),
        json!({"id": "j", "body": "b", "all_subscribers": null}),
        json!({"id": "j", "body": "b", "all_subscribers": "yes"}),
        json!(["j", [], "b"]),
    ];
    for job in &accepted {
        assert_agree(&contract, job, true);
    }
    for job in &refused {
        assert_agree(&contract, job, false);
    }
    // Blank is what Rust's trim() removes: Unicode White_Space, all of it
    // (U+000B and U+000C are also characters XML forbids).
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        if c.is_whitespace() {
            assert_agree(&contract, &json!({"id": "j", "body": c.to_string()}), false);
            let xml = !matches!(c, '\u{b}' | '\u{c}');
            assert_agree(&contract, &json!({"id": "j", "body": format!("{c}x")}), xml);
        }
    }
}

#[test]
fn what_the_schema_cannot_express_is_listed_and_refused_by_herald() {
    let contract = Contract::new();
    let description = schema_json()["description"].as_str().unwrap().to_string();
    let body = "x".repeat(limits().max_body_bytes + 1);
    let to: Vec<String> = (0..=limits().max_recipients)
        .map(|i| format!("u{i}@localhost"))
        .collect();
    // (listed as, payload the schema passes, field of Herald's refusal)
    let cases: [(&str, String, &str); 8] = [
        (
            "(1)",
            json!({"id": "j", "body": "b", "to": ["a b@example.com"]}).to_string(),
            "recipient",
        ),
        (
            "(2)",
            json!({"id": "j", "body": "b", "from": "x y"}).to_string(),
            "from",
        ),
        ("(3)", json!({"id": "j", "body": body}).to_string(), "body"),
        (
            "(3)",
            json!({"id": "j", "body": "b", "subject": body}).to_string(),
            "subject",
        ),
        (
            "(4)",
            json!({"id": "j", "body": "b", "to": to}).to_string(),
            "to",
        ),
        (
            "(5)",
            r#"{"id": "j", "id": "k", "body": "b"}"#.to_string(),
            "json",
        ),
        (
            "(5)",
            r#"{"id": "j", "body": "\ud800"}"#.to_string(),
            "json",
        ),
        (
            "(6)",
            json!({"id": "j", "body": "b", "expires_at": "2026-12-06T24:00:00Z"}).to_string(),
            "expires_at",
        ),
    ];
    for (listed, payload, field) in &cases {
        assert!(
            description.contains(listed),
            "{listed} is not in the description"
        );
        let short: String = payload.chars().take(80).collect();
        let error = parse(payload.as_bytes()).expect_err(&short);
        assert_eq!(refused_field(&error), *field, "{short}: {error}");
        // The lone surrogate is no JSON text to a strict reader: nothing to
        // validate. Every other case is a document the schema passes.
        if let Ok(value) = serde_json::from_str::<Value>(payload) {
            assert!(
                contract.job_valid(&value),
                "{listed}: the schema refuses {short}"
            );
        }
    }
    // And a sender outside broadcast.allowed_from, (2).
    let mut only_alerts = limits();
    only_alerts.allowed_from = vec!["alerts".into()];
    let job = json!({"id": "j", "body": "b", "from": "ceo"});
    assert!(contract.job_valid(&job));
    let error = Job::parse(job.to_string().as_bytes(), &only_alerts).unwrap_err();
    assert_eq!(refused_field(&error), "from", "{error}");
    assert!(description.contains("allowed_from"));
}

#[test]
fn reports_and_events_herald_publishes_match_their_definitions() {
    let contract = Contract::new();
    let report = Report {
        id: "j".into(),
        recipients: 4,
        sent: 1,
        skipped: Skipped {
            offline: 1,
            unavailable: 1,
            invalid: 1,
            expired: 0,
            cancelled: 0,
        },
        ..Report::default()
    };
    assert!(report.is_complete());
    let duplicate = Report {
        duplicate: true,
        possible_duplicates: 1,
        ..report.clone()
    };
    let expired = Report {
        sent: 0,
        expired: true,
        skipped: Skipped {
            offline: 0,
            unavailable: 0,
            invalid: 1,
            expired: 3,
            cancelled: 0,
        },
        ..report.clone()
    };
    assert!(expired.is_complete());
    let cancelled = Report {
        sent: 1,
        cancelled: true,
        skipped: Skipped {
            offline: 0,
            unavailable: 0,
            invalid: 0,
            expired: 0,
            cancelled: 3,
        },
        ..report.clone()
    };
    assert!(cancelled.is_complete());
    for report in [&report, &duplicate, &expired, &cancelled] {
        let published = serde_json::to_value(report).unwrap();
        contract.event("report", &published).unwrap();
        let mut extra = published.clone();
        extra["priority"] = json!(1);
        assert!(contract.event("report", &extra).is_err(), "{extra}");
        let mut missing = published;
        missing["skipped"]
            .as_object_mut()
            .unwrap()
            .remove("invalid");
        assert!(contract.event("report", &missing).is_err(), "{missing}");
    }
    let mut named = serde_json::to_value(&report).unwrap();
    named["names"] = json!({"set": 1_796_558_400_000u64, "parts": 2});
    contract.event("report", &named).unwrap();
    named["names"]["parts"] = json!(0);
    assert!(contract.event("report", &named).is_err(), "{named}");
    let mut windowed = serde_json::to_value(&report).unwrap();
    windowed["deferred"] = json!(2);
    windowed["deferred_until_ms"] = json!(1_796_560_200_000u64);
    contract.event("report", &windowed).unwrap();
    windowed["deferral_refused"] = json!("3 recipients would wait");
    contract.event("report", &windowed).unwrap();
    // Parts as Herald publishes them: a job cancelled before it came up.
    let job = parse(
        br#"{"id":"j","body":"b","to":["alice@example.com","x@example.com/r"],"report_names":true}"#,
    )
    .unwrap();
    let outcomes = herald::broadcast::names::Outcomes::default();
    let stop = Some(herald::broadcast::fanout::Stop::Cancelled);
    let (parts, _) = herald::broadcast::names::parts(&job, &outcomes, stop, 1, 0);
    for part in &parts {
        let part: serde_json::Value = serde_json::from_slice(&part.payload).unwrap();
        contract.event("namesPart", &part).unwrap();
        assert_eq!(part["cancelled"], json!(["alice@example.com"]), "{part}");
        let mut missing = part.clone();
        missing.as_object_mut().unwrap().remove("sent");
        assert!(contract.event("namesPart", &missing).is_err(), "{missing}");
    }
    for show in [Show::Online, Show::Chat, Show::Away, Show::Xa, Show::Dnd] {
        let event = json!({"jid": "alice@example.com/phone", "available": true, "show": show});
        contract.event("presenceChanged", &event).unwrap();
    }
    let gone = json!({"jid": "alice@example.com/phone", "available": false, "show": null});
    contract.event("presenceChanged", &gone).unwrap();
    let unknown = json!({"jid": "alice@example.com/phone", "available": true, "show": "busy"});
    assert!(contract.event("presenceChanged", &unknown).is_err());
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_558_402_500);
    let receipt = herald::broadcast::receipt_event("j", "alice@example.com", "Xy.0", at);
    assert_eq!(receipt.routing_key, "message.receipt");
    let receipt: Value = serde_json::from_slice(&receipt.payload).unwrap();
    contract.event("messageReceipt", &receipt).unwrap();
    let mut seconds = receipt.clone();
    seconds["at"] = json!("2026-12-06T12:00:02Z");
    assert!(
        contract.event("messageReceipt", &seconds).is_err(),
        "{seconds}"
    );
}
