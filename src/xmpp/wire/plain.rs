//! Stanzas Herald writes often, written directly rather than through the
//! generic serializer (about 19,000 instructions a stanza): a plain
//! presence (from, to, id and type, nothing else), since a new stream
//! probes every subscriber (a million: seconds of the loop's time before
//! jobs are taken again); and a barrier ping, one per burst of jobs.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type};

use super::text::{addresses, attribute};
use super::{jid_text, Unserializable};

/// XEP-0199's namespace.
const PING_NS: &str = "urn:xmpp:ping";

/// Whether `presence` is one the direct path writes: no `<show/>`,
/// status, priority or payload.
pub(super) fn is_plain_presence(presence: &Presence) -> bool {
    presence.show.is_none()
        && presence.statuses.is_empty()
        && presence.priority.0 == 0
        && presence.payloads.is_empty()
}

pub(super) fn write_presence(presence: &Presence, out: &mut Vec<u8>) -> Result<(), Unserializable> {
    out.extend_from_slice(b"<presence");
    let id = presence.id.as_deref();
    addresses(out, jid_text(&presence.from), jid_text(&presence.to), id)?;
    if let Some(kind) = type_attribute(&presence.type_) {
        attribute(out, "type", kind)?;
    }
    out.extend_from_slice(b"/>");
    Ok(())
}

fn type_attribute(kind: &Type) -> Option<&'static str> {
    Some(match kind {
        Type::None => return None,
        Type::Error => "error",
        Type::Probe => "probe",
        Type::Subscribe => "subscribe",
        Type::Subscribed => "subscribed",
        Type::Unavailable => "unavailable",
        Type::Unsubscribe => "unsubscribe",
        Type::Unsubscribed => "unsubscribed",
    })
}

/// Whether an iq get's payload is a ping as [`crate::xmpp::stanzas`]
/// makes them: an empty `<ping/>`.
pub(super) fn is_ping(payload: &Element) -> bool {
    payload.is("ping", PING_NS) && payload.attrs().is_empty() && payload.nodes().next().is_none()
}

/// Writes a ping get with these addresses.
pub(super) fn write_ping(
    from: &Option<Jid>,
    to: &Option<Jid>,
    id: &str,
    out: &mut Vec<u8>,
) -> Result<(), Unserializable> {
    out.extend_from_slice(b"<iq type='get'");
    addresses(out, jid_text(from), jid_text(to), Some(id))?;
    out.extend_from_slice(b"><ping xmlns='urn:xmpp:ping'/></iq>");
    Ok(())
}
