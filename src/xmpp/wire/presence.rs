//! A plain presence (from, to, id and type, nothing else) written
//! directly: a new stream probes every subscriber, and each probe through
//! the generic serializer cost about 19,000 instructions (a million
//! subscribers: seconds of the loop's time before jobs are taken again).

use xmpp_parsers::presence::{Presence, Type};

use super::text::attribute;
use super::Unserializable;

/// Whether `presence` is one the direct path writes: no `<show/>`,
/// status, priority or payload.
pub(super) fn is_plain(presence: &Presence) -> bool {
    presence.show.is_none()
        && presence.statuses.is_empty()
        && presence.priority.0 == 0
        && presence.payloads.is_empty()
}

pub(super) fn write(presence: &Presence, out: &mut Vec<u8>) -> Result<(), Unserializable> {
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
