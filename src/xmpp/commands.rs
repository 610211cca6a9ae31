//! Ad-hoc commands (XEP-0050) on the wire: a `<command/>` request read
//! into a [`CommandRequest`], and the elements Herald answers with (the
//! command list for disco#items, the broadcast form, a command's status
//! with its note). What a command does is the core's
//! (`src/core/adhoc.rs`); this file only reads and writes XML.

use std::collections::HashMap;

use rxml::NcName;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::{Element, ElementBuilder};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// The namespace of ad-hoc commands, and the disco node that lists them.
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";

/// What the requester asks of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start it, or go on with the submitted form (`execute`, `next`).
    Execute,
    /// Finish with the submitted form.
    Complete,
    Cancel,
}

/// A `<command/>` as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub node: String,
    pub sessionid: Option<String>,
    pub action: Action,
    /// The submitted form's fields by `var`, each with its values.
    pub form: Option<HashMap<String, Vec<String>>>,
}

impl CommandRequest {
    /// Reads a `<command/>`; the error says what is wrong with it.
    pub fn parse(command: &Element) -> Result<CommandRequest, String> {
        let node = command
            .attr("node")
            .ok_or("the command has no node")?
            .to_string();
        let action = match command.attr("action") {
            None | Some("execute" | "next") => Action::Execute,
            Some("complete") => Action::Complete,
            Some("cancel") => Action::Cancel,
            Some(other) => return Err(format!("action {other:?} is not supported")),
        };
        let form = command
            .children()
            .find(|child| child.is("x", ns::DATA_FORMS))
            .map(|x| {
                if x.attr("type") != Some("submit") {
                    return Err("the form is not of type submit".to_string());
                }
                let mut fields = HashMap::new();
                for field in x.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
                    let var = field.attr("var").ok_or("a field has no var")?;
                    let values = field
                        .children()
                        .filter(|c| c.is("value", ns::DATA_FORMS))
                        .map(Element::text)
                        .collect();
                    fields.insert(var.to_string(), values);
                }
                Ok(fields)
            })
            .transpose()?;
        Ok(CommandRequest {
            node,
            sessionid: command.attr("sessionid").map(str::to_string),
            action,
            form,
        })
    }
}

/// Where a command stands in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Executing,
    Completed,
    Canceled,
}

/// A `<command/>` reply: its status, session, a form to fill in (while
/// executing) or a note (once done).
pub fn response(
    node: &str,
    sessionid: &str,
    status: Status,
    form: Option<Element>,
    note: Option<&str>,
) -> Element {
    let status = match status {
        Status::Executing => "executing",
        Status::Completed => "completed",
        Status::Canceled => "canceled",
    };
    let mut command = with(
        with(
            with(Element::builder("command", COMMANDS), "node", node),
            "sessionid",
            sessionid,
        ),
        "status",
        status,
    );
    if let Some(form) = form {
        let actions = with(Element::builder("actions", COMMANDS), "execute", "complete")
            .append(Element::bare("complete", COMMANDS));
        command = command.append(actions.build()).append(form);
    }
    if let Some(note) = note {
        let note = with(Element::builder("note", COMMANDS), "type", "info").append(note);
        command = command.append(note.build());
    }
    command.build()
}

/// The broadcast command's form.
pub fn broadcast_form() -> Element {
    let recipients = field("recipients", "list-single", "Recipients", true)
        .append(option("All subscribers", "all"))
        .append(option("A group", "group"))
        .append(option("The users listed below", "users"))
        .append(value("all"));
    let kind = field("type", "list-single", "Message type", true)
        .append(option("Chat", "chat"))
        .append(option("Normal", "normal"))
        .append(option("Headline", "headline"))
        .append(value("chat"));
    let form = with(Element::builder("x", ns::DATA_FORMS), "type", "form")
        .append(Element::builder("title", ns::DATA_FORMS).append("Send a broadcast"))
        .append(
            Element::builder("instructions", ns::DATA_FORMS)
                .append("Choose the recipients and write the message."),
        )
        .append(recipients)
        .append(field(
            "group",
            "text-single",
            "Group (recipients: a group)",
            false,
        ))
        .append(field(
            "users",
            "jid-multi",
            "Users (recipients: listed)",
            false,
        ))
        .append(field("subject", "text-single", "Subject", false))
        .append(field("body", "text-multi", "Message", true))
        .append(kind);
    form.build()
}

/// The disco#items answer on the commands node: `commands` as
/// `(node, name)`, each run at `jid`.
pub fn items(jid: &Jid, commands: &[(&str, &str)]) -> Element {
    let mut query = with(Element::builder("query", ns::DISCO_ITEMS), "node", COMMANDS);
    for (node, name) in commands {
        let item = with(
            with(
                with(
                    Element::builder("item", ns::DISCO_ITEMS),
                    "jid",
                    jid.to_string(),
                ),
                "node",
                *node,
            ),
            "name",
            *name,
        );
        query = query.append(item.build());
    }
    query.build()
}

/// A result carrying `payload`, answering the IQ `id` of `request_from`.
pub fn result(request_to: Jid, request_from: Jid, id: String, payload: Element) -> Iq {
    Iq::Result {
        from: Some(request_to),
        to: Some(request_from),
        id,
        payload: Some(payload),
    }
}

/// An error with a text saying what went wrong.
pub fn error(
    request_to: Jid,
    request_from: Jid,
    id: String,
    condition: DefinedCondition,
    text: &str,
) -> Iq {
    let type_ = match condition {
        DefinedCondition::Forbidden => ErrorType::Auth,
        DefinedCondition::BadRequest => ErrorType::Modify,
        _ => ErrorType::Cancel,
    };
    let error = StanzaError::new(type_, condition, "en", text);
    Iq::from_error(id, error)
        .with_from(request_to)
        .with_to(request_from)
}

fn field(var: &str, kind: &str, label: &str, required: bool) -> ElementBuilder {
    let field = with(
        with(
            with(Element::builder("field", ns::DATA_FORMS), "var", var),
            "type",
            kind,
        ),
        "label",
        label,
    );
    if required {
        field.append(Element::bare("required", ns::DATA_FORMS))
    } else {
        field
    }
}

fn option(label: &str, value_: &str) -> Element {
    with(Element::builder("option", ns::DATA_FORMS), "label", label)
        .append(value(value_))
        .build()
}

fn value(text: &str) -> Element {
    Element::builder("value", ns::DATA_FORMS)
        .append(text)
        .build()
}

/// `builder` with the attribute `name` (a literal XML name) set to `value`.
fn with(builder: ElementBuilder, name: &'static str, value: impl Into<String>) -> ElementBuilder {
    let name = NcName::try_from(name).expect("a literal XML name");
    builder.attr(name, value.into())
}
