//! A broadcast's message as the store keeps it, for a job whose window
//! outlives the process: its texts and marks, from which the same
//! template (and so the same bytes and ids) is made again after a restart.

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::message::MessageType;

use super::{Marks, MessageTemplate};

/// The XEP-0334 hints a message may carry (a record names them).
const HINTS: [&str; 4] = ["no-store", "no-permanent-store", "no-copy", "store"];

impl MessageTemplate {
    /// Its texts and marks, for [`MessageTemplate::from_record`].
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 128);
        put(&mut out, self.from.as_str().as_bytes());
        out.push(match self.kind {
            MessageType::Chat => 0,
            MessageType::Normal => 1,
            MessageType::Headline => 2,
            MessageType::Groupchat => 3,
            MessageType::Error => 4,
        });
        out.push(u8::from(self.subject.is_some()));
        put(
            &mut out,
            self.subject.as_deref().unwrap_or_default().as_bytes(),
        );
        put(&mut out, self.body.as_bytes());
        put(&mut out, self.marks.id_prefix.as_bytes());
        put(&mut out, self.marks.thread.as_bytes());
        out.push(self.marks.hints.len() as u8);
        for hint in &self.marks.hints {
            put(&mut out, hint.as_bytes());
        }
        out.push(u8::from(self.marks.receipt));
        out
    }

    /// The template a record describes; None for a record that is not one.
    pub fn from_record(mut record: &[u8]) -> Option<MessageTemplate> {
        let input = &mut record;
        let from = BareJid::new(text(input)?).ok()?;
        let kind = match byte(input)? {
            0 => MessageType::Chat,
            1 => MessageType::Normal,
            2 => MessageType::Headline,
            3 => MessageType::Groupchat,
            4 => MessageType::Error,
            _ => return None,
        };
        let has_subject = byte(input)? != 0;
        let subject = text(input)?.to_string();
        let body = text(input)?.to_string();
        let id_prefix = text(input)?.to_string();
        let thread = text(input)?.to_string();
        let hints = (0..byte(input)?)
            .map(|_| {
                let name = text(input)?;
                HINTS.iter().copied().find(|hint| *hint == name)
            })
            .collect::<Option<Vec<_>>>()?;
        let receipt = byte(input)? != 0;
        if !input.is_empty() {
            return None;
        }
        let marks = Marks {
            id_prefix,
            thread,
            hints,
            receipt,
        };
        let subject = has_subject.then_some(subject);
        MessageTemplate::new(from, kind, subject, body, marks).ok()
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn byte(input: &mut &[u8]) -> Option<u8> {
    let (&first, rest) = input.split_first()?;
    *input = rest;
    Some(first)
}

fn text<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
    let len = u32::from_le_bytes(input.get(..4)?.try_into().ok()?) as usize;
    let bytes = input.get(4..4 + len)?;
    *input = &input[4 + len..];
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::wire::{Addressee, Outgoing, StanzaEncoder};

    fn bytes_of(template: MessageTemplate) -> Vec<u8> {
        let to = Addressee::own("alice@example.com".into(), 7);
        let mut out = Vec::new();
        let message = Outgoing::Message {
            template: template.into(),
            to,
        };
        StanzaEncoder::default().encode(&message, &mut out).unwrap();
        out
    }

    #[test]
    fn a_template_made_again_from_its_record_writes_the_same_message() {
        let marks = Marks {
            id_prefix: "abc.".into(),
            thread: "herald.am9i".into(),
            hints: vec!["no-store", "no-permanent-store"],
            receipt: true,
        };
        let from = BareJid::new("alerts@broadcast.example.com").unwrap();
        let make = || {
            MessageTemplate::new(
                from.clone(),
                MessageType::Headline,
                Some("Flood <warning>".into()),
                "Leave now & go uphill".into(),
                marks.clone(),
            )
            .unwrap()
        };
        let record = make().to_record();
        let again = MessageTemplate::from_record(&record).expect("a record");
        assert_eq!(bytes_of(again), bytes_of(make()));
        assert!(MessageTemplate::from_record(&record[..record.len() - 1]).is_none());
    }
}
