//! The paper's Table III, presence row: once the churn has stopped and
//! settled, Herald is asked (`herald presence`, the control plane) about
//! every user of the run, and its answer is compared with who is really
//! logged in: the swarm's users online (available, or away for the first
//! `away`), the churners offline.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::component::Component;

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
    let wrong = users
        .iter()
        .zip(&reply.result.users)
        .filter(|((jid, expected), answer)| {
            answer.jid != *jid
                || answer.online != expected.online
                || answer.available != expected.available
        })
        .count();
    Some(Ok(wrong))
}
