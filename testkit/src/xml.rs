//! Strict checks of the XML Herald writes: stanzas serialized by the very
//! encoder Herald's session uses (`herald::xmpp::wire`), and any stream
//! re-parsed by rxml, which enforces XML 1.0 and namespace well-formedness
//! (forbidden characters, references, nesting, prefixes).

use std::collections::BTreeMap;

use herald::xmpp::wire::{Outgoing, StanzaEncoder};
use rxml::error::EndOrError;
use rxml::{Event, Parse, Parser};

const STREAM_NS: &str = "http://etherx.jabber.org/streams";

/// One element of a parsed stream: name, attributes (namespace-less ones by
/// local name, others as `{ns}name`), child elements and its own text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub ns: String,
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }
}

/// An XML stream read as it arrives: the root (`<stream:stream>`) and each
/// complete top-level element (stanza). Any well-formedness error is fatal.
pub struct StreamReader {
    parser: Parser,
    /// Open elements, outermost first; `[0]` is the stream root.
    open: Vec<Node>,
    root: Option<Node>,
    closed: bool,
}

impl Default for StreamReader {
    fn default() -> Self {
        StreamReader {
            parser: Parser::new(),
            open: Vec::new(),
            root: None,
            closed: false,
        }
    }
}

impl StreamReader {
    /// The stream header, once read.
    pub fn root(&self) -> Option<&Node> {
        self.root.as_ref()
    }

    /// True once the root element has been closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Parses `data`, the next bytes of the stream; returns the top-level
    /// elements it completed, or why the stream is not well-formed.
    pub fn feed(&mut self, mut data: &[u8], at_eof: bool) -> Result<Vec<Node>, String> {
        let mut done = Vec::new();
        loop {
            match self.parser.parse(&mut data, at_eof) {
                Ok(Some(event)) => self.on_event(event, &mut done)?,
                Ok(None) => {
                    if !self.closed {
                        return Err("the stream ended before its root element was closed".into());
                    }
                    return Ok(done);
                }
                Err(EndOrError::NeedMoreData) => return Ok(done),
                Err(EndOrError::Error(e)) => return Err(format!("not well-formed: {e}")),
            }
        }
    }

    fn on_event(&mut self, event: Event, done: &mut Vec<Node>) -> Result<(), String> {
        match event {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(_, (ns, name), attrs) => {
                let attrs = attrs
                    .iter()
                    .map(|((ans, aname), value)| {
                        let key = if ans.is_none() {
                            aname.to_string()
                        } else {
                            format!("{{{}}}{aname}", ans.as_str())
                        };
                        (key, value.to_string())
                    })
                    .collect();
                let node = Node {
                    ns: ns.as_str().to_string(),
                    name: name.to_string(),
                    attrs,
                    ..Node::default()
                };
                if self.open.is_empty() {
                    if !node.is("stream", STREAM_NS) {
                        return Err(format!("root is {}:{}, not a stream", node.ns, node.name));
                    }
                    self.root = Some(node.clone());
                }
                self.open.push(node);
            }
            Event::EndElement(_) => {
                let node = self.open.pop().ok_or("end tag without element")?;
                match self.open.len() {
                    0 => self.closed = true,
                    1 => done.push(node),
                    _ => self.open.last_mut().unwrap().children.push(node),
                }
            }
            Event::Text(_, text) => {
                if self.open.len() > 1 {
                    self.open.last_mut().unwrap().text.push_str(&text);
                } else if !text.trim().is_empty() {
                    return Err(format!("text {text:?} between stanzas"));
                }
            }
        }
        Ok(())
    }
}

/// Parses a complete stream document strictly; returns its top-level elements.
pub fn parse_stream(document: &[u8]) -> Result<Vec<Node>, String> {
    let mut reader = StreamReader::default();
    reader.feed(document, true)
}

/// Writes `stanzas` the way Herald's session does (its own encoder, after
/// the stream header of a component stream and before the footer) and
/// returns every byte. A stanza the encoder refuses is an error.
pub fn serialize(stanzas: &[Outgoing]) -> Result<Vec<u8>, String> {
    let mut written = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
          xmlns:stream='http://etherx.jabber.org/streams' to='broadcast.localhost'>"
        .to_vec();
    let mut encoder = StanzaEncoder::default();
    for stanza in stanzas {
        encoder
            .encode(stanza, &mut written)
            .map_err(|e| format!("encoder refused {stanza:?}: {e}"))?;
    }
    written.extend_from_slice(b"</stream:stream>");
    Ok(written)
}
