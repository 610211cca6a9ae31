//! Who shares presence with Herald: each user with one of Herald's JIDs
//! (a contact) on their roster, so that a job's recipients can be told
//! apart from users Herald has never heard of, and when Herald last saw
//! each go offline.

use xmpp_parsers::jid::BareJid;

use super::entry::{State, User};
use super::{PresenceBook, Stamp};
use crate::store::Subscription;
use crate::user_text::{UserKey, UserText};

/// The contacts a user subscribed to, as indexes into the book's
/// contacts. Nearly always one, kept inline: a boxed slice of one index
/// took a heap block (32 bytes with glibc) per subscriber. None is an
/// empty slice, which allocates nothing.
#[derive(Debug)]
pub(super) enum Contacts {
    One(u32),
    Many(Box<[u32]>),
}

impl Contacts {
    pub fn none() -> Contacts {
        Contacts::Many(Box::default())
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Contacts::One(contact) => std::slice::from_ref(contact),
            Contacts::Many(contacts) => contacts,
        }
    }

    /// These and `contact`.
    fn with(&self, contact: u32) -> Contacts {
        Contacts::from(
            self.as_slice()
                .iter()
                .copied()
                .chain([contact])
                .collect::<Vec<_>>(),
        )
    }

    /// These without the one at `at`.
    fn without(&self, at: usize) -> Contacts {
        let mut contacts = self.as_slice().to_vec();
        contacts.remove(at);
        Contacts::from(contacts)
    }
}

impl From<Vec<u32>> for Contacts {
    fn from(contacts: Vec<u32>) -> Self {
        match *contacts {
            [contact] => Contacts::One(contact),
            _ => Contacts::Many(contacts.into_boxed_slice()),
        }
    }
}

impl PresenceBook {
    /// A book of these subscriptions, with nobody online.
    pub fn with_subscriptions(subscriptions: Vec<Subscription>) -> Self {
        let mut book = PresenceBook::default();
        // Grown once rather than a doubling at a time: a million
        // subscribers are loaded at every start.
        book.users.reserve(subscriptions.len());
        for subscription in &subscriptions {
            book.subscribe(subscription);
        }
        book
    }

    /// Adds a subscription; false if it was known. (Every available
    /// presence says the user subscribes: a known one allocates nothing.)
    pub fn subscribe(&mut self, subscription: &Subscription) -> bool {
        let contact = self.contact_index(&subscription.contact);
        if let Some(user) = self.users.get_mut(&subscription.user) {
            if user.contacts.as_slice().contains(&contact) {
                return false;
            }
            user.contacts = user.contacts.with(contact);
        } else {
            let user = User {
                contacts: Contacts::One(contact),
                ..User::default()
            };
            self.users.insert(UserKey::from(&subscription.user), user);
        }
        self.subscriptions += 1;
        true
    }

    /// Removes a subscription; false if it was not known. A user who
    /// subscribes no more is forgotten when offline, and with them when
    /// Herald saw them go.
    pub fn unsubscribe(&mut self, subscription: &Subscription) -> bool {
        let Some(&contact) = self.contact_indexes.get(&subscription.contact) else {
            return false;
        };
        let Some(user) = self.users.get_mut(&subscription.user) else {
            return false;
        };
        let Some(at) = user.contacts.as_slice().iter().position(|&c| c == contact) else {
            return false;
        };
        user.contacts = user.contacts.without(at);
        if !user.is_kept() {
            self.users.remove(&subscription.user);
        }
        self.subscriptions -= 1;
        true
    }

    /// Whether `user` has any of Herald's JIDs on their roster.
    pub fn is_subscriber(&self, user: UserText<'_>) -> bool {
        self.users
            .get(&user)
            .is_some_and(|user| !user.contacts.is_empty())
    }

    /// Notes when `user` went offline, while they are offline; nothing is
    /// kept of a user who is no subscriber, nor while a user is online.
    pub fn set_offline_since(&mut self, user: &BareJid, since: Option<Stamp>) {
        if let Some(User {
            contacts,
            state: State::Offline(offline_since),
        }) = self.users.get_mut(user)
        {
            if !contacts.is_empty() {
                *offline_since = since;
            }
        }
    }

    /// When Herald saw `user` go offline, if it did since it started and
    /// has not seen them online since.
    pub fn offline_since(&self, user: &BareJid) -> Option<Stamp> {
        match self.users.get(user)?.state {
            State::Offline(since) => since,
            State::Online(_) => None,
        }
    }

    /// Subscriptions, counted as (user, contact) pairs.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions
    }

    /// Every user with one of Herald's JIDs on their roster, once each.
    pub fn subscribers(&self) -> impl Iterator<Item = &UserKey> {
        (self.users.iter()).filter_map(|(key, user)| (!user.contacts.is_empty()).then_some(key))
    }

    /// Every (user, contact) pair.
    pub fn subscription_pairs(&self) -> impl Iterator<Item = (&UserKey, &BareJid)> {
        let contacts = &self.contacts;
        self.users.iter().flat_map(move |(key, user)| {
            (user.contacts.as_slice().iter())
                .map(move |&contact| (key, &contacts[contact as usize]))
        })
    }

    /// A contact's index, kept for good once seen (Herald's JIDs are few).
    fn contact_index(&mut self, contact: &BareJid) -> u32 {
        if let Some(&index) = self.contact_indexes.get(contact) {
            return index;
        }
        let index = u32::try_from(self.contacts.len()).expect("fewer than 2^32 contact JIDs");
        self.contacts.push(contact.clone());
        self.contact_indexes.insert(contact.clone(), index);
        index
    }
}
