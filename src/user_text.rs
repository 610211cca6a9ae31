//! Maps keyed by user that a user's JID text can look up without being
//! parsed: a job keeps its recipients as text, and parsing each one again
//! as the fan-out reaches it costs more than the lookup itself.

use std::hash::Hash;

use hashbrown::Equivalent;
use xmpp_parsers::jid::BareJid;

/// How users' JIDs are hashed: foldhash, seeded at random per map. A job's
/// every recipient is looked up three times (repeated? probed? online?)
/// and SipHash, the standard library's, cost more than the rest of each
/// lookup; the keys come from the XMPP server and from producers, not
/// from strangers, and the random seed still keeps a set of colliding
/// keys from being prepared ahead.
pub type UserHasher = hashbrown::DefaultHashBuilder;

/// A map keyed by user.
pub type UserMap<V> = hashbrown::HashMap<BareJid, V, UserHasher>;

/// A user's normalised bare JID as text (as [`BareJid::as_str`] gives
/// it): it hashes and compares as that [`BareJid`], whose hash is its
/// text's.
#[derive(Debug, Clone, Copy, Hash)]
pub struct UserText<'a>(pub &'a str);

impl<'a> UserText<'a> {
    /// Its local part, if any, and its domain: a bare JID's text has at
    /// most one '@', which ends the local part.
    pub fn node_and_domain(self) -> (Option<&'a str>, &'a str) {
        match self.0.split_once('@') {
            Some((node, domain)) => (Some(node), domain),
            None => (None, self.0),
        }
    }
}

impl Equivalent<BareJid> for UserText<'_> {
    fn equivalent(&self, user: &BareJid) -> bool {
        self.0 == user.as_str()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_user_text_hashes_and_finds_as_its_jid() {
        let hasher = UserHasher::default();
        let alice = BareJid::new("Alice@Example.org").unwrap();
        let text = UserText("alice@example.org");
        assert_eq!(hasher.hash_one(text), hasher.hash_one(&alice));
        let mut map = UserMap::default();
        map.insert(alice.clone(), 1);
        assert_eq!(map.get_key_value(&text), Some((&alice, &1)));
        assert_eq!(map.get(&UserText("Alice@Example.org")), None);
        assert_eq!(map.get(&UserText("bob@example.org")), None);
    }
}
