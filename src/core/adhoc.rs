//! Ad-hoc commands (XEP-0050) for the operators of `xmpp.admins`: send a
//! broadcast, list the online users, list the groups. Anyone else is
//! refused with `forbidden` and sees no commands (as Prosody and ejabberd
//! list only the commands a user may run).
//!
//! A broadcast is a job like any other: the core queues its JSON on the
//! urgent jobs queue (an operator's announcement goes before the
//! applications' jobs) with a confirm, and tells the operator "queued as
//! job …" only once the broker confirmed it; the job then comes back as a
//! delivery, is fanned out, and its report goes to the events exchange.

use std::collections::{BTreeMap, HashMap};

use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::DefinedCondition;

use super::io::{Destination, Lane, Output, Publish};
use super::Core;
use crate::broadcast::job::{MessageKind, RawJob};
use crate::handler::Handler;
use crate::xmpp::commands::{self, Action, CommandRequest, Status};

const BROADCAST: &str = "broadcast";
const ONLINE: &str = "online-users";
const GROUPS: &str = "groups";
/// The commands, as `(node, name)`.
const LIST: [(&str, &str); 3] = [
    (BROADCAST, "Send a broadcast"),
    (ONLINE, "Online users"),
    (GROUPS, "Groups"),
];
/// Names listed at most by the online users and groups commands.
const LISTED: usize = 50;
/// Broadcast forms open at once; a new one closes the oldest.
const OPEN_SESSIONS: usize = 64;
/// Why anyone not in `xmpp.admins` is refused.
const FORBIDDEN: &str = "only Herald's operators (xmpp.admins) may run its commands";

/// Open broadcast forms and the broadcasts waiting for their confirm.
#[derive(Debug, Default)]
pub(super) struct Adhoc {
    /// By number: the oldest first. Each belongs to the full JID that opened it.
    sessions: BTreeMap<u64, Jid>,
    next: u64,
    /// By publish id.
    queued: HashMap<u64, Queued>,
}

/// A broadcast's job published, and whom to tell once it is confirmed.
#[derive(Debug)]
struct Queued {
    generation: u64,
    admin: Jid,
    iq: String,
    sessionid: String,
    job: String,
}

/// Where a command request came from and went to, and its IQ id.
struct Asked {
    from: Jid,
    to: Jid,
    id: String,
}

impl Asked {
    fn error(self, condition: DefinedCondition, text: &str) -> Iq {
        commands::error(self.to, self.from, self.id, condition, text)
    }

    fn answer(self, payload: Element) -> Iq {
        commands::result(self.to, self.from, self.id, payload)
    }
}

impl<H: Handler> Core<H> {
    /// disco#items on the commands node: the commands, to an admin only.
    pub(super) fn command_items(&self, from: Jid, to: Jid, id: String) -> Iq {
        let listed: &[(&str, &str)] = if self.settings.is_admin(&from.to_bare()) {
            &LIST
        } else {
            &[]
        };
        let items = commands::items(&to, listed);
        commands::result(to, from, id, items)
    }

    /// disco#info on a command's node (XEP-0050 §2.3), if `node` is one:
    /// what it is, to an admin; `forbidden` to others, as for executing it.
    pub(super) fn command_info(&self, from: Jid, to: Jid, id: String, node: &str) -> Option<Iq> {
        let (node, name) = LIST.into_iter().find(|(listed, _)| *listed == node)?;
        if !self.settings.is_admin(&from.to_bare()) {
            let asked = Asked { from, to, id };
            return Some(asked.error(DefinedCondition::Forbidden, FORBIDDEN));
        }
        let info = DiscoInfoResult {
            node: Some(node.to_string()),
            identities: vec![Identity::new("automation", "command-node", "en", name)],
            features: [commands::COMMANDS, ns::DATA_FORMS]
                .map(str::to_string)
                .into(),
            extensions: Vec::new(),
        };
        Some(Iq::from_result(id, Some(info)).with_from(to).with_to(from))
    }

    /// A `<command/>` set: the answer now, or None when it waits for the
    /// broker's confirm of a broadcast.
    pub(super) fn on_command(
        &mut self,
        from: Jid,
        to: Jid,
        id: String,
        payload: &Element,
    ) -> Option<Iq> {
        let asked = Asked { from, to, id };
        if !self.settings.is_admin(&asked.from.to_bare()) {
            return Some(asked.error(DefinedCondition::Forbidden, FORBIDDEN));
        }
        let request = match CommandRequest::parse(payload) {
            Ok(request) => request,
            Err(e) => return Some(asked.error(DefinedCondition::BadRequest, &e)),
        };
        let note = match request.node.as_str() {
            BROADCAST => return self.broadcast(asked, &request),
            ONLINE => self.online_note(),
            GROUPS => self.groups_note(),
            _ => return Some(asked.error(DefinedCondition::ItemNotFound, "no such command")),
        };
        // One stage: completed at once, in a session of its own (every
        // response carries one) that nothing needs to remember.
        let sessionid = self.next_sessionid();
        let done = commands::response(
            &request.node,
            &sessionid,
            Status::Completed,
            None,
            Some(&note),
        );
        Some(asked.answer(done))
    }

    fn broadcast(&mut self, asked: Asked, request: &CommandRequest) -> Option<Iq> {
        let Some(sessionid) = &request.sessionid else {
            if request.action == Action::Cancel {
                let text = "nothing to cancel: no session";
                return Some(asked.error(DefinedCondition::BadRequest, text));
            }
            let sessionid = self.open_session(asked.from.clone());
            let form = commands::broadcast_form();
            let response =
                commands::response(BROADCAST, &sessionid, Status::Executing, Some(form), None);
            return Some(asked.answer(response));
        };
        let owner = self
            .session_number(sessionid)
            .and_then(|n| self.adhoc.sessions.get(&n));
        if owner != Some(&asked.from) {
            let text = "unknown or expired session: execute the command again";
            return Some(asked.error(DefinedCondition::BadRequest, text));
        }
        if request.action == Action::Cancel {
            self.close_session(sessionid);
            let response = commands::response(BROADCAST, sessionid, Status::Canceled, None, None);
            return Some(asked.answer(response));
        }
        let Some(form) = &request.form else {
            let text = "submit the form to send the broadcast";
            return Some(asked.error(DefinedCondition::BadRequest, text));
        };
        let job = match self.job_of(format!("adhoc-{sessionid}"), form) {
            Ok(job) => job,
            Err(e) => return Some(asked.error(DefinedCondition::BadRequest, &e)),
        };
        let Some(generation) = self.broker.live() else {
            let text = "Herald has no broker connection now: try again later";
            return Some(asked.error(DefinedCondition::ServiceUnavailable, text));
        };
        let payload = serde_json::to_vec(&job).expect("a job serializes");
        let destination = Destination::Job { lane: Lane::Urgent };
        let publish = self.broker.confirmable(generation, destination, payload);
        let id = publish.id.expect("a confirmable publish has an id");
        self.close_session(sessionid);
        self.adhoc.queued.insert(
            id,
            Queued {
                generation,
                admin: asked.from,
                iq: asked.id,
                sessionid: sessionid.clone(),
                job: job.id,
            },
        );
        self.out.push_back(Output::Publish(publish));
        None
    }

    /// Publish `id` is confirmed: if it queued a broadcast, the operator
    /// hears so.
    pub(super) fn on_adhoc_confirmed(&mut self, id: u64) {
        let Some(queued) = self.adhoc.queued.remove(&id) else {
            return;
        };
        let note = format!("queued as job {}", queued.job);
        let response = commands::response(
            BROADCAST,
            &queued.sessionid,
            Status::Completed,
            None,
            Some(&note),
        );
        let from = Jid::from(self.settings.domain.clone());
        self.send_command_answer(commands::result(from, queued.admin, queued.iq, response));
    }

    /// The broker refused `publish`: if it queued a broadcast, the
    /// operator gets an error (to send it again) and it is not retried.
    pub(super) fn on_adhoc_refused(&mut self, publish: &Publish) -> bool {
        let Some(queued) = publish.id.and_then(|id| self.adhoc.queued.remove(&id)) else {
            return false;
        };
        self.refuse_queued(
            queued,
            "the broker refused the broadcast's job: send it again",
        );
        true
    }

    /// Broadcasts of a lost connection may or may not have reached the
    /// queue: their operators are told so.
    pub(super) fn on_adhoc_broker_lost(&mut self, generation: u64) {
        let lost: Vec<u64> = (self.adhoc.queued.iter())
            .filter(|(_, queued)| queued.generation == generation)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(queued) = self.adhoc.queued.remove(&id) {
                let text =
                    "the broker connection was lost before it confirmed the broadcast's job: \
                            it may or may not be queued (its report says)";
                self.refuse_queued(queued, text);
            }
        }
    }

    fn refuse_queued(&mut self, queued: Queued, text: &str) {
        let from = Jid::from(self.settings.domain.clone());
        let condition = DefinedCondition::ServiceUnavailable;
        self.send_command_answer(commands::error(
            from,
            queued.admin,
            queued.iq,
            condition,
            text,
        ));
    }

    fn send_command_answer(&mut self, iq: Iq) {
        if self.phase.has_stream() {
            self.out.push_back(Output::Stanza(iq.into()));
        }
    }

    /// The job a submitted broadcast form asks for.
    fn job_of(&self, id: String, form: &HashMap<String, Vec<String>>) -> Result<RawJob, String> {
        let one = |var: &str| {
            form.get(var)
                .and_then(|values| values.first())
                .map(|v| v.trim())
        };
        let body = form
            .get("body")
            .map(|lines| lines.join("\n"))
            .unwrap_or_default();
        if body.trim().is_empty() {
            return Err("the message (body) is empty".into());
        }
        let kind = match one("type").unwrap_or("chat") {
            "chat" => MessageKind::Chat,
            "normal" => MessageKind::Normal,
            "headline" => MessageKind::Headline,
            other => return Err(format!("type {other:?} is none of chat, normal, headline")),
        };
        let mut job = RawJob {
            id,
            to: Vec::new(),
            body,
            subject: one("subject").filter(|s| !s.is_empty()).map(str::to_string),
            kind,
            from: None,
            policy: Default::default(),
            expires_at: None,
            storage: Default::default(),
            groups: Vec::new(),
            all_subscribers: false,
            report_names: false,
            deliver_within_secs: None,
            receipts: false,
        };
        match one("recipients") {
            Some("all") => job.all_subscribers = true,
            Some("group") => {
                let name = one("group").unwrap_or_default();
                if self.groups.members(name).is_none() {
                    return Err(format!("there is no group named {name:?}"));
                }
                job.groups.push(name.to_string());
            }
            Some("users") => {
                for jid in form.get("users").into_iter().flatten() {
                    match BareJid::new(jid.trim()) {
                        Ok(user) if user.node().is_some() => job.to.push(user.to_string()),
                        _ => return Err(format!("{jid:?} is not a user's bare JID")),
                    }
                }
                if job.to.is_empty() {
                    return Err("list at least one user".into());
                }
            }
            other => return Err(format!("recipients {other:?} is none of all, group, users")),
        }
        Ok(job)
    }

    /// The control plane's first page of online users, as a note.
    fn online_note(&self) -> String {
        let page = self.online(LISTED, None);
        let mut note = format!("{} users online, {} available", page.online, page.available);
        let listed: Vec<&str> = page.users.iter().map(|user| user.jid.as_str()).collect();
        append_list(&mut note, &listed, page.online);
        note
    }

    fn groups_note(&self) -> String {
        let (groups, _) = self.groups.list(LISTED, None);
        let listed: Vec<String> = (groups.iter())
            .map(|(name, size)| format!("{name} ({size} members)"))
            .collect();
        let total = self.groups.len();
        let mut note = format!("{total} groups");
        append_list(&mut note, &listed, total);
        note
    }

    fn open_session(&mut self, owner: Jid) -> String {
        let sessionid = self.next_sessionid();
        self.adhoc.sessions.insert(self.adhoc.next, owner);
        if self.adhoc.sessions.len() > OPEN_SESSIONS {
            self.adhoc.sessions.pop_first();
        }
        sessionid
    }

    /// A session id no earlier one had, in this run or another.
    fn next_sessionid(&mut self) -> String {
        self.adhoc.next += 1;
        format!("{}-{}", self.settings.run, self.adhoc.next)
    }

    fn session_number(&self, sessionid: &str) -> Option<u64> {
        let number = sessionid
            .strip_prefix(&self.settings.run)?
            .strip_prefix('-')?;
        number.parse().ok()
    }

    fn close_session(&mut self, sessionid: &str) {
        if let Some(number) = self.session_number(sessionid) {
            self.adhoc.sessions.remove(&number);
        }
    }
}

/// `names` (the first of `total`) after `note`, one a line.
fn append_list(note: &mut String, names: &[impl AsRef<str>], total: usize) {
    for name in names {
        note.push('\n');
        note.push_str(name.as_ref());
    }
    if total > names.len() {
        note.push_str(&format!("\n… and {} more", total - names.len()));
    }
}
