//! Who shares presence with Herald: each user with one of Herald's JIDs
//! (a contact) on their roster, indexed by user so that a job's recipients
//! can be told apart from users Herald has never heard of, and when Herald
//! last saw each go offline. Pure data.

use std::collections::HashMap;

use hashbrown::hash_map::Entry;

use xmpp_parsers::jid::BareJid;

use crate::presence::Stamp;
use crate::user_text::{UserKey, UserMap, UserText};

use crate::store::Subscription;

/// One user who shares presence with Herald.
#[derive(Debug)]
struct Subscriber {
    contacts: Contacts,
    /// When Herald last saw them go offline, while they are. Kept here so
    /// that it lasts as long as the subscription, at no cost in entries:
    /// the contacts' 16 bytes leave room for it.
    offline_since: Option<Stamp>,
}

/// The contacts (Herald's JIDs) a user subscribed to, as indexes into
/// [`Subscribers::contacts`]: Herald has a handful of JIDs and a million
/// users, so each user holds a few small numbers, not a set of strings.
/// Nearly always one, kept inline: a boxed slice of one index took a heap
/// block (32 bytes with glibc) per subscriber.
#[derive(Debug)]
enum Contacts {
    One(u32),
    /// Two or more.
    Many(Box<[u32]>),
}

impl Contacts {
    fn as_slice(&self) -> &[u32] {
        match self {
            Contacts::One(contact) => std::slice::from_ref(contact),
            Contacts::Many(contacts) => contacts,
        }
    }

    /// These and `contact`.
    fn with(&self, contact: u32) -> Contacts {
        let mut contacts = Vec::with_capacity(self.as_slice().len() + 1);
        contacts.extend_from_slice(self.as_slice());
        contacts.push(contact);
        Contacts::Many(contacts.into_boxed_slice())
    }

    /// These without the one at `at`; None if none is left.
    fn without(&self, at: usize) -> Option<Contacts> {
        let mut contacts = self.as_slice().to_vec();
        contacts.remove(at);
        match *contacts {
            [] => None,
            [contact] => Some(Contacts::One(contact)),
            _ => Some(Contacts::Many(contacts.into_boxed_slice())),
        }
    }
}

#[derive(Debug, Default)]
pub struct Subscribers {
    by_user: UserMap<Subscriber>,
    contacts: Vec<BareJid>,
    contact_indexes: HashMap<BareJid, u32>,
    /// (user, contact) pairs
    len: usize,
}

impl Subscribers {
    pub fn new(subscriptions: Vec<Subscription>) -> Self {
        let mut subscribers = Subscribers::default();
        // Grown once rather than a doubling at a time: a million
        // subscribers are loaded at every start.
        subscribers.by_user.reserve(subscriptions.len());
        for subscription in subscriptions {
            subscribers.insert(subscription);
        }
        subscribers
    }

    /// Adds a subscription; false if it was known.
    pub fn insert(&mut self, subscription: Subscription) -> bool {
        let contact = self.contact_index(subscription.contact);
        match self.by_user.entry(UserKey::from(&subscription.user)) {
            Entry::Occupied(mut known) => {
                let subscriber = known.get_mut();
                if subscriber.contacts.as_slice().contains(&contact) {
                    return false;
                }
                subscriber.contacts = subscriber.contacts.with(contact);
            }
            Entry::Vacant(new) => {
                new.insert(Subscriber {
                    contacts: Contacts::One(contact),
                    offline_since: None,
                });
            }
        }
        self.len += 1;
        true
    }

    /// Removes a subscription; false if it was not known.
    pub fn remove(&mut self, subscription: &Subscription) -> bool {
        let Some(&contact) = self.contact_indexes.get(&subscription.contact) else {
            return false;
        };
        let Some(subscriber) = self.by_user.get_mut(&subscription.user) else {
            return false;
        };
        let Some(at) = subscriber
            .contacts
            .as_slice()
            .iter()
            .position(|&c| c == contact)
        else {
            return false;
        };
        match subscriber.contacts.without(at) {
            Some(left) => subscriber.contacts = left,
            None => {
                self.by_user.remove(&subscription.user);
            }
        }
        self.len -= 1;
        true
    }

    /// Whether `user` has any of Herald's JIDs on their roster.
    pub fn contains_user(&self, user: UserText<'_>) -> bool {
        self.by_user.contains_key(&user)
    }

    /// Notes whether `user` is offline, and since when: `None` once they
    /// are online again. Nothing is kept of a user who is no subscriber.
    pub fn set_offline_since(&mut self, user: &BareJid, since: Option<Stamp>) {
        if let Some(subscriber) = self.by_user.get_mut(user) {
            subscriber.offline_since = since;
        }
    }

    /// When Herald saw `user` go offline, if it did since it started and
    /// has not seen them online since.
    pub fn offline_since(&self, user: &BareJid) -> Option<Stamp> {
        self.by_user.get(user)?.offline_since
    }

    /// Subscriptions, counted as (user, contact) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every user with one of Herald's JIDs on their roster, once each.
    pub fn users(&self) -> impl Iterator<Item = &UserKey> {
        self.by_user.keys()
    }

    /// Every (user, contact) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&UserKey, &BareJid)> {
        let contacts = &self.contacts;
        self.by_user.iter().flat_map(move |(user, subscriber)| {
            subscriber
                .contacts
                .as_slice()
                .iter()
                .map(move |&contact| (user, &contacts[contact as usize]))
        })
    }

    /// A contact's index, kept for good once seen (Herald's JIDs are few).
    fn contact_index(&mut self, contact: BareJid) -> u32 {
        if let Some(&index) = self.contact_indexes.get(&contact) {
            return index;
        }
        let index = u32::try_from(self.contacts.len()).expect("fewer than 2^32 contact JIDs");
        self.contacts.push(contact.clone());
        self.contact_indexes.insert(contact, index);
        index
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::presence::Clock;

    fn sub(user: &str, contact: &str) -> Subscription {
        Subscription {
            user: BareJid::new(user).unwrap(),
            contact: BareJid::new(contact).unwrap(),
        }
    }

    #[test]
    fn a_user_is_known_while_any_of_their_subscriptions_is() {
        let mut subscribers = Subscribers::new(vec![sub("a@l", "herald@b.l")]);
        let alice = BareJid::new("a@l").unwrap();
        assert!(subscribers.contains_user(UserText(alice.as_str())));
        assert!(subscribers.insert(sub("a@l", "alerts@b.l")));
        assert!(!subscribers.insert(sub("a@l", "alerts@b.l")), "known");
        assert_eq!(subscribers.len(), 2);
        assert!(subscribers.remove(&sub("a@l", "herald@b.l")));
        assert!(subscribers.contains_user(UserText(alice.as_str())));
        assert!(subscribers.remove(&sub("a@l", "alerts@b.l")));
        assert!(!subscribers.remove(&sub("a@l", "alerts@b.l")), "gone");
        assert!(!subscribers.contains_user(UserText(alice.as_str())));
        assert_eq!(subscribers.len(), 0);
        assert_eq!(subscribers.iter().count(), 0);
    }

    #[test]
    fn iterates_every_pair() {
        let subscribers = Subscribers::new(vec![
            sub("a@l", "herald@b.l"),
            sub("a@l", "alerts@b.l"),
            sub("c@l", "herald@b.l"),
        ]);
        let mut pairs: Vec<String> = subscribers
            .iter()
            .map(|(user, contact)| format!("{user} {contact}"))
            .collect();
        pairs.sort();
        assert_eq!(
            pairs,
            ["a@l alerts@b.l", "a@l herald@b.l", "c@l herald@b.l"]
        );
    }

    #[test]
    fn offline_since_is_kept_only_while_the_user_subscribes() {
        let mut subscribers = Subscribers::new(vec![sub("a@l", "herald@b.l")]);
        let alice = BareJid::new("a@l").unwrap();
        let stranger = BareJid::new("s@l").unwrap();
        let origin = Instant::now();
        let at = Clock::new(origin).stamp(origin + Duration::from_millis(5));
        subscribers.set_offline_since(&alice, Some(at));
        subscribers.set_offline_since(&stranger, Some(at));
        assert_eq!(subscribers.offline_since(&alice), Some(at));
        assert_eq!(subscribers.offline_since(&stranger), None, "not kept");
        subscribers.set_offline_since(&alice, None);
        assert_eq!(subscribers.offline_since(&alice), None, "online again");
        subscribers.set_offline_since(&alice, Some(at));
        assert!(subscribers.remove(&sub("a@l", "herald@b.l")));
        assert!(subscribers.insert(sub("a@l", "herald@b.l")));
        assert_eq!(
            subscribers.offline_since(&alice),
            None,
            "forgotten with her"
        );
    }

    #[test]
    fn a_subscriber_costs_what_a_vector_of_contacts_did() {
        // The contacts (16 bytes: a boxed slice, or one index in its place)
        // and when they went offline (8) take the 24 bytes a vector of
        // contacts took alone.
        assert_eq!(std::mem::size_of::<Subscriber>(), 24);
    }
}
