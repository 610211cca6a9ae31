//! The group requests of the control plane. A change is made to the live
//! groups at once (requests after it see it, in order) and written to the
//! store; its reply waits until that write, and everything written before
//! it, is committed. Reads are answered at once from the live groups.

use xmpp_parsers::jid::BareJid;

use super::control::Answer;
use super::Core;
use crate::control::{
    GroupChanged, GroupDeleted, GroupList, GroupPage, GroupSummary, Reply, RequestError,
};
use crate::groups::{self, Changed, GroupChange};
use crate::handler::Handler;
use crate::store::Change;

impl<H: Handler> Core<H> {
    pub(super) fn put_group(&mut self, name: String, members: Vec<BareJid>) -> Answer {
        if let Err(e) = self.check_members(&members) {
            return Answer::Now(Reply::error(&e));
        }
        let changed = self.groups.put(&name, members);
        // Written as the group now is: the request's repeats are gone.
        let members = self.groups.members(&name).into_iter().flatten().cloned();
        let change = Change::Group(GroupChange::Put {
            name: name.clone(),
            members: members.collect(),
        });
        self.store.write(change, self.now);
        Answer::AfterCommit(Reply::result(group_changed(name, changed)))
    }

    pub(super) fn add_to_group(&mut self, name: String, members: Vec<BareJid>) -> Answer {
        if let Err(e) = self.check_members(&members) {
            return Answer::Now(Reply::error(&e));
        }
        let group = self.groups.members(&name);
        let size = group.map_or(0, |group| group.len());
        let new = group.map_or(members.len(), |group| {
            members.iter().filter(|m| !group.contains(*m)).count()
        });
        if size + new > groups::MAX_MEMBERS {
            return Answer::Now(Reply::error(&RequestError::InvalidRequest(format!(
                "group {name:?} would have {} members; at most {}",
                size + new,
                groups::MAX_MEMBERS
            ))));
        }
        let (changed, added) = self.groups.add(&name, members);
        self.store.write(
            Change::Group(GroupChange::Add {
                name: name.clone(),
                members: added,
            }),
            self.now,
        );
        Answer::AfterCommit(Reply::result(group_changed(name, changed)))
    }

    pub(super) fn remove_from_group(&mut self, name: String, members: Vec<BareJid>) -> Answer {
        let Some((changed, removed)) = self.groups.remove(&name, members) else {
            return Answer::Now(Reply::error(&RequestError::UnknownGroup(name)));
        };
        if !removed.is_empty() {
            let change = Change::Group(GroupChange::Remove {
                name: name.clone(),
                members: removed,
            });
            self.store.write(change, self.now);
        }
        Answer::AfterCommit(Reply::result(group_changed(name, changed)))
    }

    pub(super) fn delete_group(&mut self, name: String) -> Answer {
        let removed = self.groups.delete(&name);
        if removed.is_some() {
            let change = Change::Group(GroupChange::Delete { name: name.clone() });
            self.store.write(change, self.now);
        }
        Answer::AfterCommit(Reply::result(GroupDeleted {
            group: name,
            deleted: removed.is_some(),
            removed: removed.unwrap_or(0),
        }))
    }

    pub(super) fn group_page(&self, name: String, limit: usize, after: Option<BareJid>) -> Reply {
        let Some((page, more)) = self.groups.page(&name, limit, after.as_ref()) else {
            return Reply::error(&RequestError::UnknownGroup(name));
        };
        let size = self.groups.members(&name).map_or(0, |group| group.len());
        let members: Vec<String> = page.iter().map(|member| member.to_string()).collect();
        Reply::result(GroupPage {
            next: more.then(|| members.last().cloned()).flatten(),
            group: name,
            size,
            members,
        })
    }

    pub(super) fn group_list(&self, limit: usize, after: Option<&str>) -> Reply {
        let (page, more) = self.groups.list(limit, after);
        let groups: Vec<GroupSummary> = page
            .into_iter()
            .map(|(name, size)| GroupSummary {
                name: name.to_string(),
                size,
            })
            .collect();
        Reply::result(GroupList {
            total: self.groups.len(),
            next: more
                .then(|| groups.last().map(|g| g.name.clone()))
                .flatten(),
            groups,
        })
    }

    /// Herald's own domain is no user's: a message to it would come back
    /// to Herald.
    fn check_members(&self, members: &[BareJid]) -> Result<(), RequestError> {
        let own = self.settings.domain.domain();
        match members.iter().position(|m| m.domain() == own) {
            Some(index) => Err(RequestError::InvalidRequest(format!(
                "members[{index}] {:?}: on Herald's own domain, not a user's",
                members[index].as_str()
            ))),
            None => Ok(()),
        }
    }
}

fn group_changed(group: String, changed: Changed) -> GroupChanged {
    GroupChanged {
        group,
        size: changed.size,
        added: changed.added,
        removed: changed.removed,
    }
}
