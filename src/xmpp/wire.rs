//! Stanzas into the bytes Herald writes on its stream, after the stream
//! header (whose default namespace, `jabber:component:accept`, stanzas do
//! not repeat).
//!
//! The messages of a broadcast share everything but their recipient: a
//! [`MessageTemplate`] holds that part once per job, escaped (with the
//! marks that tie a message to its job: id prefix, thread, hints), so that
//! each message is one allocation-free copy with the recipient's JID and
//! the number that ends its id between (and the body is held once, not
//! once per recipient). A plain message (from, to, id, type, bodies and
//! subjects, nothing else) is written directly too, and so are a plain
//! presence (a probe, a subscription's answer) and a ping. Every other stanza
//! goes through xmpp-parsers' serializer and rxml's encoder (about 20,000
//! instructions for a message; see docs/performance.md), which is what a
//! stanza with payloads needs and what the direct paths are tested
//! against.

use std::fmt;
use std::sync::Arc;

use rxml::writer::{Encoder, Item, SimpleNamespaces, TrackNamespace};
use rxml::NcNameStr;
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Id, Lang, Message, MessageType, Thread};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_id::OriginId;
use xso::AsXml;

use text::{addresses, attribute, decimal, element, escape};

use crate::broadcast::job::{Recipient, Recipients};

const STREAM_NS: &str = "http://etherx.jabber.org/streams";
/// XEP-0334's namespace (message processing hints).
const HINTS_NS: &str = "urn:xmpp:hints";
/// XEP-0184's namespace (message delivery receipts).
pub const RECEIPTS_NS: &str = "urn:xmpp:receipts";

/// A stanza that cannot be written as XML (a character XML forbids, say);
/// it is dropped and counted rather than breaking the stream.
#[derive(Debug, thiserror::Error)]
#[error("stanza cannot be serialized: {0}")]
pub struct Unserializable(String);

/// A stanza to write: any stanza, or one message of a broadcast.
/// Queued by the thousand for a large broadcast: a message is 32 bytes,
/// and the rare other stanza is boxed so as not to make every one 400.
#[derive(Debug)]
pub enum Outgoing {
    Stanza(Box<Stanza>),
    Message {
        template: Arc<MessageTemplate>,
        to: Addressee,
    },
}

/// One recipient of a broadcast: their position among the job's
/// recipients, which ends their message's id, and their JID's text, held
/// where it already is: queueing a message allocates nothing (a clone of
/// the JID per message was half of what a big fan-out cost).
#[derive(Debug, Clone)]
pub struct Addressee {
    pub position: u32,
    user: UserTextHeld,
}

/// Where an addressee's JID text is.
#[derive(Debug, Clone)]
enum UserTextHeld {
    /// The job's recipient at the addressee's position.
    InJob(Arc<Recipients>),
    /// Its own (a window's late-comer, whom the window keeps as text).
    Own(Arc<str>),
}

impl Addressee {
    /// The recipient at `position` among `recipients`, a user (not an
    /// invalid recipient).
    pub fn in_job(recipients: &Arc<Recipients>, position: u32) -> Addressee {
        debug_assert!(matches!(
            recipients.get(position as usize),
            Some(Recipient::User(_))
        ));
        Addressee {
            position,
            user: UserTextHeld::InJob(Arc::clone(recipients)),
        }
    }

    /// `user`, a normalised bare JID's text, at `position` in their job.
    pub fn own(user: Arc<str>, position: u32) -> Addressee {
        Addressee {
            position,
            user: UserTextHeld::Own(user),
        }
    }

    /// Their normalised bare JID, as text.
    pub fn user(&self) -> &str {
        match &self.user {
            UserTextHeld::InJob(recipients) => match recipients.get(self.position as usize) {
                Some(Recipient::User(user)) => user,
                // `in_job` is given users only.
                _ => "",
            },
            UserTextHeld::Own(user) => user,
        }
    }
}

impl PartialEq for Addressee {
    fn eq(&self, other: &Addressee) -> bool {
        self.position == other.position && self.user() == other.user()
    }
}

impl Eq for Addressee {}

impl fmt::Display for Addressee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.user())
    }
}

/// What marks every message of one broadcast besides its texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// A message's id, in its `id` attribute and its XEP-0359
    /// `<origin-id/>`, is this followed by its addressee's position: the
    /// same whenever the same job is sent again, so that a client or the
    /// server can drop the second copy.
    pub id_prefix: String,
    /// The XEP-0201 thread of every message, which replies carry back.
    pub thread: String,
    /// XEP-0334 hints (element names) every message carries.
    pub hints: Vec<&'static str>,
    /// Every message asks for a XEP-0184 delivery receipt.
    pub receipt: bool,
}

/// What every message of one broadcast shares, escaped once: the bytes
/// before the recipient's JID (up to `to_at`), before the position that
/// ends the `id` attribute (`id_at`) and the origin-id (`origin_at`), and
/// after that.
#[derive(Debug)]
pub struct MessageTemplate {
    bytes: Vec<u8>,
    to_at: usize,
    id_at: usize,
    origin_at: usize,
    from: BareJid,
    kind: MessageType,
    subject: Option<String>,
    body: String,
    marks: Marks,
}

impl MessageTemplate {
    /// Refused when a text holds a character XML forbids.
    pub fn new(
        from: BareJid,
        kind: MessageType,
        subject: Option<String>,
        body: String,
        marks: Marks,
    ) -> Result<MessageTemplate, Unserializable> {
        let texts = from.as_str().len()
            + subject.as_ref().map_or(0, String::len)
            + body.len()
            + 2 * marks.id_prefix.len()
            + marks.thread.len();
        let mut bytes = Vec::with_capacity(texts + texts / 8 + 160);
        bytes.extend_from_slice(b"<message");
        attribute(&mut bytes, "from", from.as_str())?;
        bytes.extend_from_slice(b" to='");
        let to_at = bytes.len();
        bytes.extend_from_slice(b"' id='");
        escape(&mut bytes, &marks.id_prefix)?;
        let id_at = bytes.len();
        bytes.push(b'\'');
        type_and_end_of_head(&mut bytes, &kind)?;
        bytes.extend_from_slice(b"<origin-id xmlns='");
        bytes.extend_from_slice(xmpp_parsers::ns::SID.as_bytes());
        bytes.extend_from_slice(b"' id='");
        escape(&mut bytes, &marks.id_prefix)?;
        let origin_at = bytes.len();
        bytes.extend_from_slice(b"'/>");
        element(&mut bytes, "thread", &marks.thread)?;
        for hint in &marks.hints {
            bytes.push(b'<');
            bytes.extend_from_slice(hint.as_bytes());
            bytes.extend_from_slice(b" xmlns='");
            bytes.extend_from_slice(HINTS_NS.as_bytes());
            bytes.extend_from_slice(b"'/>");
        }
        if marks.receipt {
            bytes.extend_from_slice(b"<request xmlns='");
            bytes.extend_from_slice(RECEIPTS_NS.as_bytes());
            bytes.extend_from_slice(b"'/>");
        }
        texts_and_end(&mut bytes, subject.as_deref(), [body.as_str()])?;
        Ok(MessageTemplate {
            bytes,
            to_at,
            id_at,
            origin_at,
            from,
            kind,
            subject,
            body,
            marks,
        })
    }

    /// What every message's id starts with (its addressee's position
    /// follows): a receipt's id names the message it answers.
    pub fn id_prefix(&self) -> &str {
        &self.marks.id_prefix
    }

    /// The message to `to`, as a stanza (for tests and the simulation).
    pub fn to_message(&self, to: &Addressee) -> Message {
        let to_jid = BareJid::new(to.user()).ok().map(Jid::from);
        let mut message = Message::new(to_jid);
        message.from = Some(Jid::from(self.from.clone()));
        let id = format!("{}{}", self.marks.id_prefix, to.position);
        message.id = Some(Id(id.clone()));
        message.type_ = self.kind.clone();
        message.bodies.insert(Lang::default(), self.body.clone());
        if let Some(subject) = &self.subject {
            message.subjects.insert(Lang::default(), subject.clone());
        }
        message.payloads.push(Element::from(OriginId { id }));
        for hint in &self.marks.hints {
            message
                .payloads
                .push(Element::builder(*hint, HINTS_NS).build());
        }
        if self.marks.receipt {
            message
                .payloads
                .push(Element::builder("request", RECEIPTS_NS).build());
        }
        message.thread = Some(Thread {
            parent: None,
            id: self.marks.thread.clone(),
        });
        message
    }

    fn write(&self, to: &Addressee, out: &mut Vec<u8>) -> Result<(), Unserializable> {
        out.extend_from_slice(&self.bytes[..self.to_at]);
        escape(out, to.user())?;
        out.extend_from_slice(&self.bytes[self.to_at..self.id_at]);
        decimal(out, to.position);
        out.extend_from_slice(&self.bytes[self.id_at..self.origin_at]);
        decimal(out, to.position);
        out.extend_from_slice(&self.bytes[self.origin_at..]);
        Ok(())
    }
}

/// Encodes stanzas for one stream.
pub struct StanzaEncoder {
    encoder: Encoder<SimpleNamespaces>,
}

impl Default for StanzaEncoder {
    fn default() -> Self {
        let stream: &NcNameStr = "stream".try_into().expect("valid name");
        let mut encoder = Encoder::new();
        encoder
            .ns_tracker_mut()
            .declare_fixed(Some(stream), STREAM_NS.into());
        encoder
            .ns_tracker_mut()
            .declare_fixed(None, xmpp_parsers::ns::COMPONENT.into());
        // The encoder writes a stanza only inside an open element.
        let mut header = Vec::new();
        for item in [
            Item::ElementHeadStart(STREAM_NS.into(), stream),
            Item::ElementHeadEnd,
        ] {
            encoder.encode(item, &mut header).expect("stream header");
        }
        StanzaEncoder { encoder }
    }
}

impl StanzaEncoder {
    /// Appends `outgoing`'s bytes to `out`; on an error `out` is as it was.
    pub fn encode(&mut self, outgoing: &Outgoing, out: &mut Vec<u8>) -> Result<(), Unserializable> {
        let start = out.len();
        let result = match outgoing {
            Outgoing::Message { template, to } => template.write(to, out),
            Outgoing::Stanza(stanza) => match &**stanza {
                Stanza::Message(message) if is_plain(message) => write_message(message, out),
                Stanza::Presence(p) if plain::is_plain_presence(p) => plain::write_presence(p, out),
                Stanza::Iq(Iq::Get {
                    from,
                    to,
                    id,
                    payload,
                }) if plain::is_ping(payload) => plain::write_ping(from, to, id, out),
                stanza => self.encode_generic(stanza, out),
            },
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_generic(&mut self, stanza: &Stanza, out: &mut Vec<u8>) -> Result<(), Unserializable> {
        let error = |e: &dyn std::fmt::Display| Unserializable(e.to_string());
        for item in stanza.as_xml_iter().map_err(|e| error(&e))? {
            let item = item.map_err(|e| error(&e))?;
            self.encoder
                .encode(item.as_rxml_item(), out)
                .map_err(|e| error(&e))?;
        }
        Ok(())
    }
}

/// The text of an optional `from` or `to`.
fn jid_text(jid: &Option<Jid>) -> Option<&str> {
    jid.as_ref().map(Jid::as_str)
}

/// A message the fast path writes: no payloads, no thread, no languages.
fn is_plain(message: &Message) -> bool {
    let plain = |texts: &std::collections::BTreeMap<Lang, String>| {
        texts.keys().all(|lang| lang.0.is_empty())
    };
    message.payloads.is_empty()
        && message.thread.is_none()
        && plain(&message.bodies)
        && plain(&message.subjects)
}

fn write_message(message: &Message, out: &mut Vec<u8>) -> Result<(), Unserializable> {
    out.extend_from_slice(b"<message");
    let id = message.id.as_ref().map(|id| id.0.as_str());
    addresses(out, jid_text(&message.from), jid_text(&message.to), id)?;
    type_and_end_of_head(out, &message.type_)?;
    let subjects = message.subjects.values().map(String::as_str);
    let bodies = message.bodies.values().map(String::as_str);
    texts_and_end(out, subjects, bodies)
}

/// The rest of a message's start tag: its type and the `>`.
fn type_and_end_of_head(out: &mut Vec<u8>, kind: &MessageType) -> Result<(), Unserializable> {
    if let Some(kind) = type_attribute(kind) {
        attribute(out, "type", kind)?;
    }
    out.push(b'>');
    Ok(())
}

/// A message's subjects, bodies and end tag.
fn texts_and_end<'a>(
    out: &mut Vec<u8>,
    subjects: impl IntoIterator<Item = &'a str>,
    bodies: impl IntoIterator<Item = &'a str>,
) -> Result<(), Unserializable> {
    for subject in subjects {
        element(out, "subject", subject)?;
    }
    for body in bodies {
        element(out, "body", body)?;
    }
    out.extend_from_slice(b"</message>");
    Ok(())
}

/// The `type` attribute's value; none for `normal`, the default.
fn type_attribute(kind: &MessageType) -> Option<&'static str> {
    match kind {
        MessageType::Chat => Some("chat"),
        MessageType::Error => Some("error"),
        MessageType::Groupchat => Some("groupchat"),
        MessageType::Headline => Some("headline"),
        MessageType::Normal => None,
    }
}

mod plain;
mod record;
mod text;

#[cfg(test)]
mod tests;
