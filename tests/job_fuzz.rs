//! Hostile jobs (issue 5, bad input): property tests over arbitrary bytes
//! and over JSON objects with the real field names and hostile values, and
//! the regression corpus in tests/corpus/jobs. The properties themselves are
//! in support/job_check.rs: no panic, every refusal has a reason, every
//! accepted job's messages are well-formed XML whose text round-trips.
//!
//! Corpus files named `accept-*` must be accepted, `reject-*` refused.

use std::path::Path;

use herald_testkit::job_check::{check_payload, Verdict};
use proptest::prelude::*;
use proptest::test_runner::Config;

// ---- strings, as JSON string literals ----

/// A character escaped as serde_json would write it.
fn json_char(c: char) -> String {
    let quoted = serde_json::to_string(&c.to_string()).unwrap();
    quoted[1..quoted.len() - 1].to_string()
}

/// Text that is fine in a job: any allowed character, XML's special ones,
/// line ends, emoji, the edges of the allowed ranges.
fn clean_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<char>()
            .prop_filter("XML-allowed", |c| matches!(*c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
            .prop_map(json_char),
        2 => prop::sample::select(vec![
            "<", ">", "&", "&amp;", "&#1;", "]]>", "<![CDATA[", "'", "\\\"", "\\\\", "\\/",
            "\\r\\n", "\\r", "\\t", " ", "\\ud83d\\udea8", "\\ufffd", "\\ud7ff", "\\ue000",
            "\\udbff\\udfff", "\u{85}", "\u{2028}", "<body>", "</message>", "<?xml?>",
            "<stream:stream>", "a",
        ])
        .prop_map(String::from),
    ]
}

/// Text XML forbids or JSON cannot carry: control characters (escaped and
/// raw), lone surrogates, U+FFFE/U+FFFF, invalid escapes.
fn hostile_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..0x20).prop_map(|c| format!("\\u{c:04x}")),
        (0u8..0x20).prop_map(|b| char::from(b).to_string()),
        (0xD800u32..0xE000).prop_map(|c| format!("\\u{c:04X}")),
        prop::sample::select(vec![
            "\\ufffe",
            "\\uffff",
            "\\uFFFE",
            "\\ud800\\u0041",
            "\\udc00\\ud800",
            "\\x41",
            "\\u12",
            "\\",
            "\"",
        ])
        .prop_map(String::from),
    ]
}

fn quoted(fragments: Vec<String>) -> String {
    format!("\"{}\"", fragments.concat())
}

fn clean_string() -> impl Strategy<Value = String> {
    prop::collection::vec(clean_fragment(), 1..40).prop_map(quoted)
}

fn hostile_string() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(clean_fragment(), 0..10),
        hostile_fragment(),
        prop::collection::vec(clean_fragment(), 0..10),
    )
        .prop_map(|(mut before, bad, after)| {
            before.push(bad);
            before.extend(after);
            quoted(before)
        })
}

/// Strings around the 64 KiB body limit, of characters that grow when
/// escaped or take several bytes.
fn huge_string() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["x", "<", "&", "é", "🚨", "\\r\\n", "\\u0000"]),
        16_000usize..70_000,
    )
        .prop_map(|(piece, count)| format!("\"{}\"", piece.repeat(count)))
}

// ---- other JSON values ----

fn deep_nesting() -> impl Strategy<Value = String> {
    (1usize..20_000, any::<bool>()).prop_map(|(depth, arrays)| {
        if arrays {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        } else {
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }
    })
}

/// Any value where the field expects something else.
fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "null",
            "true",
            "0",
            "-1",
            "1e999",
            "18446744073709551616",
            "[]",
            "{}",
            "[\"a\"]",
            "{\"id\":\"x\"}",
            "\"\"",
            "NaN",
            "undefined",
        ])
        .prop_map(String::from),
        deep_nesting(),
        hostile_string(),
    ]
}

// ---- recipients ----

/// A `to` entry Herald can take: users (in any case), JIDs it cannot
/// address (with a resource, on its own domain, bare domains).
fn good_recipient() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u16..50).prop_map(|i| format!("\"u{i}@localhost\"")),
        1 => (0u16..50).prop_map(|i| format!("\"U{i}@LocalHost\"")),
        1 => (0u16..50).prop_map(|i| format!("\"u{i}@localhost/r{i}\"")),
        1 => (0u16..50).prop_map(|i| format!("\"x{i}@broadcast.localhost\"")),
        1 => (0u16..50).prop_map(|i| format!("\"host{i}.example\"")),
        1 => Just("\"ü@münchen.example\"".to_string()),
    ]
}

/// A `to` entry that is not a JID, or may not be one.
fn bad_recipient() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"\"",
            "\"@localhost\"",
            "\"a@\"",
            "\"a b@localhost\"",
            "\"a@b@c\"",
            "\"/r\"",
            "\"a@localhost/\"",
            "\"\\u0000@localhost\"",
            "\"a@[::1\"",
            "\"a@-.-\"",
            "\"\\ud800@localhost\"",
        ])
        .prop_map(String::from),
        clean_string().prop_map(|s| format!("\"{}@localhost\"", &s[1..s.len() - 1])),
        odd_value(),
    ]
}

/// Thousands of unaddressable recipients (JIDs with resources, Herald's own
/// domain, bare domains), a few users, and maybe one non-JID somewhere.
fn many_recipients() -> impl Strategy<Value = String> {
    (
        1_000usize..6_000,
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(count, broken)| {
            let broken = broken.map(|index| index.index(count));
            let entries: Vec<String> = (0..count)
                .map(|i| match (Some(i) == broken, i % 4) {
                    (true, _) => "\"not a jid@\"".to_string(),
                    (_, 0) => format!("\"u{i}@localhost/phone\""),
                    (_, 1) => format!("\"x{i}@broadcast.localhost\""),
                    (_, 2) => format!("\"d{i}.localhost\""),
                    _ => format!("\"u{}@localhost\"", i % 7),
                })
                .collect();
            format!("[{}]", entries.join(","))
        })
}

fn array(entries: Vec<String>) -> String {
    format!("[{}]", entries.join(","))
}

// ---- whole jobs ----

const FIELDS: [&str; 9] = [
    "id",
    "to",
    "body",
    "subject",
    "type",
    "from",
    "policy",
    "expires_at",
    "storage",
];

/// A value Herald should accept for each field of [`FIELDS`], or `None`
/// for an optional field left out.
fn plausible_fields() -> impl Strategy<Value = [Option<String>; 9]> {
    let id = clean_string().prop_filter("not blank", |s| not_blank(s));
    let to = prop_oneof![
        6 => prop::collection::vec(good_recipient(), 0..20).prop_map(array),
        1 => many_recipients(),
    ];
    let body = prop_oneof![
        6 => clean_string().prop_filter("not blank", |s| not_blank(s)),
        1 => (prop::sample::select(vec!["x", "<", "&", "é", "🚨", "\\r\\n"]), 1usize..16_000)
            .prop_map(|(piece, count)| format!("\"{}\"", piece.repeat(count))),
    ];
    let subject = prop::option::of(prop_oneof![Just("\"\"".to_string()), clean_string()]);
    let kind = prop::option::of(
        prop::sample::select(vec!["\"chat\"", "\"normal\"", "\"headline\""]).prop_map(String::from),
    );
    let from = prop::option::of(
        prop::sample::select(vec!["\"alerts\"", "\"Alerts\"", "\"ünï\"", "\"x.y-z_1\""])
            .prop_map(String::from),
    );
    let policy = prop::option::of(
        prop::sample::select(vec!["\"available\"", "\"online\""]).prop_map(String::from),
    );
    let expires_at = prop::option::of(
        prop::sample::select(vec![
            "\"2020-01-01T00:00:00Z\"",
            "\"2999-12-31T23:59:59.999+14:00\"",
            "\"2026-12-06 12:00:00-05:30\"",
            "null",
        ])
        .prop_map(String::from),
    );
    let storage = prop::option::of(
        prop::sample::select(vec![
            "\"default\"",
            "\"no-permanent-store\"",
            "\"no-store\"",
        ])
        .prop_map(String::from),
    );
    (
        id,
        to,
        body,
        subject,
        kind,
        from,
        policy,
        (expires_at, storage),
    )
        .prop_map(
            |(id, to, body, subject, kind, from, policy, (expires_at, storage))| {
                [
                    Some(id),
                    Some(to),
                    Some(body),
                    subject,
                    kind,
                    from,
                    policy,
                    expires_at,
                    storage,
                ]
            },
        )
}

fn not_blank(json_string: &str) -> bool {
    serde_json::from_str::<String>(json_string).is_ok_and(|s| !s.trim().is_empty())
}

/// A hostile value for field `FIELDS[index]`, or `None` to leave it out.
fn hostile_field(index: usize) -> BoxedStrategy<Option<String>> {
    let value = match FIELDS[index] {
        "to" => prop_oneof![
            3 => (
                prop::collection::vec(good_recipient(), 0..10),
                bad_recipient(),
                prop::collection::vec(good_recipient(), 0..10),
            )
                .prop_map(|(mut before, bad, after)| {
                    before.push(bad);
                    before.extend(after);
                    array(before)
                }),
            1 => many_recipients(),
            1 => odd_value(),
        ]
        .boxed(),
        "body" | "subject" => prop_oneof![
            3 => hostile_string(), 2 => huge_string(), 1 => odd_value(),
        ]
        .boxed(),
        "type" => prop_oneof![
            prop::sample::select(vec!["\"groupchat\"", "\"error\"", "\"Chat\"", "\"\""])
                .prop_map(String::from),
            odd_value(),
        ]
        .boxed(),
        "from" => prop_oneof![
            prop::sample::select(vec![
                "\"a@b\"",
                "\"a/b\"",
                "\"\"",
                "\"with space\"",
                "\"a\\u0000\"",
                "\"x\\\"y\"",
                "\"@\"",
                "\"a\\u0007\"",
            ])
            .prop_map(String::from),
            clean_string(),
            odd_value(),
        ]
        .boxed(),
        "policy" => prop_oneof![Just("\"sometimes\"".to_string()), odd_value(),].boxed(),
        "expires_at" => prop_oneof![
            prop::sample::select(vec![
                "\"tomorrow\"",
                "\"2026-02-30T00:00:00Z\"",
                "\"2026-12-06T12:00:00\"",
                "\"2026-12-06T24:00:00Z\"",
            ])
            .prop_map(String::from),
            hostile_string(),
            odd_value(),
        ]
        .boxed(),
        "storage" => prop_oneof![
            prop::sample::select(vec!["\"no_store\"", "\"No-Store\"", "null"])
                .prop_map(String::from),
            odd_value(),
        ]
        .boxed(),
        _ => prop_oneof![hostile_string(), odd_value()].boxed(),
    };
    prop::option::weighted(0.9, value).boxed()
}

fn object(fields: [Option<String>; 9], extra: Option<&str>) -> String {
    let members: Vec<String> = FIELDS
        .iter()
        .zip(fields)
        .filter_map(|(name, value)| Some(format!("\"{name}\":{}", value?)))
        .chain(extra.map(String::from))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// JSON objects with the real field names: all plausible (edge cases Herald
/// must accept), plausible but one field hostile, or all hostile; maybe an
/// unknown or repeated field.
fn job_object() -> impl Strategy<Value = String> {
    let extra = prop::option::weighted(
        0.05,
        prop::sample::select(vec![
            "\"recipients\":[]",
            "\"id\":\"again\"",
            "\"priority\":1",
        ]),
    );
    let one_twist = (plausible_fields(), 0..FIELDS.len())
        .prop_flat_map(|(fields, index)| (Just(fields), Just(index), hostile_field(index)))
        .prop_map(|(mut fields, index, value)| {
            fields[index] = value;
            fields
        });
    let chaotic = (
        hostile_field(0),
        hostile_field(1),
        hostile_field(2),
        hostile_field(3),
        hostile_field(4),
        hostile_field(5),
        hostile_field(6),
        (hostile_field(7), hostile_field(8)),
    )
        .prop_map(|(a, b, c, d, e, f, g, (h, i))| [a, b, c, d, e, f, g, h, i]);
    let fields = prop_oneof![2 => plausible_fields(), 3 => one_twist, 1 => chaotic];
    (fields, extra).prop_map(|(fields, extra)| object(fields, extra))
}

/// A plausible job with a few random byte edits.
fn mutated_job() -> impl Strategy<Value = Vec<u8>> {
    (
        job_object(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    )
        .prop_map(|(job, edits)| {
            let mut bytes = job.into_bytes();
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let at = at.index(bytes.len());
                match op {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            bytes
        })
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures are kept as corpus files, not in proptest's own files.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes(payload in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_payload(&payload);
    }

    #[test]
    fn arbitrary_bytes_after_an_opening_brace(rest in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut payload = b"{".to_vec();
        payload.extend(rest);
        check_payload(&payload);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn hostile_job_objects(job in job_object()) {
        check_payload(job.as_bytes());
    }

    #[test]
    fn mutated_job_objects(job in mutated_job()) {
        check_payload(&job);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Jobs that must be accepted: clean strings everywhere, recipients that
    /// are all JIDs. The full serialization path runs on every case.
    #[test]
    fn clean_jobs_are_accepted_and_round_trip(
        id in clean_string(),
        body in clean_string(),
        subject in prop::option::of(clean_string()),
        kind in prop::sample::select(vec!["chat", "normal", "headline"]),
        users in prop::collection::vec(0u16..100, 1..10),
    ) {
        prop_assume!(serde_json::from_str::<String>(&id).unwrap().trim() != "");
        prop_assume!(serde_json::from_str::<String>(&body).unwrap().trim() != "");
        let to: Vec<String> = users.iter().map(|u| format!("\"u{u}@localhost\"")).collect();
        let subject = subject.map(|s| format!(",\"subject\":{s}")).unwrap_or_default();
        let job = format!(
            "{{\"id\":{id},\"to\":[{}],\"body\":{body},\"type\":\"{kind}\"{subject}}}",
            to.join(",")
        );
        let verdict = check_payload(job.as_bytes());
        prop_assert!(matches!(verdict, Verdict::Accepted(_)), "{verdict:?} for {job}");
    }
}

/// Every file in tests/corpus/jobs: the properties hold, and the name says
/// whether it must be accepted or refused.
#[test]
fn corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/jobs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus too small: {files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let payload = std::fs::read(&path).unwrap();
        let verdict = check_payload(&payload);
        if name.starts_with("accept-") {
            assert!(
                matches!(verdict, Verdict::Accepted(_)),
                "{name}: {verdict:?}"
            );
        } else if name.starts_with("reject-") {
            assert!(matches!(verdict, Verdict::Rejected(_)), "{name}: accepted");
        } else {
            panic!("{name}: corpus files are named accept-* or reject-*");
        }
    }
}
