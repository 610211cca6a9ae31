//! Maps keyed by user that a user's JID text can look up without being
//! parsed: a job keeps its recipients as text, and parsing each one again
//! as the fan-out reaches it costs more than the lookup itself.

use std::fmt;
use std::hash::Hash;

use hashbrown::Equivalent;
use xmpp_parsers::jid::{BareJid, FullJid};

/// How users' JIDs are hashed: foldhash, seeded at random per map. A job's
/// every recipient is looked up three times (repeated? probed? online?)
/// and SipHash, the standard library's, cost more than the rest of each
/// lookup; the keys come from the XMPP server and from producers, not
/// from strangers, and the random seed still keeps a set of colliding
/// keys from being prepared ahead.
pub type UserHasher = hashbrown::DefaultHashBuilder;

/// A map keyed by user.
pub type UserMap<V> = hashbrown::HashMap<UserKey, V, UserHasher>;

/// A user's normalised bare JID as a map keeps it: its text alone, 16
/// bytes (a [`BareJid`] takes 32, and a hash table's slack doubles what
/// each entry takes: the presence book and the subscriber table each hold
/// a million). It hashes and compares as its text, as [`BareJid`] and
/// [`UserText`] do, so either finds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserKey(Box<str>);

impl UserKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn text(&self) -> UserText<'_> {
        UserText(&self.0)
    }

    /// The JID again, parsed from the text: for the few places that build
    /// a stanza to the user (a probe), not for lookups.
    pub fn to_bare(&self) -> Result<BareJid, xmpp_parsers::jid::Error> {
        BareJid::new(&self.0)
    }
}

impl From<&BareJid> for UserKey {
    fn from(user: &BareJid) -> Self {
        UserKey(user.as_str().into())
    }
}

impl From<&UserText<'_>> for UserKey {
    fn from(user: &UserText<'_>) -> Self {
        UserKey(user.0.into())
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Equivalent<UserKey> for UserText<'_> {
    fn equivalent(&self, user: &UserKey) -> bool {
        self.0 == user.as_str()
    }
}

impl Equivalent<UserKey> for BareJid {
    fn equivalent(&self, user: &UserKey) -> bool {
        self.as_str() == user.as_str()
    }
}

/// A user's normalised bare JID as text (as [`BareJid::as_str`] gives
/// it): it hashes and compares as that [`BareJid`], whose hash is its
/// text's.
#[derive(Debug, Clone, Copy, Hash)]
pub struct UserText<'a>(pub &'a str);

impl<'a> UserText<'a> {
    /// The bare part of a full JID: its normal form is the bare JID's,
    /// then '/', then the resource.
    pub fn of_full(jid: &'a FullJid) -> Self {
        let text = jid.as_str();
        UserText(&text[..text.len() - jid.resource().as_str().len() - 1])
    }

    /// Its local part, if any, and its domain: a bare JID's text has at
    /// most one '@', which ends the local part.
    pub fn node_and_domain(self) -> (Option<&'a str>, &'a str) {
        match self.0.split_once('@') {
            Some((node, domain)) => (Some(node), domain),
            None => (None, self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_user_text_and_a_jid_hash_and_find_as_their_key() {
        let hasher = UserHasher::default();
        let alice = BareJid::new("Alice@Example.org").unwrap();
        let key = UserKey::from(&alice);
        let text = UserText("alice@example.org");
        assert_eq!(hasher.hash_one(text), hasher.hash_one(&key));
        assert_eq!(hasher.hash_one(&alice), hasher.hash_one(&key));
        let mut map = UserMap::default();
        map.insert(key.clone(), 1);
        assert_eq!(map.get_key_value(&text), Some((&key, &1)));
        assert_eq!(map.get(&alice), Some(&1));
        assert_eq!(map.get(&UserText("Alice@Example.org")), None);
        assert_eq!(map.get(&UserText("bob@example.org")), None);
        assert_eq!(key.to_bare(), Ok(alice));
        assert_eq!(std::mem::size_of::<UserKey>(), 16);
    }

    #[test]
    fn a_full_jid_gives_its_bare_part() {
        for (full, bare) in [
            ("Alice@Example.org/Desk", "alice@example.org"),
            ("example.org/a/b@c", "example.org"),
            ("a@b/ü", "a@b"),
        ] {
            let full = FullJid::new(full).unwrap();
            assert_eq!(UserText::of_full(&full).0, bare);
            assert_eq!(UserText::of_full(&full).0, full.to_bare().as_str());
        }
    }
}
