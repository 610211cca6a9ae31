//! Any bytes as a job: parsing never panics, a refusal says why, and an
//! accepted job's messages, written by Herald's stream encoder, are
//! well-formed XML carrying the job's text unchanged. The properties are
//! those of the property tests (herald_testkit::job_check).

#![no_main]

use libfuzzer_sys::fuzz_target;
use herald_testkit::job_check;

fuzz_target!(|payload: &[u8]| {
    job_check::check_payload(payload);
});
