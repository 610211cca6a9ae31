//! The characters of a stanza: attribute values and character data
//! escaped (and refused where XML 1.0 forbids them), and the numbers that
//! end messages' ids, written straight into the stream's bytes.

use super::Unserializable;

pub(super) fn attribute(out: &mut Vec<u8>, name: &str, value: &str) -> Result<(), Unserializable> {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape(out, value)?;
    out.push(b'\'');
    Ok(())
}

/// A stanza's addressing attributes, those it has.
pub(super) fn addresses(
    out: &mut Vec<u8>,
    from: Option<&str>,
    to: Option<&str>,
    id: Option<&str>,
) -> Result<(), Unserializable> {
    for (name, value) in [("from", from), ("to", to), ("id", id)] {
        if let Some(value) = value {
            attribute(out, name, value)?;
        }
    }
    Ok(())
}

pub(super) fn element(out: &mut Vec<u8>, name: &str, text: &str) -> Result<(), Unserializable> {
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    escape(out, text)?;
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    Ok(())
}

/// The bytes [`escape`] has to look at: markup, controls, and the first
/// byte of U+FFFE and U+FFFF. Looked up rather than matched, so that the
/// scan over the clean runs between them (nearly every byte of a JID or a
/// body) is a load and a test per byte.
const NOTABLE: [bool; 256] = {
    let mut notable = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        notable[byte] = true;
        byte += 1;
    }
    let mut markup = 0;
    while markup < 5 {
        notable[b"&<>'\""[markup] as usize] = true;
        markup += 1;
    }
    notable[0xef] = true;
    notable
};

/// Appends `text` escaped for an attribute value in single quotes or for
/// character data (one escaping serves both); refuses what XML 1.0 forbids.
pub(super) fn escape(out: &mut Vec<u8>, text: &str) -> Result<(), Unserializable> {
    let bytes = text.as_bytes();
    let (mut clean, mut from) = (0, 0);
    while let Some(skipped) = bytes[from..].iter().position(|&b| NOTABLE[usize::from(b)]) {
        let at = from + skipped;
        from = at + 1;
        let entity: &[u8] = match bytes[at] {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\'' => b"&apos;",
            b'"' => b"&quot;",
            // Tabs and line ends are kept as character references: in an
            // attribute value a parser would turn them into spaces.
            b'\t' => b"&#9;",
            b'\n' => b"&#10;",
            b'\r' => b"&#13;",
            0x00..=0x1f => return Err(forbidden(text)),
            // U+FFFE and U+FFFF (EF BF BE, EF BF BF) are not XML characters.
            0xef if matches!(bytes.get(at + 1..at + 3), Some([0xbf, 0xbe | 0xbf])) => {
                return Err(forbidden(text))
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean..at]);
        out.extend_from_slice(entity);
        clean = from;
    }
    out.extend_from_slice(&bytes[clean..]);
    Ok(())
}

fn forbidden(text: &str) -> Unserializable {
    Unserializable(format!(
        "a character XML forbids in {:?}",
        text.chars().take(40).collect::<String>()
    ))
}

/// Appends `n` in decimal, without the formatting machinery (this is per
/// message).
pub(super) fn decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}
