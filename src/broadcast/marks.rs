//! What ties a broadcast's messages to their job: the id of each message
//! (the same whenever the same job is sent again, so that a client or the
//! server can drop the copy at-least-once delivery allows). Derived from
//! the job's `id` alone, so an attempt after a crash or a redelivery marks
//! its messages as the first attempt did. Pure code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::xmpp::wire::Marks;

/// Bytes of the job id's SHA-256 in a message id: 120 bits, so that two
/// jobs' ids do not collide by chance, in 20 characters of base64url.
const ID_HASH_BYTES: usize = 15;

/// The marks of every message of the job with this `id`.
pub fn marks(job_id: &str) -> Marks {
    Marks {
        id_prefix: id_prefix(job_id),
    }
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
        let first = marks("incident-4711");
        assert_eq!(first, marks("incident-4711"));
        assert_ne!(first.id_prefix, marks("incident-4712").id_prefix);
        // Fixed here, so that a change of the scheme (which would make a
        // retry across an upgrade look new to clients) is a decision:
        // base64url of the first 15 bytes of SHA-256("incident-4711").
        assert_eq!(first.id_prefix, "jDMCKTnUGlFOOwObLoES.");
    }
}
