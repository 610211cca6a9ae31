use super::*;
use serde_json::json;

fn limits() -> JobLimits {
    JobLimits {
        component_domain: BareJid::new("broadcast.localhost").unwrap(),
        default_sender: "herald@broadcast.localhost".parse().unwrap(),
        max_body_bytes: 1024,
        max_recipients: 100,
        allowed_from: Vec::new(),
        names_part_bytes: 256 * 1024,
        max_deliver_within: std::time::Duration::from_secs(3600),
        receipts_window: std::time::Duration::from_secs(300),
    }
}

fn parse(value: serde_json::Value) -> Result<Job, JobError> {
    Job::parse(value.to_string().as_bytes(), &limits())
}

fn recipients(job: &Job) -> Vec<Recipient<'_>> {
    job.recipients.iter_from(0).collect()
}

#[test]
fn minimal_job_gets_defaults() {
    let job = parse(json!({"id": "j1", "to": ["a@localhost"], "body": "hi"})).unwrap();
    assert_eq!(recipients(&job), [Recipient::User("a@localhost")]);
    assert_eq!(job.kind, MessageKind::Chat);
    assert_eq!(job.policy, Policy::Available);
    assert_eq!(job.from.to_string(), "herald@broadcast.localhost");
    assert_eq!(job.subject, None);
}

#[test]
fn full_job_is_read() {
    let job = parse(json!({
        "id": "j2", "to": ["a@localhost"], "body": "hi", "subject": "s",
        "type": "headline", "from": "alerts", "policy": "online"
    }))
    .unwrap();
    assert_eq!(job.kind, MessageKind::Headline);
    assert_eq!(job.policy, Policy::Online);
    assert_eq!(job.from.to_string(), "alerts@broadcast.localhost");
    assert_eq!(job.subject.as_deref(), Some("s"));
}

#[test]
fn bad_json_and_missing_fields_are_errors() {
    assert!(matches!(
        Job::parse(b"{not json", &limits()),
        Err(JobError::Json(_))
    ));
    assert!(matches!(
        parse(json!({"id": "x", "to": []})),
        Err(JobError::Json(_))
    ));
    assert!(matches!(
        parse(json!({"body": "x"})),
        Err(JobError::Json(_))
    ));
    assert!(matches!(
        parse(json!({"id": "x", "body": "b", "policy": "sometimes"})),
        Err(JobError::Json(_))
    ));
    assert!(matches!(
        parse(json!({"id": "x", "body": "b", "recipients": []})),
        Err(JobError::Json(_))
    ));
}

#[test]
fn forbidden_xml_characters_are_refused_everywhere() {
    for bad in [
        "\u{0}", "a\u{1}b", "\u{b}", "\u{1f}", "\u{fffe}", "\u{ffff}",
    ] {
        let err = parse(json!({"id": "x", "to": [], "body": bad})).unwrap_err();
        assert!(
            matches!(err, JobError::Field { field: "body", .. }),
            "{bad:?}"
        );
        let err = parse(json!({"id": "x", "to": [], "body": "ok", "subject": bad})).unwrap_err();
        assert!(matches!(
            err,
            JobError::Field {
                field: "subject",
                ..
            }
        ));
        let err = parse(json!({"id": bad, "to": [], "body": "ok"})).unwrap_err();
        assert!(matches!(err, JobError::Field { field: "id", .. }));
    }
    let ok = parse(json!({"id": "x", "to": [], "body": "tab\there\r\nnew <&> 🚨 \u{fffd}"}));
    assert!(ok.is_ok());
}

#[test]
fn unparseable_recipient_rejects_the_job() {
    let err = parse(json!({"id": "x", "to": ["a@localhost", "@@bad"], "body": "b"})).unwrap_err();
    assert!(matches!(err, JobError::Recipient { index: 1, .. }), "{err}");
}

#[test]
fn unaddressable_recipients_are_counted_invalid_and_duplicates_dropped() {
    let job = parse(json!({"id": "x", "body": "b", "to": [
        "a@localhost", "a@localhost/phone", "localhost", "x@broadcast.localhost", "a@localhost"
    ]}))
    .unwrap();
    assert_eq!(
        recipients(&job),
        [
            Recipient::User("a@localhost"),
            Recipient::Invalid("a@localhost/phone"),
            Recipient::Invalid("localhost"),
            Recipient::Invalid("x@broadcast.localhost"),
        ]
    );
}

#[test]
fn arrays_blank_bodies_and_empty_subjects() {
    let array = json!(["j1", [], "hi", null, "chat", null, "available"]);
    assert!(matches!(parse(array), Err(JobError::Json(_))));
    assert!(parse(json!({"id": "x", "to": [], "body": " \n "})).is_err());
    let job = parse(json!({"id": "x", "to": [], "body": "b", "subject": ""})).unwrap();
    assert_eq!(job.subject, None);
}

#[test]
fn repeated_invalid_recipients_count_once() {
    let job = parse(json!({"id": "x", "body": "b", "to": ["a@localhost/x", "a@localhost/x"]}));
    assert_eq!(job.unwrap().recipients.len(), 1);
}

#[test]
fn limits_are_enforced() {
    let big = "x".repeat(1025);
    assert!(parse(json!({"id": "x", "to": [], "body": big})).is_err());
    let many: Vec<String> = (0..101).map(|i| format!("u{i}@localhost")).collect();
    assert!(parse(json!({"id": "x", "to": many, "body": "b"})).is_err());
    assert!(parse(json!({"id": " ", "to": [], "body": "b"})).is_err());
    assert!(parse(json!({"id": "x", "to": [], "body": ""})).is_err());
}

#[test]
fn bad_sender_is_refused() {
    for from in ["", "a@b", "a/b", "with space"] {
        let err = parse(json!({"id": "x", "to": [], "body": "b", "from": from}));
        assert!(
            matches!(err, Err(JobError::Field { field: "from", .. })),
            "{from:?}"
        );
    }
}

#[test]
fn only_allowed_senders_when_a_list_is_configured() {
    let limits = JobLimits {
        allowed_from: vec!["herald".into(), "alerts".into()],
        names_part_bytes: 256 * 1024,
        ..limits()
    };
    let job = |from: serde_json::Value| {
        let mut value = json!({"id": "x", "to": [], "body": "b"});
        if !from.is_null() {
            value["from"] = from;
        }
        Job::parse(value.to_string().as_bytes(), &limits)
    };
    assert!(job(serde_json::Value::Null).is_ok(), "the default sender");
    assert!(job(json!("alerts")).is_ok());
    assert!(job(json!("ALERTS")).is_ok(), "compared after normalisation");
    let err = job(json!("ceo")).unwrap_err();
    assert!(
        matches!(err, JobError::Field { field: "from", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("allowed_from"), "{err}");
}

#[test]
fn expires_at_is_read_as_the_moment_it_names() {
    let at = |text: &str| parse(json!({"id": "j", "body": "b", "expires_at": text}));
    let noon = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_558_400);
    for same in [
        "2026-12-06T12:00:00Z",
        "2026-12-06T13:00:00+01:00",
        "2026-12-06t06:30:00-05:30",
    ] {
        assert_eq!(at(same).unwrap().expires_at, Some(noon), "{same}");
    }
    let none = parse(json!({"id": "j", "body": "b", "expires_at": null})).unwrap();
    assert_eq!(none.expires_at, None);
    for bad in [
        "tomorrow",
        "2026-12-06",
        "2026-12-06T12:00:00",
        "2026-02-30T12:00:00Z",
    ] {
        let error = at(bad).unwrap_err();
        assert!(
            error.to_string().starts_with("field `expires_at`: "),
            "{bad}: {error}"
        );
    }
}

#[test]
fn storage_is_read_and_defaults_to_what_the_server_does() {
    let storage = |value: serde_json::Value| {
        parse(json!({"id": "j", "body": "b", "storage": value})).map(|job| job.storage)
    };
    assert_eq!(storage(json!("no-store")), Ok(Storage::NoStore));
    assert_eq!(
        storage(json!("no-permanent-store")),
        Ok(Storage::NoPermanentStore)
    );
    assert_eq!(storage(json!("default")), Ok(Storage::Default));
    let job = parse(json!({"id": "j", "body": "b"})).unwrap();
    assert_eq!(job.storage, Storage::Default);
    for bad in [json!("never"), json!(null), json!(false)] {
        assert!(storage(bad.clone()).is_err(), "{bad}");
    }
}
