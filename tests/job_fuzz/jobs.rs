//! Whole jobs, as JSON text: the real field names with plausible or
//! hostile values, and plausible jobs with random byte edits.

use proptest::prelude::*;

use super::values::*;

// ---- whole jobs ----

pub const FIELDS: [&str; 9] = [
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
pub fn plausible_fields() -> impl Strategy<Value = [Option<String>; 9]> {
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

pub fn not_blank(json_string: &str) -> bool {
    serde_json::from_str::<String>(json_string).is_ok_and(|s| !s.trim().is_empty())
}

/// A hostile value for field `FIELDS[index]`, or `None` to leave it out.
pub fn hostile_field(index: usize) -> BoxedStrategy<Option<String>> {
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

pub fn object(fields: [Option<String>; 9], extra: Option<&str>) -> String {
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
pub fn job_object() -> impl Strategy<Value = String> {
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
pub fn mutated_job() -> impl Strategy<Value = Vec<u8>> {
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
