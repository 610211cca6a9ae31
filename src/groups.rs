//! Named groups of users that jobs can address (`groups` in a job). Pure
//! data: the core holds the live groups and changes them on control
//! requests, the store's contents replay them from the log, and the
//! broadcast handler reads them through its context to resolve a job's
//! audience. Members are kept in JID order, so a group reads the same in
//! every process (a job resumed after a restart counts its recipients in
//! the same order) and pages of it follow one another.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use xmpp_parsers::jid::BareJid;

/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Most members a group may have.
pub const MAX_MEMBERS: usize = 1_000_000;

/// Why `name` cannot name a group, if it cannot.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > MAX_NAME_CHARS || !valid_chars {
        return Err(format!(
            "group name {:?}: 1 to {MAX_NAME_CHARS} characters of A-Z a-z 0-9 . _ -",
            name.chars().take(MAX_NAME_CHARS + 1).collect::<String>()
        ));
    }
    Ok(())
}

/// What a change did to a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub added: usize,
    pub removed: usize,
    /// Members after the change.
    pub size: usize,
}

/// A change to one group: what a control request asks for, and what the
/// store records (there, the members that really joined or left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// The group holds exactly these members (created if it was not).
    Put {
        name: String,
        members: Vec<BareJid>,
    },
    /// These members join the group (created if it was not).
    Add {
        name: String,
        members: Vec<BareJid>,
    },
    /// These members leave the group.
    Remove {
        name: String,
        members: Vec<BareJid>,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Groups {
    by_name: BTreeMap<String, BTreeSet<BareJid>>,
}

impl Groups {
    /// Creates the group `name` with exactly `members`, or makes an
    /// existing one hold exactly them.
    pub fn put(&mut self, name: &str, members: impl IntoIterator<Item = BareJid>) -> Changed {
        let members: BTreeSet<BareJid> = members.into_iter().collect();
        let before = self.by_name.insert(name.to_string(), members);
        let members = &self.by_name[name];
        let before = before.unwrap_or_default();
        Changed {
            added: members.difference(&before).count(),
            removed: before.difference(members).count(),
            size: members.len(),
        }
    }

    /// Adds `members` to the group `name`, creating it if there is none;
    /// returns the change and the members that were not in it before.
    pub fn add(
        &mut self,
        name: &str,
        members: impl IntoIterator<Item = BareJid>,
    ) -> (Changed, Vec<BareJid>) {
        let group = self.by_name.entry(name.to_string()).or_default();
        let added: Vec<BareJid> = members
            .into_iter()
            .filter(|member| group.insert(member.clone()))
            .collect();
        let changed = Changed {
            added: added.len(),
            removed: 0,
            size: group.len(),
        };
        (changed, added)
    }

    /// Removes `members` from the group `name`; None if there is no such
    /// group, else the change and the members that were in it.
    pub fn remove(
        &mut self,
        name: &str,
        members: impl IntoIterator<Item = BareJid>,
    ) -> Option<(Changed, Vec<BareJid>)> {
        let group = self.by_name.get_mut(name)?;
        let removed: Vec<BareJid> = members
            .into_iter()
            .filter(|member| group.remove(member))
            .collect();
        let changed = Changed {
            added: 0,
            removed: removed.len(),
            size: group.len(),
        };
        Some((changed, removed))
    }

    /// Deletes the group `name`; how many members it had (None: no such group).
    pub fn delete(&mut self, name: &str) -> Option<usize> {
        self.by_name.remove(name).map(|members| members.len())
    }

    /// Makes `change` (as the store replays it).
    pub fn apply(&mut self, change: GroupChange) {
        match change {
            GroupChange::Put { name, members } => {
                self.put(&name, members);
            }
            GroupChange::Add { name, members } => {
                self.add(&name, members);
            }
            GroupChange::Remove { name, members } => {
                self.remove(&name, members);
            }
            GroupChange::Delete { name } => {
                self.delete(&name);
            }
        }
    }

    pub fn members(&self, name: &str) -> Option<&BTreeSet<BareJid>> {
        self.by_name.get(name)
    }

    /// Up to `limit` members of `name` after `after`, in JID order (the
    /// order of their strings), and whether more follow; None if there is
    /// no such group.
    pub fn page(
        &self,
        name: &str,
        limit: usize,
        after: Option<&BareJid>,
    ) -> Option<(Vec<&BareJid>, bool)> {
        let members = self.by_name.get(name)?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut rest = members.range::<BareJid, _>((start, Bound::Unbounded));
        Some(take_page(&mut rest, limit))
    }

    /// Up to `limit` groups after the name `after`, with their sizes, in
    /// name order, and whether more follow.
    pub fn list(&self, limit: usize, after: Option<&str>) -> (Vec<(&str, usize)>, bool) {
        let start = after.map_or(Bound::Unbounded, |after| Bound::Excluded(after.to_string()));
        let mut rest = self
            .by_name
            .range((start, Bound::Unbounded))
            .map(|(name, members)| (name.as_str(), members.len()));
        take_page(&mut rest, limit)
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every group with its members, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BTreeSet<BareJid>)> {
        self.by_name
            .iter()
            .map(|(name, members)| (name.as_str(), members))
    }
}

fn take_page<T>(items: &mut impl Iterator<Item = T>, limit: usize) -> (Vec<T>, bool) {
    let page: Vec<T> = items.by_ref().take(limit).collect();
    (page, items.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jids(users: &[&str]) -> Vec<BareJid> {
        users.iter().map(|u| BareJid::new(u).unwrap()).collect()
    }

    fn page(groups: &Groups, name: &str, limit: usize, after: Option<&str>) -> (Vec<String>, bool) {
        let after = after.map(|after| BareJid::new(after).unwrap());
        let (page, more) = groups.page(name, limit, after.as_ref()).unwrap();
        (page.iter().map(|m| m.to_string()).collect(), more)
    }

    #[test]
    fn names_are_1_to_64_safe_characters() {
        assert!(check_name("ops.on-call_2").is_ok());
        assert!(check_name(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "é", "a/b", "a@b", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn put_replaces_and_says_what_changed() {
        let mut groups = Groups::default();
        let first = groups.put("ops", jids(&["a@x", "b@x", "a@x"]));
        assert_eq!(
            first,
            Changed {
                added: 2,
                removed: 0,
                size: 2
            }
        );
        let second = groups.put("ops", jids(&["b@x", "c@x"]));
        assert_eq!(
            second,
            Changed {
                added: 1,
                removed: 1,
                size: 2
            }
        );
        assert_eq!(
            page(&groups, "ops", 10, None),
            (vec!["b@x".into(), "c@x".into()], false)
        );
    }

    #[test]
    fn add_creates_and_counts_only_new_members_remove_needs_the_group() {
        let mut groups = Groups::default();
        let (changed, added) = groups.add("ops", jids(&["b@x", "a@x"]));
        assert_eq!((changed.added, changed.size), (2, 2));
        assert_eq!(added, jids(&["b@x", "a@x"]));
        let (changed, added) = groups.add("ops", jids(&["a@x", "c@x"]));
        assert_eq!((changed.added, changed.size, added), (1, 3, jids(&["c@x"])));
        let (changed, removed) = groups.remove("ops", jids(&["a@x", "z@x"])).unwrap();
        assert_eq!(
            (changed.removed, changed.size, removed),
            (1, 2, jids(&["a@x"]))
        );
        assert!(groups.remove("nope", jids(&["a@x"])).is_none());
        assert_eq!(groups.delete("ops"), Some(2));
        assert_eq!(groups.delete("ops"), None);
        assert!(groups.is_empty());
    }

    #[test]
    fn pages_follow_one_another_in_jid_order() {
        let mut groups = Groups::default();
        groups.put("g", jids(&["d@x", "a@x", "c@x", "b@x", "e@x"]));
        let (first, more) = page(&groups, "g", 2, None);
        assert_eq!(
            (first.clone(), more),
            (vec!["a@x".into(), "b@x".into()], true)
        );
        let (second, more) = page(&groups, "g", 2, first.last().map(String::as_str));
        assert_eq!(
            (second.clone(), more),
            (vec!["c@x".into(), "d@x".into()], true)
        );
        let (last, more) = page(&groups, "g", 2, second.last().map(String::as_str));
        assert_eq!((last, more), (vec!["e@x".into()], false));
        assert!(groups.page("none", 2, None).is_none());
    }

    #[test]
    fn groups_list_by_name_with_sizes() {
        let mut groups = Groups::default();
        groups.put("b", jids(&["a@x"]));
        groups.put("a", jids(&["a@x", "b@x"]));
        groups.put("c", Vec::new());
        assert_eq!(groups.list(2, None), (vec![("a", 2), ("b", 1)], true));
        assert_eq!(groups.list(2, Some("b")), (vec![("c", 0)], false));
    }
}
