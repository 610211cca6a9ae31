//! Groups in the simulated world. Two groups that jobs address are in the
//! store before Herald first starts and never change, so a job's
//! recipients are known when it is published. A third, the scratch group,
//! is changed by the application's control requests (drawn from the
//! requests' own RNG), and a model of it checks that a change answered ok
//! is in the store: whatever a crash leaves, the store holds the group as
//! that change or a later one made it.

use std::collections::{BTreeSet, HashMap};

use herald::control::Reply;
use herald::core::{Destination, Publish, RequestId};
use herald::groups::GroupChange;
use herald::store::Change;
use serde_json::json;

use super::server::{self, USERS};
use super::store::Store;
use herald_testkit::draw::Draw;

/// The groups jobs address (by index), and one no job ever finds.
pub const ADDRESSED: [&str; 2] = ["g0", "g1"];
pub const MISSING: &str = "nope";
const SCRATCH: &str = "s";

/// What a request does to the scratch group if Herald takes it.
#[derive(Debug, Clone)]
pub enum Effect {
    /// A read, or a request Herald refuses.
    None,
    Put(BTreeSet<usize>),
    Add(BTreeSet<usize>),
    Remove(BTreeSet<usize>),
    Delete,
}

pub struct Groups {
    /// Members of the addressed groups (user indexes).
    pub addressed: Vec<BTreeSet<usize>>,
    /// The scratch group as Herald held it after each change it took,
    /// oldest first (None: no such group); the first is what the store
    /// held when this Herald started.
    states: Vec<Option<BTreeSet<usize>>>,
    /// Changes taken and not answered yet: their index in `states`.
    pending: HashMap<RequestId, usize>,
    /// The index of the latest change answered ok: the store has it.
    durable_from: usize,
}

impl Groups {
    /// Makes the addressed groups (in `store`, as a Herald of before left
    /// them) with members drawn from `audience`.
    pub fn new(audience: &mut Draw, store: &mut Store) -> Groups {
        let addressed: Vec<BTreeSet<usize>> = ADDRESSED
            .iter()
            .map(|name| {
                let members: BTreeSet<usize> =
                    (0..USERS).filter(|_| audience.chance(500)).collect();
                store.apply(Change::Group(GroupChange::Put {
                    name: name.to_string(),
                    members: members.iter().map(|&u| server::user_jid(u)).collect(),
                }));
                members
            })
            .collect();
        Groups {
            addressed,
            states: vec![None],
            pending: HashMap::new(),
            durable_from: 0,
        }
    }

    /// A group request the application sends: its body and its effect.
    pub fn request(rng: &mut Draw) -> (Vec<u8>, Effect) {
        let some_users = |rng: &mut Draw| -> BTreeSet<usize> {
            (0..USERS).filter(|_| rng.chance(400)).collect()
        };
        let jids = |users: &BTreeSet<usize>| -> Vec<String> {
            users
                .iter()
                .map(|&u| server::user_jid(u).to_string())
                .collect()
        };
        let (body, effect) = match rng.below(7) {
            0 => {
                let users = some_users(rng);
                let body = json!({"op": "group.put", "group": SCRATCH, "members": jids(&users)});
                (body, Effect::Put(users))
            }
            1 => {
                let users = some_users(rng);
                let body = json!({"op": "group.add", "group": SCRATCH, "members": jids(&users)});
                (body, Effect::Add(users))
            }
            2 => {
                let users = some_users(rng);
                let body = json!({"op": "group.remove", "group": SCRATCH, "members": jids(&users)});
                (body, Effect::Remove(users))
            }
            3 => (
                json!({"op": "group.delete", "group": SCRATCH}),
                Effect::Delete,
            ),
            4 => (
                json!({"op": "group.get", "group": SCRATCH, "limit": 2}),
                Effect::None,
            ),
            5 => (json!({"op": "group.list"}), Effect::None),
            _ => (
                json!({"op": "group.put", "group": SCRATCH, "members": ["u0@localhost/r"]}),
                Effect::None,
            ),
        };
        (body.to_string().into_bytes(), effect)
    }

    /// Herald took request `id` (live, with a reply_to) with `effect`.
    pub fn took(&mut self, id: RequestId, effect: Effect) {
        let mut group = self.states.last().cloned().flatten();
        match effect {
            Effect::None => return,
            Effect::Put(users) => group = Some(users),
            Effect::Add(users) => group.get_or_insert_default().extend(users),
            Effect::Remove(users) => match &mut group {
                Some(group) => group.retain(|u| !users.contains(u)),
                // Answered unknown_group: no change.
                None => return,
            },
            Effect::Delete => group = None,
        }
        self.states.push(group);
        self.pending.insert(id, self.states.len() - 1);
    }

    /// Herald published `publish`: an ok answer to a change makes it durable.
    pub fn on_publish(&mut self, publish: &Publish) -> Result<(), String> {
        let Destination::Reply { request, .. } = &publish.destination else {
            return Ok(());
        };
        let Some(index) = self.pending.remove(request) else {
            return Ok(());
        };
        let reply: Reply = serde_json::from_slice(&publish.payload)
            .map_err(|e| format!("a reply that is not a reply: {e}"))?;
        if reply.ok {
            self.durable_from = self.durable_from.max(index);
        } else if reply.error.as_ref().map(|e| e.code.as_str()) != Some("store_failed") {
            return Err(format!("a valid group change refused: {reply:?}"));
        }
        Ok(())
    }

    /// Herald crashed: the store must hold the scratch group as the last
    /// change answered ok left it, or as a later change did. The model
    /// starts again from what the store holds.
    pub fn on_crash(&mut self, store: &Store) -> Result<(), String> {
        let stored = store.restore().groups.members(SCRATCH).map(|members| {
            (0..USERS)
                .filter(|&u| members.contains(&server::user_jid(u)))
                .collect::<BTreeSet<usize>>()
        });
        if !self.states[self.durable_from..].contains(&stored) {
            return Err(format!(
                "after a crash the store holds group {SCRATCH} as {stored:?}, \
                 not as the change answered ok ({:?}) or a later one left it",
                self.states[self.durable_from]
            ));
        }
        self.states = vec![stored];
        self.pending.clear();
        self.durable_from = 0;
        Ok(())
    }
}
