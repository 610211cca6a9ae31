//! Who shares presence with Herald: each user with one of Herald's JIDs
//! (a contact) on their roster, indexed by user so that a job's recipients
//! can be told apart from users Herald has never heard of. Pure data.

use std::collections::HashMap;

use xmpp_parsers::jid::BareJid;

use crate::user_text::{UserMap, UserText};

use crate::store::Subscription;

#[derive(Debug, Default)]
pub struct Subscribers {
    /// user -> the contacts (Herald's JIDs) they subscribed to, as indexes
    /// into `contacts`: Herald has a handful of JIDs and a million users,
    /// so each user holds a few small numbers, not a set of strings.
    by_user: UserMap<Vec<u32>>,
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
        let contacts = self
            .by_user
            .entry(subscription.user)
            .or_insert_with(|| Vec::with_capacity(1));
        if contacts.contains(&contact) {
            return false;
        }
        contacts.push(contact);
        self.len += 1;
        true
    }

    /// Removes a subscription; false if it was not known.
    pub fn remove(&mut self, subscription: &Subscription) -> bool {
        let Some(&contact) = self.contact_indexes.get(&subscription.contact) else {
            return false;
        };
        let Some(contacts) = self.by_user.get_mut(&subscription.user) else {
            return false;
        };
        let Some(at) = contacts.iter().position(|&c| c == contact) else {
            return false;
        };
        contacts.swap_remove(at);
        if contacts.is_empty() {
            self.by_user.remove(&subscription.user);
        }
        self.len -= 1;
        true
    }

    /// Whether `user` has any of Herald's JIDs on their roster.
    pub fn contains_user(&self, user: UserText<'_>) -> bool {
        self.by_user.contains_key(&user)
    }

    /// Subscriptions, counted as (user, contact) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every user with one of Herald's JIDs on their roster, once each.
    pub fn users(&self) -> impl Iterator<Item = &BareJid> {
        self.by_user.keys()
    }

    /// Every (user, contact) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&BareJid, &BareJid)> {
        let contacts = &self.contacts;
        self.by_user.iter().flat_map(move |(user, indexes)| {
            indexes
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
    use super::*;

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
}
