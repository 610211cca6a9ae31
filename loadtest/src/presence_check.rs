//! The paper's Table III, presence row: once the churn has stopped and
//! settled, Herald is asked (`herald presence`, the control plane) about
//! every user of the run, and its answer is compared with who is really
//! logged in: the swarm's users online (available, or away for the first
//! `away`), the churners offline, as the run meant it; and each user
//! Herald places otherwise is asked about at the server itself, which has
//! the last word (a churner's last logout may still be on its way), then,
//! if the server says otherwise than Herald did, Herald again.

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

impl Answer {
    fn look(&self) -> Expected {
        Expected {
            online: self.online,
            available: self.available,
        }
    }
}

/// How long the server's own view of a user is collected for.
const SERVER_VIEW: Duration = Duration::from_secs(3);

/// The resource the server's view of a user is asked from.
const CHECK_RESOURCE: &str = "presence-check";

/// At most this many users Herald places differently from the run's
/// expectation are asked about at the server, at once; the others count
/// as wrong.
const ASKED: usize = 200;

/// How many of `users` Herald placed wrongly, after waiting until it counts
/// as many online resources as are expected online (or [`SETTLE`]): those
/// it places otherwise than the run expects and than the server itself
/// does. None for a component that cannot be asked.
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
    let jids: Vec<&str> = users.iter().map(|(jid, _)| jid.as_str()).collect();
    let answers = match ask(component, &jids).await? {
        Ok(answers) => answers,
        Err(e) => return Some(Err(e)),
    };
    let disagreeing: Vec<_> = users
        .iter()
        .zip(&answers)
        .filter(|((jid, expected), answer)| answer.jid != *jid || answer.look() != *expected)
        .collect();
    // The run's expectation is what the load test meant to happen; who is
    // really logged in is the server's to say. Each user Herald places
    // differently is asked about at the server (at most ASKED of them):
    // Herald is wrong unless the server says what Herald said.
    let views = futures_util::future::join_all(
        disagreeing
            .iter()
            .take(ASKED)
            .map(|((jid, _), _)| server_view(server, jid)),
    )
    .await;
    // Herald was asked before the server: one it contradicts is asked
    // again, after the server answered. Saying now what the server said
    // is Herald having followed a presence that was still on its way;
    // still saying otherwise is Herald being wrong.
    let contradicted: Vec<&str> = disagreeing
        .iter()
        .zip(&views)
        .filter(|((_, answer), view)| !matches!(view, Ok(view) if *view == answer.look()))
        .map(|(((jid, _), _), _)| jid.as_str())
        .collect();
    let again = if contradicted.is_empty() {
        Vec::new()
    } else {
        match ask(component, &contradicted).await? {
            Ok(answers) => answers,
            Err(e) => return Some(Err(e)),
        }
    };
    let mut wrong = disagreeing.len().saturating_sub(ASKED);
    for (((jid, expected), answer), view) in disagreeing.iter().zip(&views) {
        let herald = answer.look();
        let later = again.iter().find(|a| a.jid == *jid).map(Answer::look);
        let verdict = match view {
            Ok(view) if *view == herald => "Herald is right",
            Ok(view) if later == Some(*view) => "Herald followed it when asked again",
            _ => {
                wrong += 1;
                "Herald is wrong"
            }
        };
        eprintln!(
            "  {jid}: expected {expected:?}, Herald said {herald:?} (for {}), the server {}{}: {verdict}",
            answer.jid,
            match view {
                Ok(view) => format!("{view:?}"),
                Err(e) => e.clone(),
            },
            later.map_or(String::new(), |later| format!(", Herald asked again {later:?}")),
        );
    }
    if wrong > 0 {
        // An element Herald could not read would have been logged so.
        for level in ["WARN", "ERROR"] {
            for line in component.log_lines_with(level).iter().take(20) {
                eprintln!("  Herald logged: {line}");
            }
        }
    }
    Some(Ok(wrong))
}

/// Herald's answer for each of `jids` (`herald presence`), in order; `None`
/// for a component that cannot be asked.
async fn ask(component: &Component, jids: &[&str]) -> Option<Result<Vec<Answer>, String>> {
    let mut args = vec!["presence".to_string(), "--timeout".into(), "60".into()];
    args.extend(jids.iter().map(|jid| jid.to_string()));
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
    if reply.result.users.len() != jids.len() {
        return Some(Err(format!(
            "herald presence answered {} of {} users",
            reply.result.users.len(),
            jids.len()
        )));
    }
    Some(Ok(reply.result.users))
}

/// How the server itself has the user's load-test resource: a session of
/// the user's own that comes online is sent the presence of every other
/// resource of theirs that is online (RFC 6121, 4.2.2).
async fn server_view(server: &dyn XmppServer, jid: &str) -> Result<Expected, String> {
    let (user, _) = jid.split_once('@').unwrap_or((jid, ""));
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
        Ok(Err(e)) => return Err(format!("could not be asked ({e})")),
        Err(_) => return Err("could not be asked (no login in time)".into()),
    };
    session.send_presence(None, 0).await;
    session.collect_messages(SERVER_VIEW).await;
    let resource = format!("{}/{RESOURCE}", session.bare_jid());
    let last = session
        .presences()
        .iter()
        .rfind(|p| p.attr("from") == Some(resource.as_str()))
        .cloned();
    session.disconnect().await;
    Ok(match last {
        Some(presence) if presence.attr("type").is_none() => {
            let show = presence
                .children()
                .find(|child| child.name() == "show")
                .map(|show| show.text());
            Expected {
                online: true,
                available: matches!(show.as_deref(), None | Some("chat")),
            }
        }
        _ => Expected {
            online: false,
            available: false,
        },
    })
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
