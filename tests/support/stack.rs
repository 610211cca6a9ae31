//! The whole stack for producer-side tests: a Prosody with users, the real
//! `herald` binary on its own queue and exchange names, and a tap on its
//! presence events to know when Herald has seen a user come online.

use std::path::Path;
use std::time::Duration;

use super::amqp::EventTap;
use super::herald::{Herald, Names};
use super::prosody::Prosody;
use super::user::XmppUser;

pub struct Stack {
    pub prosody: Prosody,
    pub names: Names,
    pub herald: Herald,
    presence: EventTap,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Starts Prosody with `users` and Herald; returns once Herald takes jobs.
    pub async fn start(users: &[&str]) -> Stack {
        let prosody = Prosody::start(users);
        let names = Names::unique();
        let dir = tempfile::tempdir().expect("temp dir");
        let herald = Herald::start(&prosody, &names, dir.path());
        let presence = EventTap::bind(&names.events, "presence.changed").await;
        Stack {
            prosody,
            names,
            herald,
            presence,
            _dir: dir,
        }
    }

    /// Herald's configuration file, as `herald send --config` reads it.
    pub fn config_path(&self) -> &Path {
        self.herald.config_path()
    }

    /// Logs `user` in as `user@localhost/desk`, available, and returns once
    /// Herald has published the presence (so a job now reaches the user).
    pub async fn online(&mut self, user: &str) -> XmppUser {
        let client = XmppUser::login_available(&self.prosody, user, "desk").await;
        let jid = format!("{user}@localhost/desk");
        let seen = self
            .presence
            .next_matching("presence.changed", Duration::from_secs(20), |event| {
                event["jid"] == jid.as_str() && event["available"] == true
            })
            .await;
        assert!(seen.is_some(), "Herald did not see {jid} come online");
        client
    }
}
