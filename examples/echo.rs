//! A different component on Herald's plumbing: it echoes every chat sent to
//! it, answers a custom IQ, and sends the text of each AMQP job to everyone
//! who has chatted with it and is online now. Run it like Herald:
//!
//! ```text
//! HERALD_XMPP__SECRET=... cargo run --example echo -- herald.toml
//! ```

use herald::handler::{Context, Event, Handler, JobOutcome, Tally};
use std::collections::BTreeSet;

use herald::presence::{Policy, Reachability};
use herald::Config;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Lang, Message, MessageType};
use xmpp_parsers::version::VersionResult;

#[derive(Default)]
struct Echo {
    /// Users who have written to the component: state the handler owns.
    correspondents: BTreeSet<BareJid>,
}

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, message: &Message) {
        let (Some(from), Some(to), Some(body)) =
            (&message.from, &message.to, message.bodies.values().next())
        else {
            return;
        };
        self.correspondents.insert(from.to_bare());
        let mut reply = Message::new(Some(Jid::from(from.to_bare())));
        reply.from = Some(to.clone());
        reply.type_ = MessageType::Chat;
        reply
            .bodies
            .insert(Lang::default(), format!("echo: {body}"));
        ctx.send(reply);
    }

    fn on_iq(&mut self, _ctx: &mut Context<'_>, iq: &Iq) -> Option<Iq> {
        // XEP-0092 software version; everything else gets service-unavailable.
        let Iq::Get {
            from,
            to,
            id,
            payload,
        } = iq
        else {
            return None;
        };
        if !payload.is("query", xmpp_parsers::ns::VERSION) {
            return None;
        }
        let version = VersionResult {
            name: "echo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            os: None,
        };
        let mut reply = Iq::from_result(id.clone(), Some(version));
        if let (Some(from), Some(to)) = (from, to) {
            reply = reply.with_from(to.clone()).with_to(from.clone());
        }
        Some(reply)
    }

    fn on_job(&mut self, ctx: &mut Context<'_>, payload: &[u8]) -> JobOutcome {
        let Ok(text) = std::str::from_utf8(payload) else {
            return JobOutcome::DeadLetter {
                reason: "payload is not UTF-8".into(),
            };
        };
        if text.chars().any(char::is_control) {
            return JobOutcome::DeadLetter {
                reason: "control characters are not allowed".into(),
            };
        }
        let Ok(from) = BareJid::new(&format!("echo@{}", ctx.domain())) else {
            return JobOutcome::DeadLetter {
                reason: "component domain has no room for echo@".into(),
            };
        };
        let online: Vec<BareJid> = self
            .correspondents
            .iter()
            .filter(|user| {
                ctx.presence().reachability(*user, Policy::Online) == Reachability::Deliver
            })
            .cloned()
            .collect();
        for user in &online {
            let mut message = Message::new(Some(Jid::from(user.clone())));
            message.from = Some(Jid::from(from.clone()));
            message.type_ = MessageType::Chat;
            message.bodies.insert(Lang::default(), text.to_string());
            ctx.send(message);
        }
        JobOutcome::Done {
            report: Some(Event::json(
                "echo.done",
                &serde_json::json!({"sent": online.len()}),
            )),
            names: Vec::new(),
            deferral: None,
            tally: Tally {
                sent: online.len() as u64,
                ..Tally::default()
            },
            // Echo jobs carry no id: every one is new.
            key: None,
        }
    }

    fn features(&self) -> Vec<&'static str> {
        vec![xmpp_parsers::ns::VERSION]
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    let path = std::env::args().nth(1).map(std::path::PathBuf::from);
    let config = Config::load(path.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(herald::run_with(config, Echo::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    Ok(())
}
