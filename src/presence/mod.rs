//! The presence book: who shares presence with Herald (a subscriber has
//! one of its JIDs on their roster), who is online, on which resources,
//! how available, and since when. Pure data, no I/O; the event loop feeds
//! it presence stanzas, subscriptions and the time they came at.

mod entry;
mod resources;
mod stamp;
mod subscriptions;

use std::collections::HashMap;
use std::hash::Hash;

use hashbrown::Equivalent;
use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::{BareJid, FullJid};

use crate::user_text::{UserKey, UserMap, UserText};
use entry::{OnlineUser, State, User};
use resources::Resources;
pub use stamp::{Clock, Stamp};

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

/// Since when a user has looked as they do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    /// Their first online resource came online.
    pub online: Stamp,
    /// What a `presence` request says of them (available or not, the
    /// readiest `<show/>`) last changed; `online` or later.
    pub show: Stamp,
}

/// One table of users, each once: a subscriber, an online user or both
/// (a million of them is the size Herald is built for, and a table per
/// kind held each JID twice, with each table's slack).
#[derive(Debug, Default)]
pub struct PresenceBook {
    users: UserMap<User>,
    /// Users with a resource online.
    online: usize,
    resources: usize,
    /// Herald's JIDs that users subscribed to, which entries name by
    /// index: Herald has a handful of JIDs and a million users.
    contacts: Vec<BareJid>,
    contact_indexes: HashMap<BareJid, u32>,
    /// (user, contact) pairs
    subscriptions: usize,
}

impl PresenceBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an available presence from `jid`, come `at` then.
    pub fn set_available(
        &mut self,
        jid: &FullJid,
        presence: ResourcePresence,
        at: Stamp,
    ) -> PresenceChange {
        // Looked up by the text within `jid`, so that a presence from a
        // user already known allocates no key.
        let key = UserText::of_full(jid);
        if !self.users.contains_key(&key) {
            self.users.insert(UserKey::from(&key), User::default());
        }
        let user = self.users.get_mut(&key).expect("inserted above if absent");
        let (online, came) = user.online_from(at);
        self.online += usize::from(came);
        let looked = online.looks();
        let previous = online.resources.set(jid.resource().as_str(), presence);
        if previous.is_none() {
            self.resources += 1;
        }
        online.changed_since(looked, at);
        PresenceChange {
            jid: jid.clone(),
            now: Some(presence.show),
            changed: previous.map(|p| p.show) != Some(presence.show),
        }
    }

    /// Records that one resource went offline, `at` then.
    pub fn set_unavailable(&mut self, jid: &FullJid, at: Stamp) -> PresenceChange {
        let bare = UserText::of_full(jid);
        let mut removed = false;
        if let Some(user) = self.users.get_mut(&bare) {
            if let State::Online(online) = &mut user.state {
                let looked = online.looks();
                if online.resources.remove(jid.resource().as_str()) {
                    online.changed_since(looked, at);
                    removed = true;
                }
                if online.resources.is_empty() {
                    user.state = State::Offline(None);
                    self.online -= 1;
                }
            }
            if !user.is_kept() {
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
        let Some(user) = self.users.get_mut(jid) else {
            return Vec::new();
        };
        let gone = match std::mem::replace(&mut user.state, State::Offline(None)) {
            State::Online(online) => online,
            offline => {
                user.state = offline;
                return Vec::new();
            }
        };
        if !user.is_kept() {
            self.users.remove(jid);
        }
        self.online -= 1;
        self.resources -= gone.resources.len();
        gone.resources
            .iter()
            .filter_map(|(name, _)| jid.with_resource_str(name).ok())
            .collect()
    }

    /// Forgets everyone's presence: after the XMPP stream was lost nothing
    /// we knew is still known to be true; probes rebuild the book. The
    /// subscriptions stay. Returns the resources that were online.
    pub fn clear(&mut self) -> Vec<FullJid> {
        self.resources = 0;
        self.online = 0;
        let mut gone = Vec::new();
        self.users.retain(|user, entry| {
            if let State::Online(online) = &entry.state {
                gone.extend(
                    (online.resources.iter())
                        .filter_map(|(name, _)| FullJid::new(&format!("{user}/{name}")).ok()),
                );
                entry.state = State::Offline(None);
            }
            entry.is_kept()
        });
        gone
    }

    /// `jid`'s entry, if they are online.
    fn online_user<U: Hash + Equivalent<UserKey>>(&self, jid: &U) -> Option<&OnlineUser> {
        self.users.get(jid)?.online()
    }

    pub fn reachability<U: Hash + Equivalent<UserKey>>(
        &self,
        jid: &U,
        policy: Policy,
    ) -> Reachability {
        self.online_user(jid)
            .map_or(Reachability::Offline, |user| reach(&user.resources, policy))
    }

    /// Whether a message may go now to the user whose JID `user` is the
    /// text of (a message needs no parse of the text); if not, why not.
    pub fn deliverable(&self, user: UserText<'_>, policy: Policy) -> Result<(), Reachability> {
        let online = self.online_user(&user).ok_or(Reachability::Offline)?;
        match reach(&online.resources, policy) {
            Reachability::Deliver => Ok(()),
            other => Err(other),
        }
    }

    /// Every user with an online resource, once each, in no order.
    pub fn users(&self) -> impl Iterator<Item = &UserKey> {
        (self.users.iter()).filter_map(|(key, user)| user.online().map(|_| key))
    }

    /// The presence of each online resource of `jid`.
    pub fn resources_of<U: Hash + Equivalent<UserKey>>(
        &self,
        jid: &U,
    ) -> impl Iterator<Item = ResourcePresence> + '_ {
        self.online_user(jid)
            .into_iter()
            .flat_map(|user| user.resources.presences())
    }

    /// The most ready `<show/>` among the online resources of `jid`.
    pub fn readiest_show<U: Hash + Equivalent<UserKey>>(&self, jid: &U) -> Option<Show> {
        readiest(self.resources_of(jid))
    }

    /// Since when `jid` has been online and looked as now, if online.
    pub fn since<U: Hash + Equivalent<UserKey>>(&self, jid: &U) -> Option<Since> {
        self.online_user(jid).map(|user| user.since)
    }

    pub fn online_users(&self) -> usize {
        self.online
    }

    pub fn online_resources(&self) -> usize {
        self.resources
    }
}

fn readiest(resources: impl Iterator<Item = ResourcePresence>) -> Option<Show> {
    resources
        .map(|resource| resource.show)
        .max_by_key(|show| show.readiness())
}

fn reach(resources: &Resources, policy: Policy) -> Reachability {
    // RFC 6121 8.5.2.1.1: the server delivers a message to a bare JID
    // only to resources of non-negative priority.
    let satisfies = |p: &ResourcePresence| {
        p.priority >= 0
            && match policy {
                Policy::Available => p.show.is_available(),
                Policy::Online => true,
            }
    };
    if resources.presences().any(|presence| satisfies(&presence)) {
        Reachability::Deliver
    } else if resources.is_empty() {
        Reachability::Offline
    } else {
        Reachability::Unavailable
    }
}

#[cfg(test)]
mod tests;
