//! The paper's Table III, presence row: once the churn has stopped and
//! settled, Herald is asked (`herald presence`, the control plane) about
//! every user of the run, and its answer is compared with who is really
//! logged in: the swarm's users online (available, or away for the first
//! `away`), the churners offline.

use std::time::{Duration, Instant};

use serde::Deserialize;

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

/// How many of `users` Herald placed wrongly, after waiting until it counts
/// as many online resources as are expected online (or [`SETTLE`]); None
/// for a component that cannot be asked.
pub async fn wrong(
    component: &Component,
    users: &[(String, Expected)],
) -> Option<Result<usize, String>> {
    let online = users.iter().filter(|(_, e)| e.online).count();
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        match component.metric("herald_online_resources").await {
            Ok(Some(seen)) if seen as usize == online => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Some(Err(e)),
        }
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
    // Who, for whoever looks into a disagreement.
    for ((jid, expected), answer) in wrong.iter().take(10) {
        eprintln!(
            "  {jid}: expected online {} available {}, Herald said {} online {} available {}",
            expected.online, expected.available, answer.jid, answer.online, answer.available
        );
    }
    Some(Ok(wrong.len()))
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
    if let Some(wrong) = wrong(component, &users).await {
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
