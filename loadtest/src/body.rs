//! The job body carries the job's sequence number, so that a receipt at a
//! client can be matched to the publish time of its job.

/// What every load-test body starts with; the sequence number follows.
const MARKER: &[u8] = b"herald-loadtest #";

/// The body of job `seq`: `herald-loadtest #<seq>`.
pub fn encode(seq: u64) -> String {
    format!("herald-loadtest #{seq}")
}

/// The sequence number in a body or in a whole serialized `<message>`
/// stanza: the digits after the first marker. `None` without a marker or
/// digits.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(bytes, MARKER)? + MARKER.len();
    let digits = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&bytes[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for seq in [0, 7, 9_999, u64::MAX] {
            assert_eq!(decode(encode(seq).as_bytes()), Some(seq));
        }
    }

    #[test]
    fn decodes_inside_a_stanza() {
        let stanza = b"<message from='herald@broadcast.localhost' to='u1@localhost' type='chat'>\
                       <body>herald-loadtest #42</body></message>";
        assert_eq!(decode(stanza), Some(42));
    }

    #[test]
    fn rejects_bodies_without_marker_or_digits() {
        assert_eq!(decode(b"<body>hello 42</body>"), None);
        assert_eq!(decode(b"<body>herald-loadtest #</body>"), None);
        assert_eq!(decode(b"herald-loadtest 42"), None);
    }
}
