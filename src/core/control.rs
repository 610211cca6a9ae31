//! Control requests (request/reply over AMQP): answered at once from the
//! core's own state, so an answer is as true as the presence book at the
//! moment the request is taken. A reply is not a job: nothing is stored or
//! reported, and nothing about jobs changes. A request with nowhere to
//! answer (no `reply_to`) is dead-lettered with the reason; one its
//! producer may not make is answered `forbidden`.

use std::collections::BinaryHeap;
use std::hash::Hash;
use std::time::SystemTime;

use hashbrown::Equivalent;
use xmpp_parsers::jid::BareJid;

use super::io::{Destination, Output, Publish, Request};
use super::Core;
use crate::control::{
    self, OnlineResult, OnlineUser, PresenceResult, Reply, RequestError, StatusResult, UserPresence,
};
use crate::groups::GroupChange;
use crate::handler::Handler;
use crate::presence::{Policy, Reachability, Stamp};
use crate::user_text::UserKey;

/// A request's reply, and when it may go.
pub(super) enum Answer {
    Now(Reply),
    /// Once what the request changed is committed to the store.
    AfterCommit(Reply),
}

impl<H: Handler> Core<H> {
    pub(super) fn on_request(&mut self, request: Request) {
        // As with deliveries: a request of a connection since lost was
        // requeued by the broker and is answered on the next one.
        let generation = request.id.generation;
        if self.broker.is_new(generation) {
            self.on_broker_up(generation);
        }
        if self.broker.live() != Some(generation) {
            return;
        }
        let parsed = control::parse(&request.payload);
        let Some(reply_to) = request.reply_to else {
            let reason = match parsed {
                Ok(_) => "control request without reply_to".to_string(),
                Err(e) => format!("control request without reply_to: {e}"),
            };
            tracing::warn!(%reason, "control request dead-lettered");
            let dead = Destination::DeadRequest {
                request: request.id,
                reason,
            };
            let dead = best_effort(generation, dead, request.payload);
            self.out.push_back(Output::Publish(dead));
            return;
        };
        // A producer may ask only for what `[producers]` grants it.
        let producers = &self.settings.producers;
        let user_id = request.user_id.as_deref();
        let permitted = parsed.and_then(|op| match producers.check_request(user_id, op.op()) {
            Ok(()) => Ok(op),
            Err(refusal) => {
                self.metrics.refusals.count(&refusal);
                Err(RequestError::from(refusal))
            }
        });
        let answer = match permitted {
            Ok(op) => self.answer(op, request.received_at),
            Err(e) => {
                tracing::debug!(error = %e, "control request refused");
                Answer::Now(Reply::error(&e))
            }
        };
        let destination = Destination::Reply {
            request: request.id,
            reply_to,
            correlation_id: request.correlation_id,
        };
        match answer {
            Answer::Now(reply) => {
                let reply = best_effort(generation, destination, reply.to_json());
                self.out.push_back(Output::Publish(reply));
            }
            Answer::AfterCommit(reply) => {
                let reply = best_effort(generation, destination, reply.to_json());
                self.store.reply_after_commit(reply);
            }
        }
    }

    /// `received_at`: the wall-clock time of the request, which the
    /// answer's times are told in.
    fn answer(&mut self, request: control::Request, received_at: SystemTime) -> Answer {
        use control::Request as R;
        let reply = match request {
            R::Presence { users } => Reply::result(self.presence_of(users, received_at)),
            R::Online { limit, after } => Reply::result(self.online(limit, after.as_deref())),
            R::Status => Reply::result(self.status()),
            R::Cancel { id } => return self.cancel_job(id),
            R::Group(GroupChange::Put { name, members }) => return self.put_group(name, members),
            R::Group(GroupChange::Add { name, members }) => {
                return self.add_to_group(name, members)
            }
            R::Group(GroupChange::Remove { name, members }) => {
                return self.remove_from_group(name, members)
            }
            R::Group(GroupChange::Delete { name }) => return self.delete_group(name),
            R::GroupGet { name, limit, after } => self.group_page(name, limit, after),
            R::GroupList { limit, after } => self.group_list(limit, after.as_deref()),
        };
        Answer::Now(reply)
    }

    /// Replies that waited for a store commit: sent if their connection is
    /// still the live one (else the broker has requeued the request, and
    /// its repeat is answered on the next connection). `failure`: the
    /// commit failed, and each gets that error instead of its result.
    pub(super) fn send_committed_replies(&mut self, replies: Vec<Publish>, failure: Option<&str>) {
        for mut reply in replies {
            if self.broker.live() != Some(reply.generation) {
                continue;
            }
            if let Some(error) = failure {
                let error = RequestError::StoreFailed(format!(
                    "the change is made but the store could not save it ({error}); \
                     Herald keeps trying, and it is lost if Herald stops first: \
                     send the request again to be sure"
                ));
                reply.payload = Reply::error(&error).to_json();
            }
            self.out.push_back(Output::Publish(reply));
        }
    }

    fn presence_of(&self, users: Vec<String>, received_at: SystemTime) -> PresenceResult {
        // A moment of the core's clock on the wall clock: as long before
        // the request's wall-clock time as it is before the core's now.
        let wall = |stamp: Stamp| {
            let ago = self
                .now
                .saturating_duration_since(self.clock.instant(stamp));
            received_at.checked_sub(ago).map(control::timestamp)
        };
        let users = users
            .into_iter()
            .map(|jid| match BareJid::new(&jid) {
                Ok(bare) => {
                    let (since, show_since) = self.since_of(&bare);
                    UserPresence {
                        online: Some(
                            self.presence.reachability(&bare, Policy::Online)
                                != Reachability::Offline,
                        ),
                        available: Some(self.is_available(&bare)),
                        resources: Some(self.presence.resources_of(&bare).count()),
                        show: self.presence.readiest_show(&bare),
                        since: since.and_then(wall),
                        show_since: show_since.and_then(wall),
                        error: None,
                        jid,
                    }
                }
                Err(e) => UserPresence {
                    error: Some(format!("not a bare JID: {e}")),
                    online: None,
                    available: None,
                    resources: None,
                    show: None,
                    since: None,
                    show_since: None,
                    jid,
                },
            })
            .collect();
        PresenceResult { users }
    }

    /// Since when `user` has been online (or offline, if Herald saw them
    /// go) and, online, since when they have looked as now if that is
    /// later: moments of the core's clock.
    fn since_of(&self, user: &BareJid) -> (Option<Stamp>, Option<Stamp>) {
        match self.presence.since(user) {
            Some(since) => (
                Some(since.online),
                (since.show > since.online).then_some(since.show),
            ),
            None => (self.presence.offline_since(user), None),
        }
    }

    /// Whether a job with the default policy would reach the user now.
    fn is_available<U: Hash + Equivalent<UserKey>>(&self, user: &U) -> bool {
        self.presence.reachability(user, Policy::Available) == Reachability::Deliver
    }

    /// One pass over the presence book's users (subscribers offline are
    /// passed over), keeping only the page's `limit` + 1 first online JIDs
    /// after `after` (the one more says whether a next page exists): no
    /// list of every online user is built on the loop's thread.
    pub(super) fn online(&self, limit: usize, after: Option<&str>) -> OnlineResult {
        let (mut online, mut available) = (0, 0);
        // The greatest JID kept on top, to be dropped for a smaller one.
        let mut page: BinaryHeap<(&str, bool)> = BinaryHeap::with_capacity(limit + 1);
        for user in self.presence.users() {
            let is_available = self.is_available(user);
            online += 1;
            available += usize::from(is_available);
            let jid = user.as_str();
            if after.is_some_and(|after| jid <= after) {
                continue;
            }
            page.push((jid, is_available));
            if page.len() > limit + 1 {
                page.pop();
            }
        }
        let mut page = page.into_sorted_vec();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|(jid, _)| jid.to_string())
        } else {
            None
        };
        OnlineResult {
            online,
            available,
            users: page
                .into_iter()
                .map(|(jid, available)| OnlineUser {
                    jid: jid.to_string(),
                    available,
                })
                .collect(),
            next,
        }
    }

    fn status(&self) -> StatusResult {
        StatusResult {
            version: env!("CARGO_PKG_VERSION").to_string(),
            xmpp_connected: self.phase.has_stream(),
            broker_connected: self.broker.live().is_some(),
            online_users: self.presence.online_users(),
            online_resources: self.presence.online_resources(),
            subscriptions: self.presence.subscriptions(),
            jobs_in_flight: self.jobs.len(),
            remembered_jobs: self.ledger.completed_len(),
            cancelled: self.ledger.cancelled_len(),
            groups: self.groups.len(),
        }
    }
}

/// A best-effort publish: the core waits for no confirm of a reply.
fn best_effort(generation: u64, destination: Destination, payload: Vec<u8>) -> Publish {
    Publish {
        id: None,
        generation,
        destination,
        payload,
    }
}
