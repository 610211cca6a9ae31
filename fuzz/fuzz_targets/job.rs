//! Any bytes as a job: parsing never panics, a refusal says why, and an
//! accepted job's messages, written by Herald's stream encoder, are
//! well-formed XML carrying the job's text unchanged. The properties are
//! those of the property tests (tests/support/job_check.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;

// Shared with the tests, which use more of them.
#[allow(dead_code)]
#[path = "../../tests/support/xml.rs"]
mod xml;

#[allow(dead_code)]
#[path = "../../tests/support/job_check.rs"]
mod job_check;

fuzz_target!(|payload: &[u8]| {
    job_check::check_payload(payload);
});
