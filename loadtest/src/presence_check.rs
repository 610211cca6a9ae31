//! The paper's Table III, presence row: once the churn has stopped and
//! settled, Herald is asked (`herald presence`, the control plane) about
//! every user of the run, and its answer is compared with who is really
//! logged in: the swarm's users online (available, or away for the first
//! `away`), the churners offline.

use std::time::{Duration, Instant};

use serde::Deserialize;

use herald_testkit::c2s::raw::RESOURCE;
use herald_testkit::c2s::XmppUser;

use crate::component::Component;
use crate::report::RunResult;
use crate::run::RunSpec;
use crate::servers::Population;
use herald_testkit::server::XmppServer;

/// How long the component may take to see the churners' last logouts.
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub online: bool,
    pub available: bool,
}

#[derive(Deserialize)]
struct Reply {
    result: Users,
}

#[derive(Deserialize)]
struct Users {
    users: Vec<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    jid: String,
    #[serde(default)]
    online: bool,
    #[serde(default)]
    available: bool,
}

/// How long the server's own view of a user is collected for.
const SERVER_VIEW: Duration = Duration::from_secs(3);

/// The resource the server's view of a user is asked from.
const CHECK_RESOURCE: &str = "presence-check";

/// How many of `users` Herald placed wrongly, after waiting until it counts
/// as many online resources as are expected online (or [`SETTLE`]); None
/// for a component that cannot be asked.
pub async fn wrong(
    server: &dyn XmppServer,
    component: &Component,
    users: &[(String, Expected)],
) -> Option<Result<usize, String>> {
    let online = users.iter().filter(|(_, e)| e.online).count();
    let deadline = Instant::now() + SETTLE;
    let mut seen = None;
    while Instant::now() < deadline {
        match component.metric("herald_online_resources").await {
            Ok(Some(count)) if count as usize == online => {
                seen = None;
                break;
            }
            Ok(count) => {
                seen = count;
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Some(Err(e)),
        }
    }
    if let Some(count) = seen {
        eprintln!(
            "  after {SETTLE:?} Herald still counted {count} online resources, {online} expected"
        );
    }
    let mut args = vec!["presence".to_string(), "--timeout".into(), "60".into()];
    args.extend(users.iter().map(|(jid, _)| jid.clone()));
    let printed = match component.herald_command(&args).await? {
        Ok(printed) => printed,
        Err(e) => return Some(Err(e)),
    };
    let reply: Reply = match serde_json::from_str(&printed) {
        Ok(reply) => reply,
        Err(e) => {
            return Some(Err(format!(
                "herald presence printed no answer ({e}): {printed}"
            )))
        }
    };
    if reply.result.users.len() != users.len() {
        return Some(Err(format!(
            "herald presence answered {} of {} users",
            reply.result.users.len(),
            users.len()
        )));
    }
    let wrong: Vec<_> = users
        .iter()
        .zip(&reply.result.users)
        .filter(|((jid, expected), answer)| {
            answer.jid != *jid
                || answer.online != expected.online
                || answer.available != expected.available
        })
        .collect();
    // Who, and what the server itself says of them, for whoever looks into
    // a disagreement.
    for ((jid, expected), answer) in wrong.iter().take(10) {
        let (local, _) = jid.split_once('@').unwrap_or((jid, ""));
        eprintln!(
            "  {jid}: expected online {} available {}, Herald said {} online {} available {}; \
             the server: {}",
            expected.online,
            expected.available,
            answer.jid,
            answer.online,
            answer.available,
            server_view(server, local).await
        );
    }
    if !wrong.is_empty() {
        // An element Herald could not read would have been logged so.
        for level in ["WARN", "ERROR"] {
            for line in component.log_lines_with(level).iter().take(20) {
                eprintln!("  Herald logged: {line}");
            }
        }
    }
    Some(Ok(wrong.len()))
}

/// Whether the server itself has the user's load-test resource online: a
/// session of the user's own that comes online is sent the presence of
/// every other resource of theirs that is (RFC 6121, 4.2.2).
async fn server_view(server: &dyn XmppServer, user: &str) -> String {
    let addr = server.c2s_addr();
    let login = XmppUser::connect(
        &addr,
        server.domain(),
        user,
        server.password(user),
        CHECK_RESOURCE,
    );
    let mut session = match tokio::time::timeout(SERVER_VIEW * 10, login).await {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => return format!("could not log in to ask ({e})"),
        Err(_) => return "could not log in to ask (timed out)".into(),
    };
    session.send_presence(None, 0).await;
    session.collect_messages(SERVER_VIEW).await;
    let resource = format!("{}/{RESOURCE}", session.bare_jid());
    let last = session
        .presences()
        .iter()
        .filter(|p| p.attr("from") == Some(resource.as_str()))
        .next_back()
        .map(|p| p.attr("type").unwrap_or("available").to_string());
    session.disconnect().await;
    match last {
        Some(kind) => format!("{RESOURCE} resource {kind}"),
        None => format!("{RESOURCE} resource not online"),
    }
}

/// Once the churn has stopped: whether Herald places every user right,
/// recorded in `result` (nothing for a component that cannot be asked).
pub async fn record(
    result: &mut RunResult,
    population: &Population,
    spec: &RunSpec,
    server: &dyn XmppServer,
    component: &Component,
) -> Result<(), String> {
    let swarm = population.users.iter().enumerate().map(|(i, user)| {
        let expected = Expected {
            online: true,
            available: i >= spec.away,
        };
        (server.jid(user), expected)
    });
    let gone = Expected {
        online: false,
        available: false,
    };
    let churners = population
        .churners
        .iter()
        .map(|user| (server.jid(user), gone));
    let users: Vec<(String, Expected)> = swarm.chain(churners).collect();
    if let Some(wrong) = wrong(server, component, &users).await {
        let wrong = wrong?;
        eprintln!(
            "  presence once the churn settled: {} of {} users placed right",
            users.len() - wrong,
            users.len()
        );
        result.presence_asked = Some(users.len());
        result.presence_wrong = Some(wrong);
    }
    Ok(())
}
