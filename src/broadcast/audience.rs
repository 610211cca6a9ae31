//! A job's audience: the users its `to` names, the members of its
//! `groups`, and with `all_subscribers` everyone who shares presence with
//! Herald, resolved into one list of recipients in which each user is
//! once. Pure code.
//!
//! The list's order is fixed by what it is made of, not by the process:
//! `to` as written, then each group as named with its members in JID
//! order, then the subscribers in JID order. A job resumed from a
//! checkpoint after a restart counts its recipients by their place in this
//! list, so the same groups and subscribers give the same list.

use std::sync::Arc;

use super::job::{Job, Recipients, TooLarge};
use crate::groups::Groups;
use crate::user_text::{UserKey, UserText};

/// Adds the members of the job's groups to its recipients, each user
/// once; returns the groups it names that do not exist. The subscribers
/// come after them ([`add_subscribers`]).
pub fn add_groups(job: &mut Job, groups: &Groups) -> Result<Vec<String>, TooLarge> {
    if job.groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut users = Arc::make_mut(&mut job.recipients).users();
    let mut missing = Vec::new();
    for name in &job.groups {
        match groups.members(name) {
            Some(members) => {
                for member in members {
                    users.add(UserText(member.as_str()))?;
                }
            }
            None => missing.push(name.clone()),
        }
    }
    Ok(missing)
}

/// With `all_subscribers`, adds every subscriber who is not a recipient
/// yet, in JID order, after the rest. Subscribers are never probed as
/// strangers, so this waits until the job is to be counted or sent: a
/// job examined while it waits behind another does not pay for it.
pub fn add_subscribers<'a>(
    job: &mut Job,
    subscribers: impl Iterator<Item = &'a UserKey>,
) -> Result<(), TooLarge> {
    if !job.all_subscribers {
        return Ok(());
    }
    let mut everyone: Vec<&UserKey> = subscribers.collect();
    everyone.sort_unstable();
    let mut users = Arc::make_mut(&mut job.recipients).users();
    for user in everyone {
        users.add(user.text())?;
    }
    Ok(())
}

/// How many recipients the job has once [`add_subscribers`] has run, as
/// its report counts them; without adding them to the job (a copy of its
/// recipients takes them: only for a producer whose recipients are
/// limited).
pub fn size<'a>(job: &Job, subscribers: impl Iterator<Item = &'a UserKey>) -> usize {
    if !job.all_subscribers {
        return job.recipients.len();
    }
    let mut recipients = Recipients::clone(&job.recipients);
    let mut users = recipients.users();
    let more = subscribers
        .filter(|user| matches!(users.add(user.text()), Ok(true) | Err(_)))
        .count();
    job.recipients.len() + more
}

#[cfg(test)]
mod tests {
    use xmpp_parsers::jid::BareJid;

    use super::*;
    use crate::broadcast::job::{JobLimits, Recipient};

    fn jid(user: &str) -> BareJid {
        BareJid::new(user).unwrap()
    }

    fn job(json: &str) -> Job {
        let limits = JobLimits {
            component_domain: jid("broadcast.localhost"),
            default_sender: "herald@broadcast.localhost".parse().unwrap(),
            max_body_bytes: 1000,
            max_recipients: 1000,
            allowed_from: Vec::new(),
            names_part_bytes: 256 * 1024,
            max_deliver_within: std::time::Duration::from_secs(3600),
            receipts_window: std::time::Duration::from_secs(300),
        };
        Job::parse(json.as_bytes(), &limits).unwrap()
    }

    fn users(job: &Job) -> Vec<String> {
        job.recipients
            .iter_from(0)
            .map(|r| match r {
                Recipient::User(user) => user.to_string(),
                Recipient::Invalid(text) => format!("invalid {text}"),
            })
            .collect()
    }

    #[test]
    fn each_user_is_once_whatever_the_overlap_in_a_fixed_order() {
        let mut groups = Groups::default();
        groups.put("a", [jid("c@x"), jid("b@x"), jid("t@x")]);
        groups.put("b", [jid("b@x"), jid("d@x")]);
        let subscribers = [jid("z@x"), jid("d@x"), jid("e@x")].map(|user| UserKey::from(&user));
        let mut job = job(
            r#"{"id":"j","body":"hi","to":["t@x","bad/x"],"groups":["b","a","b"],"all_subscribers":true}"#,
        );
        let missing = add_groups(&mut job, &groups).unwrap();
        add_subscribers(&mut job, subscribers.iter()).unwrap();
        assert!(missing.is_empty());
        assert_eq!(
            users(&job),
            ["t@x", "invalid bad/x", "b@x", "d@x", "c@x", "e@x", "z@x"]
        );
    }

    #[test]
    fn unknown_groups_are_named_and_the_rest_still_resolves() {
        let mut groups = Groups::default();
        groups.put("known", [jid("a@x")]);
        let mut job = job(r#"{"id":"j","body":"hi","groups":["nope","known","gone"]}"#);
        let missing = add_groups(&mut job, &groups).unwrap();
        assert_eq!(missing, ["nope", "gone"]);
        assert_eq!(users(&job), ["a@x"]);
    }

    #[test]
    fn subscribers_only_when_asked() {
        let subscribers = [UserKey::from(&jid("s@x"))];
        let mut job = job(r#"{"id":"j","body":"hi","to":["t@x"]}"#);
        add_subscribers(&mut job, subscribers.iter()).unwrap();
        assert_eq!(users(&job), ["t@x"]);
    }
}
