//! What the presence book keeps of one user: their subscription, if they
//! have one, and their presence.

use super::subscriptions::Contacts;
use super::{reach, readiest, Policy, Reachability, Resources, Show, Since, Stamp};

#[derive(Debug)]
pub(super) struct User {
    /// Herald's JIDs they subscribed to; none for a user who is online
    /// without subscribing (a stranger probed for a job, say).
    pub contacts: Contacts,
    pub state: State,
}

#[derive(Debug)]
pub(super) enum State {
    Online(OnlineUser),
    /// When Herald saw them go offline, if it did since it started; kept
    /// only while they subscribe.
    Offline(Option<Stamp>),
}

impl Default for User {
    fn default() -> Self {
        User {
            contacts: Contacts::none(),
            state: State::Offline(None),
        }
    }
}

impl User {
    pub fn online(&self) -> Option<&OnlineUser> {
        match &self.state {
            State::Online(online) => Some(online),
            State::Offline(_) => None,
        }
    }

    /// Their online entry, made `at` if they were offline; whether they
    /// came online now.
    pub fn online_from(&mut self, at: Stamp) -> (&mut OnlineUser, bool) {
        let came = matches!(self.state, State::Offline(_));
        if came {
            self.state = State::Online(OnlineUser::new(at));
        }
        match &mut self.state {
            State::Online(online) => (online, came),
            State::Offline(_) => unreachable!("set online above"),
        }
    }

    /// Whether the book has a reason to keep the entry: a subscription or
    /// a resource online.
    pub fn is_kept(&self) -> bool {
        !self.contacts.is_empty() || matches!(self.state, State::Online(_))
    }
}

/// A user with a resource online.
#[derive(Debug)]
pub(super) struct OnlineUser {
    /// Nearly always one, so packed into one allocation and searched by
    /// name: a hash map per user cost several hundred bytes, a vector of
    /// boxed names a heap block more per resource, and a million online
    /// users is the size Herald is built for.
    pub resources: Resources,
    pub since: Since,
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
    pub fn looks(&self) -> (Reachability, Option<Show>) {
        (
            reach(&self.resources, Policy::Available),
            readiest(self.resources.presences()),
        )
    }

    /// Notes `at` as the start of how the user looks now if that differs
    /// from how they looked before the change (`looked`).
    pub fn changed_since(&mut self, looked: (Reachability, Option<Show>), at: Stamp) {
        if self.looks() != looked {
            self.since.show = at;
        }
    }
}
