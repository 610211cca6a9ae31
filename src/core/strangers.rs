//! Recipients Herald has never heard of. Herald learns its subscribers from
//! the presence the server routes to it, so a user who was online before a
//! fresh Herald connected, or whose first presence was lost with a stream,
//! is unknown to it; such a user is probed before a job is fanned out to
//! them. This remembers whom it probed without learning anything, for a
//! while, so that offline or unsubscribed recipients are not probed again
//! for every job. Pure bookkeeping.

use std::time::{Duration, Instant};

use xmpp_parsers::jid::BareJid;

use crate::presence::PresenceBook;
use crate::user_text::{UserKey, UserMap, UserText};

#[derive(Debug)]
pub struct Strangers {
    /// How long a probe nobody answered with presence stands; zero turns
    /// probing of unknown recipients off.
    ttl: Duration,
    /// When each user was probed, and the barrier ticket behind the probe.
    probed: UserMap<(Instant, u64)>,
    /// Probes with tickets up to this one were answered.
    answered_through: u64,
}

impl Strangers {
    pub fn new(ttl: Duration) -> Self {
        Strangers {
            ttl,
            probed: UserMap::default(),
            answered_through: 0,
        }
    }

    /// Whether a user who is not a known subscriber is to be probed now:
    /// never probed, probed too long ago, or probed for a job that was
    /// given up before the answer came (a job that waits must then wait
    /// for a probe of its own).
    pub fn should_probe(&self, user: UserText<'_>, now: Instant) -> bool {
        !self.ttl.is_zero()
            && self.probed.get(&user).is_none_or(|(at, ticket)| {
                now.saturating_duration_since(*at) >= self.ttl || *ticket > self.answered_through
            })
    }

    /// `user` was probed at `now`, with barrier `ticket` behind the probe.
    pub fn probed(&mut self, user: BareJid, now: Instant, ticket: u64) {
        self.probed.insert(UserKey::from(&user), (now, ticket));
    }

    /// The probes up to `ticket` were answered (barriers are answered in order).
    pub fn answered(&mut self, ticket: u64) {
        self.answered_through = self.answered_through.max(ticket);
    }

    /// A new stream: answers to earlier probes, and presence that would
    /// have made a user known, may have been lost with the old one.
    pub fn clear(&mut self) {
        self.probed.clear();
    }

    /// Forgets probes older than the TTL (they no longer hold anyone back).
    pub fn sweep(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.probed
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
    }

    pub fn len(&self) -> usize {
        self.probed.len()
    }
}

/// Who is a stranger at one moment: a user of the server Herald is attached
/// to who is no known subscriber and was not probed in vain lately. What a
/// handler asks through [`crate::handler::Context::is_stranger`].
pub struct StrangerTest<'a> {
    /// The domains Herald serves. It ignores presence from others, so
    /// probing their users would learn nothing (and reach out to them).
    pub user_domains: &'a [BareJid],
    /// Who subscribes.
    pub presence: &'a PresenceBook,
    pub strangers: &'a Strangers,
    pub now: Instant,
}

impl StrangerTest<'_> {
    pub fn is_stranger(&self, user: UserText<'_>) -> bool {
        // Subscribers first: nearly every recipient is one, and their
        // domain need not be looked for in the text.
        !self.presence.is_subscriber(user) && {
            let (_, domain) = user.node_and_domain();
            super::settings::serves(self.user_domains, domain)
                && self.strangers.should_probe(user, self.now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    #[test]
    fn a_user_probed_in_vain_is_not_probed_again_until_the_ttl_passed() {
        let mut strangers = Strangers::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(strangers.should_probe(UserText("ghost@l"), t0));
        strangers.probed(jid("ghost@l"), t0, 1);
        assert!(
            strangers.should_probe(UserText("ghost@l"), t0),
            "its probe is unanswered"
        );
        strangers.answered(1);
        assert!(!strangers.should_probe(UserText("ghost@l"), t0 + Duration::from_secs(59)));
        assert!(strangers.should_probe(UserText("other@l"), t0));
        assert!(strangers.should_probe(UserText("ghost@l"), t0 + Duration::from_secs(60)));
    }

    #[test]
    fn a_new_stream_forgets_every_probe() {
        let mut strangers = Strangers::new(Duration::from_secs(60));
        let t0 = Instant::now();
        strangers.probed(jid("ghost@l"), t0, 1);
        strangers.clear();
        assert!(strangers.should_probe(UserText("ghost@l"), t0));
    }

    #[test]
    fn sweeping_drops_only_expired_probes() {
        let mut strangers = Strangers::new(Duration::from_secs(60));
        let t0 = Instant::now();
        strangers.probed(jid("old@l"), t0, 1);
        strangers.probed(jid("new@l"), t0 + Duration::from_secs(30), 2);
        strangers.answered(2);
        strangers.sweep(t0 + Duration::from_secs(61));
        assert_eq!(strangers.len(), 1);
        assert!(!strangers.should_probe(UserText("new@l"), t0 + Duration::from_secs(61)));
    }

    #[test]
    fn only_users_neither_subscribed_nor_probed_lately_are_strangers() {
        use crate::store::Subscription;
        let presence = PresenceBook::with_subscriptions(vec![Subscription {
            user: jid("alice@l"),
            contact: jid("herald@b.l"),
        }]);
        let mut strangers = Strangers::new(Duration::from_secs(60));
        let now = Instant::now();
        strangers.probed(jid("ghost@l"), now, 1);
        strangers.answered(1);
        let user_domains = [jid("l")];
        let test = StrangerTest {
            user_domains: &user_domains,
            presence: &presence,
            strangers: &strangers,
            now,
        };
        assert!(!test.is_stranger(UserText("alice@l")));
        assert!(!test.is_stranger(UserText("ghost@l")));
        assert!(test.is_stranger(UserText("bob@l")));
        assert!(!test.is_stranger(UserText("mallory@evil.example")));
    }

    #[test]
    fn a_zero_ttl_turns_probing_off() {
        let strangers = Strangers::new(Duration::ZERO);
        assert!(!strangers.should_probe(UserText("ghost@l"), Instant::now()));
    }
}
