use std::collections::HashSet;

use serde_json::json;
use xmpp_parsers::jid::Jid;

use super::*;
use crate::broadcast::job::RawJob;

fn own() -> BareJid {
    BareJid::new("broadcast.localhost").unwrap()
}

fn texts(to: &[&str]) -> Texts {
    serde_json::from_value(json!(to)).unwrap()
}

fn parsed(to: &[&str]) -> Vec<String> {
    let recipients = Recipients::parse(texts(to), &own()).unwrap();
    recipients.iter_from(0).map(shown).collect()
}

fn shown(recipient: Recipient<'_>) -> String {
    match recipient {
        Recipient::User(user) => user.to_string(),
        Recipient::Invalid(text) => format!("invalid {text}"),
    }
}

/// What Herald did with a `String` and a parsed JID per recipient.
fn reference(to: &[&str]) -> Vec<String> {
    reference_or_first_error(to).unwrap()
}

/// [`reference`], or the place of the first recipient that is no JID.
fn reference_or_first_error(to: &[&str]) -> Result<Vec<String>, usize> {
    let (mut users, mut invalid, mut out) = (HashSet::new(), HashSet::new(), Vec::new());
    for (index, text) in to.iter().enumerate() {
        match Jid::new(text).map_err(|_| index)?.try_into_full() {
            Err(bare) if bare.node().is_some() && bare.domain() != own().domain() => {
                if users.insert(bare.clone()) {
                    out.push(bare.to_string());
                }
            }
            _ => {
                if invalid.insert(text.to_string()) {
                    out.push(format!("invalid {text}"));
                }
            }
        }
    }
    Ok(out)
}

proptest::proptest! {
    /// Users at a domain already seen in normal form skip the parser: the
    /// list is still what parsing each would give.
    #[test]
    fn a_list_is_what_parsing_every_recipient_gives(
        to in proptest::collection::vec(
            concat!(
                r"(([a-z0-9._+-]{1,4}|[a-zA-Z0-9]{1,4}|[a-z]{1,2}(\u{e9}|\u{130}|\u{ad}|/|&|@)[a-z]{0,2})@)?",
                r"(localhost|LOCALHOST|example\.com|example\.com\.|xn--bcher-kva\.example|",
                r"b\u{fc}cher\.example|127\.0\.0\.1|broadcast\.localhost)(/[a-z]{0,2})?",
            ),
            0..16,
        )
    ) {
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        let parsed = Recipients::parse(texts(&to), &own());
        match reference_or_first_error(&to) {
            Ok(expected) => {
                let got: Vec<String> = parsed.unwrap().iter_from(0).map(shown).collect();
                proptest::prop_assert_eq!(got, expected);
            }
            Err(index) => {
                let refused_there =
                    matches!(parsed, Err(JobError::Recipient { index: i, .. }) if i == index);
                proptest::prop_assert!(refused_there, "{:?}", parsed);
            }
        }
    }
}

#[test]
fn a_plain_local_part_at_a_domain_seen_in_normal_form_is_as_written() {
    let to = [
        "a@example.com",
        "b.c+d_e-f@example.com",
        "B@example.com",
        "g@Example.com",
        "h@example.com/r",
        "i@broadcast.localhost",
        "j@broadcast.localhost",
        "k\u{e9}@example.com",
    ];
    assert_eq!(parsed(&to), reference(&to));
}

#[test]
fn the_order_as_written_each_user_once_by_their_normal_form() {
    let to = [
        "b@localhost",
        "A@localhost",
        "a@LOCALHOST",
        "a@localhost/phone",
        "a@localhost/phone",
        "localhost",
        "x@broadcast.localhost",
        "b@localhost",
        "a@localhost",
        "c@localhost",
    ];
    assert_eq!(
        parsed(&to),
        [
            "b@localhost",
            "a@localhost",
            "invalid a@localhost/phone",
            "invalid localhost",
            "invalid x@broadcast.localhost",
            "c@localhost",
        ]
    );
    assert_eq!(parsed(&to), reference(&to));
}

#[test]
fn normal_forms_longer_than_what_was_written_move_to_a_buffer_of_their_own() {
    // U+0130 folds to "i" and a combining dot: a byte longer. First, with
    // no room freed before it; later, after repeats freed some.
    let to = [
        "\u{130}@localhost",
        "b@localhost",
        "\u{149}x@localhost",
        "b@localhost",
        "d@localhost/r",
        "\u{130}@localhost",
        "e@localhost",
    ];
    assert_eq!(parsed(&to), reference(&to));
    assert_eq!(parsed(&to[1..]), reference(&to[1..]));
    assert_eq!(parsed(&to[3..]), reference(&to[3..]));
    assert_eq!(
        parsed(&["b@localhost", "b@localhost", "\u{149}@localhost"]),
        ["b@localhost", "\u{2bc}n@localhost"]
    );
}

#[test]
fn a_recipient_that_is_no_jid_is_named_by_its_place_as_written() {
    let error = Recipients::parse(texts(&["a@localhost", "a@localhost", "@@"]), &own());
    assert!(
        matches!(&error, Err(JobError::Recipient { index: 2, jid, .. }) if jid == "@@"),
        "{error:?}"
    );
}

#[test]
fn a_to_that_is_not_a_list_of_strings_is_refused_as_a_vec_of_strings_was() {
    for to in [
        r#""a@localhost""#,
        "null",
        "[1]",
        r#"["a@localhost", null]"#,
        r#"{"a": 1}"#,
        r#"[["a@localhost"]]"#,
        r#"["a@localhost"], "to": []"#,
    ] {
        let payload = format!(r#"{{"id": "j", "body": "b", "to": {to}}}"#);
        let compact = serde_json::from_str::<RawJob<Texts>>(&payload).unwrap_err();
        let strings = serde_json::from_str::<RawJob>(&payload).unwrap_err();
        assert_eq!(compact.to_string(), strings.to_string(), "{to}");
    }
    let escaped = r#"{"id": "j", "body": "b", "to": ["\u0061@localhost", "b@l\u006fcalhost"]}"#;
    let job: RawJob<Texts> = serde_json::from_str(escaped).unwrap();
    let recipients = Recipients::parse(job.to, &own()).unwrap();
    let users: Vec<_> = recipients.iter_from(0).map(shown).collect();
    assert_eq!(users, ["a@localhost", "b@localhost"]);
}

#[test]
fn users_added_later_are_added_once_and_never_over_an_invalid_entry() {
    let mut recipients =
        Recipients::parse(texts(&["a@localhost", "x@broadcast.localhost"]), &own()).unwrap();
    let mut users = recipients.users();
    assert!(!users.add(UserText("a@localhost")).unwrap());
    assert!(users.add(UserText("x@broadcast.localhost")).unwrap());
    assert!(users.add(UserText("b@localhost")).unwrap());
    assert!(!users.add(UserText("b@localhost")).unwrap());
    let all: Vec<_> = recipients.iter_from(1).map(shown).collect();
    assert_eq!(
        all,
        [
            "invalid x@broadcast.localhost",
            "x@broadcast.localhost",
            "b@localhost"
        ]
    );
    assert_eq!(recipients.get(4), None);
}
