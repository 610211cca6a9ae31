//! A depth limit on the XML the server sends, applied to the bytes before
//! tokio-xmpp parses them.
//!
//! tokio-xmpp builds a stanza's payloads with a builder that recurses once
//! per open element for every event, so a stanza nested thousands of levels
//! deep (which any user can send through the server, within its stanza size
//! limit) costs quadratic time and overflows the stack. [`Pruned`] removes
//! every element that opens deeper than the limit, with all its content,
//! from the byte stream; what remains is still well-formed, and no stanza
//! Herald cares about is nearly that deep.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Open elements allowed, counting the stream element: a stanza is at
/// depth 2, its payloads at 3, so this leaves payloads 60 levels.
pub const MAX_DEPTH: usize = 64;

/// Where the lexer is in the XML syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    /// After `<`: a start tag, an end tag or markup follows.
    Lt,
    /// In a start tag; `slash`: the last byte outside quotes was `/`.
    StartTag {
        quote: Option<u8>,
        slash: bool,
    },
    EndTag,
    /// `<?...?>`; `question`: the last byte was `?`.
    Pi {
        question: bool,
    },
    /// Right after `<!`.
    Bang,
    /// `<![CDATA[...]]>` or `<!--...-->`: ends at `>` after two `end`s.
    Section {
        end: u8,
        run: u8,
    },
    /// Any other `<!...>`.
    Declaration,
}

/// The byte-level filter: counts open elements and drops those that open
/// deeper than the limit. Tracks just enough syntax (tags, quoted attribute
/// values, CDATA, comments) to count correctly; well-formedness is left to
/// the parser behind it.
#[derive(Debug)]
pub struct Pruner {
    max_depth: usize,
    depth: usize,
    /// Depth of the element being dropped, while one is.
    dropping: Option<usize>,
    state: State,
}

impl Pruner {
    pub fn new(max_depth: usize) -> Pruner {
        Pruner {
            max_depth,
            depth: 0,
            dropping: None,
            state: State::Text,
        }
    }

    /// Appends to `out` what of `input` is kept.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            if self.state == State::Lt {
                self.after_lt(byte, out);
                continue;
            }
            let keep = self.dropping.is_none();
            self.state = match self.state {
                State::Text if byte == b'<' => State::Lt,
                State::Text => State::Text,
                State::StartTag {
                    quote: Some(quote), ..
                } => State::StartTag {
                    quote: (byte != quote).then_some(quote),
                    slash: false,
                },
                State::StartTag { slash, .. } => match byte {
                    b'\'' | b'"' => State::StartTag {
                        quote: Some(byte),
                        slash: false,
                    },
                    b'>' => {
                        if slash {
                            self.close();
                        }
                        State::Text
                    }
                    _ => State::StartTag {
                        quote: None,
                        slash: byte == b'/',
                    },
                },
                State::EndTag if byte == b'>' => {
                    self.close();
                    State::Text
                }
                State::EndTag => State::EndTag,
                State::Pi { question } if question && byte == b'>' => State::Text,
                State::Pi { .. } => State::Pi {
                    question: byte == b'?',
                },
                State::Bang => match byte {
                    b'[' => State::Section { end: b']', run: 0 },
                    b'-' => State::Section { end: b'-', run: 0 },
                    b'>' => State::Text,
                    _ => State::Declaration,
                },
                State::Section { run, .. } if run >= 2 && byte == b'>' => State::Text,
                State::Section { end, run } => State::Section {
                    end,
                    run: if byte == end {
                        run.saturating_add(1)
                    } else {
                        0
                    },
                },
                State::Declaration if byte == b'>' => State::Text,
                State::Declaration => State::Declaration,
                State::Lt => unreachable!("handled above"),
            };
            // `<` is written once the next byte tells what it opens.
            if keep && self.state != State::Lt {
                out.push(byte);
            }
        }
    }

    fn after_lt(&mut self, byte: u8, out: &mut Vec<u8>) {
        self.state = match byte {
            b'/' => State::EndTag,
            b'?' => State::Pi { question: false },
            b'!' => State::Bang,
            _ => {
                self.depth += 1;
                if self.dropping.is_none() && self.depth > self.max_depth {
                    self.dropping = Some(self.depth);
                    tracing::debug!(
                        max_depth = self.max_depth,
                        "element nested too deep dropped from a stanza"
                    );
                }
                State::StartTag {
                    quote: None,
                    slash: false,
                }
            }
        };
        if self.dropping.is_none() {
            out.extend_from_slice(&[b'<', byte]);
        }
    }

    /// An element ended (its end tag or `/>` has been read).
    fn close(&mut self) {
        if self.dropping == Some(self.depth) {
            self.dropping = None;
        }
        self.depth = self.depth.saturating_sub(1);
    }
}

/// A connection whose incoming bytes pass through a [`Pruner`]; writes go
/// straight through.
#[derive(Debug)]
pub struct Pruned<Io> {
    inner: Io,
    pruner: Pruner,
    raw: Box<[u8]>,
    kept: Vec<u8>,
    /// How much of `kept` has been read.
    taken: usize,
}

impl<Io> Pruned<Io> {
    pub fn new(inner: Io, max_depth: usize) -> Pruned<Io> {
        Pruned {
            inner,
            pruner: Pruner::new(max_depth),
            raw: vec![0; 16 * 1024].into_boxed_slice(),
            kept: Vec::new(),
            taken: 0,
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Pruned<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.kept.len() {
                let n = buf.remaining().min(this.kept.len() - this.taken);
                buf.put_slice(&this.kept[this.taken..this.taken + n]);
                this.taken += n;
                return Poll::Ready(Ok(()));
            }
            let mut raw = ReadBuf::new(&mut this.raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.kept.clear();
            this.taken = 0;
            this.pruner.feed(raw.filled(), &mut this.kept);
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Pruned<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prune(max_depth: usize, input: &str) -> String {
        let mut out = Vec::new();
        Pruner::new(max_depth).feed(input.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    const STREAM: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='a>b'>";

    #[test]
    fn shallow_streams_pass_unchanged() {
        let stream = format!(
            "{STREAM}<message to='a@b' x=\"/>\" y='</x>'><body>a &lt; b &amp; c &gt; d</body>\
             <x xmlns='u'><y/><z a='1'/></x></message>  <presence/>\
             <message><body><![CDATA[<a><b></b></a> ]] ]]]></body></message></stream:stream>"
        );
        assert_eq!(prune(4, &stream), stream);
    }

    #[test]
    fn elements_deeper_than_the_limit_are_dropped_with_their_content() {
        let input =
            format!("{STREAM}<message><a><b><c>text<d/></c>tail</b></a><body>x</body></message>");
        let expected = format!("{STREAM}<message><a>{}</a><body>x</body></message>", "");
        assert_eq!(prune(3, &input), expected);
        let expected = format!("{STREAM}<message><a><b>tail</b></a><body>x</body></message>");
        assert_eq!(prune(4, &input), expected);
    }

    #[test]
    fn self_closing_and_quoted_edge_cases_count_right() {
        // `/>` inside a quoted value is not an end, `/ >` is not self-closing
        // syntax; a self-closing element too deep is dropped whole.
        let input = format!("{STREAM}<m a='/>' b=\"x/\"><deep c='>'/><deep></deep></m><n/>");
        assert_eq!(
            prune(2, &input),
            format!("{STREAM}<m a='/>' b=\"x/\"></m><n/>")
        );
    }

    #[test]
    fn ten_thousand_levels_become_the_limit() {
        let depth = 10_000;
        let input = format!(
            "{STREAM}<message><x xmlns='urn:deep'>{}{}</message><presence/>",
            "<x>".repeat(depth - 1),
            "</x>".repeat(depth)
        );
        let out = prune(MAX_DEPTH, &input);
        let kept = MAX_DEPTH - 2;
        let expected = format!(
            "{STREAM}<message><x xmlns='urn:deep'>{}{}</message><presence/>",
            "<x>".repeat(kept - 1),
            "</x>".repeat(kept)
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn comments_and_processing_instructions_pass() {
        let input = format!("{STREAM}<m><!-- <a> -- > --><?pi <b> ?></m>");
        assert_eq!(prune(2, &input), input);
    }

    proptest! {
        /// Splitting the input anywhere gives the same output as one piece.
        #[test]
        fn chunking_does_not_matter(
            depth in 1usize..12,
            splits in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let input = format!(
                "{STREAM}<m a='>' b=\"/>\">{}<![CDATA[]]]>]]><e/>{}</m><n/>",
                "<x y='1'>t".repeat(depth),
                "</x>".repeat(depth)
            );
            let whole = prune(6, &input);
            let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(input.len())).collect();
            cuts.sort();
            let mut pruner = Pruner::new(6);
            let mut out = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([input.len()]) {
                pruner.feed(&input.as_bytes()[from..cut], &mut out);
                from = cut;
            }
            prop_assert_eq!(String::from_utf8(out).unwrap(), whole);
        }
    }
}
