//! Stanzas Herald writes often, written directly rather than through the
//! generic serializer (about 19,000 instructions a stanza): a plain
//! presence (from, to, id and type, nothing else), since a new stream
//! probes every subscriber (a million: seconds of the loop's time before
//! jobs are taken again); and a barrier ping, one per burst of jobs.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type};

use super::text::attribute;
use super::Unserializable;

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
    if let Some(from) = &presence.from {
        attribute(out, "from", from.as_str())?;
    }
    if let Some(to) = &presence.to {
        attribute(out, "to", to.as_str())?;
    }
    if let Some(id) = &presence.id {
        attribute(out, "id", id)?;
    }
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

/// Writes `iq` if it is a ping (a get with an empty `<ping/>`, as
/// [`crate::xmpp::stanzas`] makes them); false, with nothing written, if
/// it is another.
pub(super) fn write_ping(iq: &Iq, out: &mut Vec<u8>) -> Result<bool, Unserializable> {
    let Iq::Get {
        from,
        to,
        id,
        payload,
    } = iq
    else {
        return Ok(false);
    };
    if !is_empty_ping(payload) {
        return Ok(false);
    }
    out.extend_from_slice(b"<iq type='get'");
    if let Some(from) = from {
        attribute(out, "from", from.as_str())?;
    }
    if let Some(to) = to {
        attribute(out, "to", to.as_str())?;
    }
    attribute(out, "id", id)?;
    out.extend_from_slice(b"><ping xmlns='urn:xmpp:ping'/></iq>");
    Ok(true)
}

fn is_empty_ping(payload: &Element) -> bool {
    payload.is("ping", PING_NS) && payload.attrs().is_empty() && payload.nodes().next().is_none()
}
