//! Hostile jobs (issue 5, bad input): property tests over arbitrary bytes
//! and over JSON objects with the real field names and hostile values, and
//! the regression corpus in tests/corpus/jobs. The properties themselves are
//! in support/job_check.rs: no panic, every refusal has a reason, every
//! accepted job's messages are well-formed XML whose text round-trips.
//!
//! Corpus files named `accept-*` must be accepted, `reject-*` refused.

mod jobs;
mod values;

use std::path::Path;

use herald_testkit::job_check::{check_payload, Verdict};
use jobs::{job_object, mutated_job};
use proptest::prelude::*;
use proptest::test_runner::Config;
use values::clean_string;

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
