//! JSON values for the fields of a job, as text: strings clean and hostile,
//! odd values of other types, recipients good and bad.

use proptest::prelude::*;

// ---- strings, as JSON string literals ----

/// A character escaped as serde_json would write it.
pub fn json_char(c: char) -> String {
    let quoted = serde_json::to_string(&c.to_string()).unwrap();
    quoted[1..quoted.len() - 1].to_string()
}

/// Text that is fine in a job: any allowed character, XML's special ones,
/// line ends, emoji, the edges of the allowed ranges.
pub fn clean_fragment() -> impl Strategy<Value = String> {
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
pub fn hostile_fragment() -> impl Strategy<Value = String> {
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

pub fn quoted(fragments: Vec<String>) -> String {
    format!("\"{}\"", fragments.concat())
}

pub fn clean_string() -> impl Strategy<Value = String> {
    prop::collection::vec(clean_fragment(), 1..40).prop_map(quoted)
}

pub fn hostile_string() -> impl Strategy<Value = String> {
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
pub fn huge_string() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["x", "<", "&", "é", "🚨", "\\r\\n", "\\u0000"]),
        16_000usize..70_000,
    )
        .prop_map(|(piece, count)| format!("\"{}\"", piece.repeat(count)))
}

// ---- other JSON values ----

pub fn deep_nesting() -> impl Strategy<Value = String> {
    (1usize..20_000, any::<bool>()).prop_map(|(depth, arrays)| {
        if arrays {
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        } else {
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }
    })
}

/// Any value where the field expects something else.
pub fn odd_value() -> impl Strategy<Value = String> {
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
pub fn good_recipient() -> impl Strategy<Value = String> {
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
pub fn bad_recipient() -> impl Strategy<Value = String> {
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
pub fn many_recipients() -> impl Strategy<Value = String> {
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

pub fn array(entries: Vec<String>) -> String {
    format!("[{}]", entries.join(","))
}
