//! The presence book: who is online, on which resources, and how available.
//! Pure data, no I/O; the event loop feeds it presence stanzas.

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::{BareJid, FullJid};

use crate::user_text::{UserMap, UserText};

/// The `<show/>` of an available resource; `Online` is an available
/// presence without `<show/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Show {
    Online,
    Chat,
    Away,
    Xa,
    Dnd,
}

impl Show {
    /// Ready to read a message now (RFC 6121: no `<show/>`, or `chat`).
    pub fn is_available(self) -> bool {
        matches!(self, Show::Online | Show::Chat)
    }

    /// How ready to read this is: `chat` most, then no `<show/>`, `away`,
    /// `xa`, `dnd`.
    fn readiness(self) -> u8 {
        match self {
            Show::Chat => 4,
            Show::Online => 3,
            Show::Away => 2,
            Show::Xa => 1,
            Show::Dnd => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Show::Online => "online",
            Show::Chat => "chat",
            Show::Away => "away",
            Show::Xa => "xa",
            Show::Dnd => "dnd",
        }
    }
}

impl From<Option<&xmpp_parsers::presence::Show>> for Show {
    fn from(show: Option<&xmpp_parsers::presence::Show>) -> Self {
        use xmpp_parsers::presence::Show as Wire;
        match show {
            None => Show::Online,
            Some(Wire::Chat) => Show::Chat,
            Some(Wire::Away) => Show::Away,
            Some(Wire::Xa) => Show::Xa,
            Some(Wire::Dnd) => Show::Dnd,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourcePresence {
    pub show: Show,
    pub priority: i8,
}

/// Which recipients a job may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Some resource is online with no `<show/>` or with `chat`.
    #[default]
    Available,
    /// Some resource is online, whatever its `<show/>`.
    Online,
}

/// Where one recipient stands with respect to a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    Deliver,
    /// Online, but no resource satisfies the policy (e.g. all away).
    Unavailable,
    /// No online resource.
    Offline,
}

/// What a presence stanza changed, for handlers and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub jid: FullJid,
    /// `None`: the resource went offline.
    pub now: Option<Show>,
    /// Whether the change is visible (a repeated identical presence is not).
    pub changed: bool,
}

/// One online resource of a user.
#[derive(Debug)]
struct Resource {
    name: Box<str>,
    presence: ResourcePresence,
}

#[derive(Debug, Default)]
pub struct PresenceBook {
    /// user -> their online resources. Nearly always one, so a vector
    /// sized to fit, searched by name: a hash map per user cost several
    /// hundred bytes, and a million online users is the size Herald is
    /// built for.
    users: UserMap<Vec<Resource>>,
    resources: usize,
}

impl PresenceBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an available presence from `jid`.
    pub fn set_available(&mut self, jid: &FullJid, presence: ResourcePresence) -> PresenceChange {
        let resources = self
            .users
            .entry(jid.to_bare())
            .or_insert_with(|| Vec::with_capacity(1));
        let name = jid.resource().as_str();
        let previous = match resources.iter_mut().find(|r| &*r.name == name) {
            Some(known) => Some(std::mem::replace(&mut known.presence, presence)),
            None => {
                resources.push(Resource {
                    name: name.into(),
                    presence,
                });
                self.resources += 1;
                None
            }
        };
        PresenceChange {
            jid: jid.clone(),
            now: Some(presence.show),
            changed: previous.map(|p| p.show) != Some(presence.show),
        }
    }

    /// Records that one resource went offline.
    pub fn set_unavailable(&mut self, jid: &FullJid) -> PresenceChange {
        let bare = jid.to_bare();
        let mut removed = false;
        if let Some(resources) = self.users.get_mut(&bare) {
            let name = jid.resource().as_str();
            if let Some(at) = resources.iter().position(|r| &*r.name == name) {
                resources.swap_remove(at);
                removed = true;
            }
            if resources.is_empty() {
                self.users.remove(&bare);
            }
        }
        if removed {
            self.resources -= 1;
        }
        PresenceChange {
            jid: jid.clone(),
            now: None,
            changed: removed,
        }
    }

    /// Forgets every resource of a user (unavailable to the bare JID,
    /// presence errors, unsubscription). Returns the resources removed.
    pub fn remove_user(&mut self, jid: &BareJid) -> Vec<FullJid> {
        let Some(resources) = self.users.remove(jid) else {
            return Vec::new();
        };
        self.resources -= resources.len();
        resources
            .into_iter()
            .filter_map(|resource| jid.with_resource_str(&resource.name).ok())
            .collect()
    }

    /// Forgets everything: after the XMPP stream was lost nothing we knew is
    /// still known to be true; probes rebuild the book. Returns the
    /// resources that were online.
    pub fn clear(&mut self) -> Vec<FullJid> {
        self.resources = 0;
        self.users
            .drain()
            .flat_map(|(jid, resources)| {
                resources
                    .into_iter()
                    .filter_map(move |resource| jid.with_resource_str(&resource.name).ok())
            })
            .collect()
    }

    pub fn reachability(&self, jid: &BareJid, policy: Policy) -> Reachability {
        self.users
            .get(jid)
            .map_or(Reachability::Offline, |resources| reach(resources, policy))
    }

    /// The book's JID of the user whose JID `user` is the text of, when a
    /// message may go to them now (a message needs no parse of the text);
    /// else why not.
    pub fn deliverable(
        &self,
        user: UserText<'_>,
        policy: Policy,
    ) -> Result<&BareJid, Reachability> {
        let (jid, resources) = self
            .users
            .get_key_value(&user)
            .ok_or(Reachability::Offline)?;
        match reach(resources, policy) {
            Reachability::Deliver => Ok(jid),
            other => Err(other),
        }
    }

    /// Every user with an online resource, once each, in no order.
    pub fn users(&self) -> impl Iterator<Item = &BareJid> {
        self.users.keys()
    }

    /// The presence of each online resource of `jid`.
    pub fn resources_of(&self, jid: &BareJid) -> impl Iterator<Item = ResourcePresence> + '_ {
        self.users
            .get(jid)
            .into_iter()
            .flatten()
            .map(|resource| resource.presence)
    }

    /// The most ready `<show/>` among the online resources of `jid`.
    pub fn readiest_show(&self, jid: &BareJid) -> Option<Show> {
        self.resources_of(jid)
            .map(|resource| resource.show)
            .max_by_key(|show| show.readiness())
    }

    pub fn online_users(&self) -> usize {
        self.users.len()
    }

    pub fn online_resources(&self) -> usize {
        self.resources
    }
}

fn reach(resources: &[Resource], policy: Policy) -> Reachability {
    // RFC 6121 8.5.2.1.1: the server delivers a message to a bare JID
    // only to resources of non-negative priority.
    let satisfies = |p: &ResourcePresence| {
        p.priority >= 0
            && match policy {
                Policy::Available => p.show.is_available(),
                Policy::Online => true,
            }
    };
    if resources
        .iter()
        .any(|resource| satisfies(&resource.presence))
    {
        Reachability::Deliver
    } else if resources.is_empty() {
        Reachability::Offline
    } else {
        Reachability::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> FullJid {
        FullJid::new(s).unwrap()
    }

    fn bare(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    fn with_show(show: Show) -> ResourcePresence {
        ResourcePresence { show, priority: 0 }
    }

    #[test]
    fn unknown_user_is_offline() {
        let book = PresenceBook::new();
        assert_eq!(
            book.reachability(&bare("a@localhost"), Policy::Online),
            Reachability::Offline
        );
    }

    #[test]
    fn away_user_is_unavailable_for_available_policy_but_online_for_online_policy() {
        let mut book = PresenceBook::new();
        book.set_available(&full("a@localhost/phone"), with_show(Show::Away));
        let a = bare("a@localhost");
        assert_eq!(
            book.reachability(&a, Policy::Available),
            Reachability::Unavailable
        );
        assert_eq!(book.reachability(&a, Policy::Online), Reachability::Deliver);
    }

    #[test]
    fn any_available_resource_makes_user_available() {
        let mut book = PresenceBook::new();
        book.set_available(&full("a@localhost/phone"), with_show(Show::Dnd));
        book.set_available(&full("a@localhost/desk"), with_show(Show::Chat));
        assert_eq!(
            book.reachability(&bare("a@localhost"), Policy::Available),
            Reachability::Deliver
        );
        assert_eq!(book.online_users(), 1);
        assert_eq!(book.online_resources(), 2);
    }

    #[test]
    fn last_resource_going_offline_makes_user_offline() {
        let mut book = PresenceBook::new();
        book.set_available(&full("a@localhost/phone"), with_show(Show::Online));
        book.set_available(&full("a@localhost/desk"), with_show(Show::Online));
        book.set_unavailable(&full("a@localhost/phone"));
        let a = bare("a@localhost");
        assert_eq!(
            book.reachability(&a, Policy::Available),
            Reachability::Deliver
        );
        let change = book.set_unavailable(&full("a@localhost/desk"));
        assert!(change.changed);
        assert_eq!(
            book.reachability(&a, Policy::Available),
            Reachability::Offline
        );
        assert_eq!(book.online_users(), 0);
        assert_eq!(book.online_resources(), 0);
    }

    #[test]
    fn negative_priority_resources_do_not_receive_bare_jid_messages() {
        let mut book = PresenceBook::new();
        let mut shy = with_show(Show::Online);
        shy.priority = -1;
        book.set_available(&full("a@localhost/bot"), shy);
        let a = bare("a@localhost");
        assert_eq!(
            book.reachability(&a, Policy::Online),
            Reachability::Unavailable
        );
        book.set_available(&full("a@localhost/desk"), with_show(Show::Online));
        assert_eq!(
            book.reachability(&a, Policy::Available),
            Reachability::Deliver
        );
    }

    #[test]
    fn show_change_on_same_resource_replaces_it() {
        let mut book = PresenceBook::new();
        let jid = full("a@localhost/phone");
        assert!(book.set_available(&jid, with_show(Show::Online)).changed);
        assert!(book.set_available(&jid, with_show(Show::Away)).changed);
        assert!(!book.set_available(&jid, with_show(Show::Away)).changed);
        assert_eq!(book.online_resources(), 1);
        assert_eq!(
            book.reachability(&bare("a@localhost"), Policy::Available),
            Reachability::Unavailable
        );
    }

    #[test]
    fn unavailable_for_unknown_resource_changes_nothing() {
        let mut book = PresenceBook::new();
        book.set_available(&full("a@localhost/phone"), with_show(Show::Online));
        assert!(!book.set_unavailable(&full("a@localhost/other")).changed);
        assert_eq!(book.online_resources(), 1);
    }

    #[test]
    fn remove_user_forgets_all_resources() {
        let mut book = PresenceBook::new();
        book.set_available(&full("a@localhost/1"), with_show(Show::Online));
        book.set_available(&full("a@localhost/2"), with_show(Show::Online));
        book.set_available(&full("b@localhost/1"), with_show(Show::Online));
        let mut removed = book.remove_user(&bare("a@localhost"));
        removed.sort_by_key(|j| j.to_string());
        assert_eq!(removed, vec![full("a@localhost/1"), full("a@localhost/2")]);
        assert_eq!(book.online_resources(), 1);
        assert_eq!(book.clear(), vec![full("b@localhost/1")]);
        assert_eq!(book.online_users(), 0);
        assert_eq!(book.online_resources(), 0);
    }
}
