//! The presence book: who is online, on which resources, how available,
//! and since when. Pure data, no I/O; the event loop feeds it presence
//! stanzas and the time they came at.

mod resources;
mod stamp;

use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::{BareJid, FullJid};

use resources::Resources;
pub use stamp::{Clock, Stamp};

use std::hash::Hash;

use hashbrown::Equivalent;

use crate::user_text::{UserKey, UserMap, UserText};

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

/// A user with a resource online.
#[derive(Debug)]
struct OnlineUser {
    /// Nearly always one, so packed into one allocation and searched by
    /// name: a hash map per user cost several hundred bytes, a vector of
    /// boxed names a heap block more per resource, and a million online
    /// users is the size Herald is built for.
    resources: Resources,
    since: Since,
}

impl OnlineUser {
    fn new(at: Stamp) -> Self {
        OnlineUser {
            resources: Resources::default(),
            since: Since {
                online: at,
                show: at,
            },
        }
    }

    /// What a `presence` request says of the user: available, and the
    /// readiest `<show/>`.
    fn looks(&self) -> (Reachability, Option<Show>) {
        (
            reach(&self.resources, Policy::Available),
            readiest(self.resources.presences()),
        )
    }

    /// Notes `at` as the start of how the user looks now if that differs
    /// from how they looked before the change (`looked`).
    fn changed_since(&mut self, looked: (Reachability, Option<Show>), at: Stamp) {
        if self.looks() != looked {
            self.since.show = at;
        }
    }
}

#[derive(Debug, Default)]
pub struct PresenceBook {
    users: UserMap<OnlineUser>,
    resources: usize,
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
        // user already online allocates no key.
        let key = UserText::of_full(jid);
        if !self.users.contains_key(&key) {
            self.users.insert(UserKey::from(&key), OnlineUser::new(at));
        }
        let user = self.users.get_mut(&key).expect("inserted above if absent");
        let looked = user.looks();
        let previous = user.resources.set(jid.resource().as_str(), presence);
        if previous.is_none() {
            self.resources += 1;
        }
        user.changed_since(looked, at);
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
            let looked = user.looks();
            if user.resources.remove(jid.resource().as_str()) {
                user.changed_since(looked, at);
                removed = true;
            }
            if user.resources.is_empty() {
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
        let Some(user) = self.users.remove(jid) else {
            return Vec::new();
        };
        self.resources -= user.resources.len();
        user.resources
            .iter()
            .filter_map(|(name, _)| jid.with_resource_str(name).ok())
            .collect()
    }

    /// Forgets everything: after the XMPP stream was lost nothing we knew is
    /// still known to be true; probes rebuild the book. Returns the
    /// resources that were online.
    pub fn clear(&mut self) -> Vec<FullJid> {
        self.resources = 0;
        self.users
            .drain()
            .flat_map(|(user, online)| {
                online
                    .resources
                    .iter()
                    .filter_map(|(name, _)| FullJid::new(&format!("{user}/{name}")).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn reachability<U: Hash + Equivalent<UserKey>>(
        &self,
        jid: &U,
        policy: Policy,
    ) -> Reachability {
        self.users
            .get(jid)
            .map_or(Reachability::Offline, |user| reach(&user.resources, policy))
    }

    /// Whether a message may go now to the user whose JID `user` is the
    /// text of (a message needs no parse of the text); if not, why not.
    pub fn deliverable(&self, user: UserText<'_>, policy: Policy) -> Result<(), Reachability> {
        let online = self.users.get(&user).ok_or(Reachability::Offline)?;
        match reach(&online.resources, policy) {
            Reachability::Deliver => Ok(()),
            other => Err(other),
        }
    }

    /// Every user with an online resource, once each, in no order.
    pub fn users(&self) -> impl Iterator<Item = &UserKey> {
        self.users.keys()
    }

    /// The presence of each online resource of `jid`.
    pub fn resources_of<U: Hash + Equivalent<UserKey>>(
        &self,
        jid: &U,
    ) -> impl Iterator<Item = ResourcePresence> + '_ {
        self.users
            .get(jid)
            .into_iter()
            .flat_map(|user| user.resources.presences())
    }

    /// The most ready `<show/>` among the online resources of `jid`.
    pub fn readiest_show<U: Hash + Equivalent<UserKey>>(&self, jid: &U) -> Option<Show> {
        readiest(self.resources_of(jid))
    }

    /// Since when `jid` has been online and looked as now, if online.
    pub fn since<U: Hash + Equivalent<UserKey>>(&self, jid: &U) -> Option<Since> {
        self.users.get(jid).map(|user| user.since)
    }

    pub fn online_users(&self) -> usize {
        self.users.len()
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
