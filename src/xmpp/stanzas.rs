//! Builders for the stanzas the component itself sends (not broadcasts).

use std::collections::BTreeMap;

use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::ping::Ping;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

pub fn ping(from: &BareJid, to: &BareJid, id: String) -> Iq {
    Iq::from_get(id, Ping)
        .with_from(Jid::from(from.clone()))
        .with_to(Jid::from(to.clone()))
}

pub fn presence(type_: PresenceType, from: &BareJid, to: &BareJid) -> Presence {
    let mut presence = Presence::new(type_);
    presence.from = Some(Jid::from(from.clone()));
    presence.to = Some(Jid::from(to.clone()));
    presence
}

pub fn iq_result(request_to: Jid, request_from: Jid, id: String) -> Iq {
    Iq::empty_result(request_from, id).with_from(request_to)
}

pub fn disco_info(
    request_to: Jid,
    request_from: Jid,
    id: String,
    name: &str,
    features: &[&str],
) -> Iq {
    let info = DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("component", "generic", "en", name)],
        features: features.iter().map(|f| f.to_string()).collect(),
        extensions: Vec::new(),
    };
    Iq::from_result(id, Some(info))
        .with_from(request_to)
        .with_to(request_from)
}

pub fn iq_error(
    request_to: Jid,
    request_from: Jid,
    id: String,
    type_: ErrorType,
    condition: DefinedCondition,
) -> Iq {
    let error = StanzaError {
        type_,
        by: None,
        defined_condition: condition,
        texts: BTreeMap::new(),
        other: None,
    };
    Iq::from_error(id, error)
        .with_from(request_to)
        .with_to(request_from)
}
