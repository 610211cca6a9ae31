//! The fake server's reading side, which must cost next to nothing beside
//! Herald in the load test: a scanner that tracks only element depth, enough
//! to split a component stream into stanzas and read the few attributes the
//! server answers to, without building a DOM.

/// Kinds of top-level elements in a component stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Message,
    Presence,
    Iq,
    Handshake,
    Other,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event<'a> {
    StreamOpened,
    /// A complete top-level element; the bytes are given only for IQs and
    /// the handshake (the server does not copy messages).
    Stanza(Kind, &'a [u8]),
    StreamClosed,
}

/// A streaming XML scanner that tracks only element depth: enough to split
/// a component stream into stanzas. It relies on what XML writers emit
/// (text never holds a raw `<`, attribute values are quoted) and ignores
/// declarations, comments and processing instructions.
#[derive(Default)]
pub(super) struct Scanner {
    /// Bytes of a tag cut by the end of the last read.
    partial: Vec<u8>,
    depth: u32,
    kind: Option<Kind>,
    capture: Vec<u8>,
}

impl Scanner {
    pub(super) fn feed(&mut self, data: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if self.partial.is_empty() {
            let rest = self.scan(data, on_event);
            self.partial.extend_from_slice(&data[rest..]);
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(data);
            let rest = self.scan(&joined, on_event);
            joined.drain(..rest);
            self.partial = joined;
        }
    }

    /// Handles every complete tag in `data`; returns where the incomplete rest starts.
    fn scan(&mut self, data: &[u8], on_event: &mut impl FnMut(Event<'_>)) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            let Some(lt) = data[pos..].iter().position(|&b| b == b'<') else {
                self.text(&data[pos..]);
                return data.len();
            };
            self.text(&data[pos..pos + lt]);
            let start = pos + lt;
            let Some(len) = tag_len(&data[start..]) else {
                return start;
            };
            self.tag(&data[start..start + len], on_event);
            pos = start + len;
        }
        pos
    }

    fn text(&mut self, text: &[u8]) {
        if self.capturing() {
            self.capture.extend_from_slice(text);
        }
    }

    fn capturing(&self) -> bool {
        matches!(self.kind, Some(Kind::Iq | Kind::Handshake))
    }

    fn tag(&mut self, tag: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        match tag.get(1) {
            Some(b'?' | b'!') => {}
            Some(b'/') => {
                if self.capturing() {
                    self.capture.extend_from_slice(tag);
                }
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    0 => on_event(Event::StreamClosed),
                    1 => self.end_stanza(on_event),
                    _ => {}
                }
            }
            _ => {
                let self_closing = tag.len() >= 3 && tag[tag.len() - 2] == b'/';
                match self.depth {
                    0 => {
                        self.depth = 1;
                        on_event(Event::StreamOpened);
                    }
                    1 => {
                        let name_end = tag[1..]
                            .iter()
                            .position(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'>'))
                            .map_or(tag.len(), |i| i + 1);
                        self.kind = Some(match &tag[1..name_end] {
                            b"message" => Kind::Message,
                            b"presence" => Kind::Presence,
                            b"iq" => Kind::Iq,
                            b"handshake" => Kind::Handshake,
                            _ => Kind::Other,
                        });
                        self.capture.clear();
                        if self.capturing() {
                            self.capture.extend_from_slice(tag);
                        }
                        if self_closing {
                            self.end_stanza(on_event);
                        } else {
                            self.depth = 2;
                        }
                    }
                    _ => {
                        if self.capturing() {
                            self.capture.extend_from_slice(tag);
                        }
                        if !self_closing {
                            self.depth += 1;
                        }
                    }
                }
            }
        }
    }

    fn end_stanza(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        if let Some(kind) = self.kind.take() {
            on_event(Event::Stanza(kind, &self.capture));
        }
    }
}

/// Length of the tag starting at `data[0] == b'<'`, if it is complete.
fn tag_len(data: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in data.iter().enumerate().skip(1) {
        match (quote, b) {
            (None, b'>') => return Some(i + 1),
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            _ => {}
        }
    }
    None
}

/// The start tag of a captured element.
pub(super) fn start_tag(element: &[u8]) -> &[u8] {
    tag_len(element).map_or(element, |len| &element[..len])
}

/// The raw (still escaped) value of attribute `name` in a start tag.
pub(super) fn attribute<'a>(tag: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(tag).ok()?;
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        rest = after;
        if !matches!(before, Some(' ' | '\t' | '\n' | '\r')) {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let quote = value.chars().next()?;
        if quote != '\'' && quote != '"' {
            continue;
        }
        let end = value[1..].find(quote)?;
        return Some(&value[1..1 + end]);
    }
    None
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<String> {
        let mut scanner = Scanner::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk.as_bytes(), &mut |event| {
                seen.push(match event {
                    Event::StreamOpened => "open".to_string(),
                    Event::StreamClosed => "close".to_string(),
                    Event::Stanza(kind, bytes) => {
                        format!("{kind:?}:{}", String::from_utf8_lossy(bytes))
                    }
                })
            });
        }
        seen
    }

    #[test]
    fn splits_a_component_stream_into_stanzas_across_reads() {
        let stream = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             to='broadcast.localhost'><handshake>ab12</handshake>\
             <message to='u1@localhost' type='chat'><body>a &lt; b &gt; c</body></message>\
             <presence to='u1@localhost' type='probe'/>\
             <iq type='get' id='p&apos;1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>\
             </stream:stream>";
        let whole = events(&[stream]);
        assert_eq!(
            whole,
            [
                "open",
                "Handshake:<handshake>ab12</handshake>",
                "Message:",
                "Presence:",
                "Iq:<iq type='get' id='p&apos;1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
                "close",
            ]
        );
        // Cut at every byte: the scanner must give the same events.
        for cut in 1..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(events(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_quoted_greater_than_does_not_end_a_tag() {
        let seen = events(&["<s><message to='a>b'><body>x</body></message></s>"]);
        assert_eq!(seen, ["open", "Message:", "close"]);
    }

    #[test]
    fn reads_attributes_by_exact_name() {
        let tag = b"<iq xml:id='no' id='p1' to=\"localhost\" type='get'>";
        assert_eq!(attribute(tag, "id"), Some("p1"));
        assert_eq!(attribute(tag, "to"), Some("localhost"));
        assert_eq!(attribute(tag, "type"), Some("get"));
        assert_eq!(attribute(tag, "from"), None);
    }
}
