//! What ties a broadcast's messages to their job, both ways: the id of each
//! message (the same whenever the same job is sent again, so that a client
//! or the server can drop the copy at-least-once delivery allows), and the
//! XEP-0201 thread that a reply carries back, from which Herald reads the
//! job's id without remembering anything. Derived from the job's `id`
//! alone, so an attempt after a crash or a redelivery marks its messages as
//! the first attempt did, and a reply is tied to its job after any restart.
//! Pure code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::job::Storage;
use crate::xmpp::wire::Marks;

/// Bytes of the job id's SHA-256 in a message id: 120 bits, so that two
/// jobs' ids do not collide by chance, in 20 characters of base64url.
const ID_HASH_BYTES: usize = 15;

/// Starts every thread Herald gives: a reply's thread without it is a
/// conversation of the user's own.
const THREAD_PREFIX: &str = "herald.";
/// The longest job id (see job validation), in bytes of UTF-8.
const MAX_JOB_ID_BYTES: usize = 4 * 256;

/// The marks of every message of the job with this `id`, which asks
/// servers to keep its messages as `storage` says, and clients for a
/// delivery receipt when `receipt`.
pub fn marks(job_id: &str, storage: Storage, receipt: bool) -> Marks {
    Marks {
        id_prefix: id_prefix(job_id),
        thread: thread(job_id),
        hints: hints(storage).to_vec(),
        receipt,
    }
}

/// The XEP-0334 hints that ask for `storage`.
fn hints(storage: Storage) -> &'static [&'static str] {
    match storage {
        Storage::Default => &[],
        Storage::NoPermanentStore => &["no-permanent-store"],
        // no-store implies the other, but an archive may look for that
        // one alone.
        Storage::NoStore => &["no-store", "no-permanent-store"],
    }
}

/// The thread of a job's messages: its id in base64url, which replies
/// bring back whole (no client trims or folds it) and which reads back as
/// the id without a table of past jobs.
fn thread(job_id: &str) -> String {
    let mut thread = String::with_capacity(THREAD_PREFIX.len() + job_id.len() * 4 / 3 + 4);
    thread.push_str(THREAD_PREFIX);
    URL_SAFE_NO_PAD.encode_string(job_id.as_bytes(), &mut thread);
    thread
}

/// The id of the job whose messages have this thread; None for a thread
/// Herald did not give (a client's own, or one no job could have).
pub fn job_of_thread(thread: &str) -> Option<String> {
    let encoded = thread.strip_prefix(THREAD_PREFIX)?;
    if encoded.len() > MAX_JOB_ID_BYTES.div_ceil(3) * 4 {
        return None;
    }
    let id = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
    (!id.is_empty()).then_some(id)
}

/// A message's id is this followed by its recipient's position in the job:
/// a hash, so that ids are short, need no escaping and do not show the
/// producer's job id to recipients.
fn id_prefix(job_id: &str) -> String {
    let digest = Sha256::digest(job_id.as_bytes());
    let mut prefix = URL_SAFE_NO_PAD.encode(&digest[..ID_HASH_BYTES]);
    // Not in base64url's alphabet: the position is plainly apart.
    prefix.push('.');
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_always_gives_the_same_prefix_and_another_id_another() {
        let first = marks("incident-4711", Storage::Default, false);
        assert_eq!(first, marks("incident-4711", Storage::Default, false));
        assert_ne!(
            first.id_prefix,
            marks("incident-4712", Storage::Default, false).id_prefix
        );
        // Fixed here, so that a change of the scheme (which would make a
        // retry across an upgrade look new to clients) is a decision:
        // base64url of the first 15 bytes of SHA-256("incident-4711").
        assert_eq!(first.id_prefix, "jDMCKTnUGlFOOwObLoES.");
    }

    #[test]
    fn storage_asks_with_the_hints_servers_look_for() {
        assert!(marks("j", Storage::Default, false).hints.is_empty());
        assert_eq!(
            marks("j", Storage::NoPermanentStore, false).hints,
            ["no-permanent-store"]
        );
        assert_eq!(
            marks("j", Storage::NoStore, false).hints,
            ["no-store", "no-permanent-store"]
        );
    }

    #[test]
    fn a_thread_reads_back_as_its_jobs_id() {
        for id in ["incident-4711", "  spaced  ", "é<&>'\"✓", &"x".repeat(256)] {
            let thread = marks(id, Storage::Default, false).thread;
            assert!(thread.starts_with("herald."), "{thread}");
            assert_eq!(job_of_thread(&thread).as_deref(), Some(id));
        }
        assert_eq!(
            marks("incident-4711", Storage::Default, false).thread,
            "herald.aW5jaWRlbnQtNDcxMQ"
        );
    }

    #[test]
    fn a_thread_herald_did_not_give_names_no_job() {
        let longest = marks(&"\u{10ffff}".repeat(256), Storage::Default, false).thread;
        assert!(job_of_thread(&longest).is_some());
        for thread in [
            "",
            "aW5jaWRlbnQtNDcxMQ",
            "herald.",
            "herald.not base64!",
            "herald./w",
            &format!("{longest}AAAA"),
        ] {
            assert_eq!(job_of_thread(thread), None, "{thread:?}");
        }
    }
}
