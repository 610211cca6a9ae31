//! The whole stack for end-to-end tests: an XMPP server with users, the real
//! `herald` binary on queue and exchange names of its own, a broker
//! connection to publish jobs, and taps on Herald's presence events and
//! reports.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::amqp::{Amqp, EventTap};
use crate::c2s::XmppUser;
use crate::cut_proxy::CutProxy;
use crate::events::{await_presence, EVENT_WAIT};
use crate::herald::{Herald, Names, XmppTarget};
use crate::http;
use crate::server::XmppServer;

pub struct Stack<S> {
    pub server: S,
    pub names: Names,
    pub herald: Herald,
    pub amqp: Amqp,
    /// Herald's `presence.changed` events since the stack started.
    pub presence: EventTap,
    /// Herald's `job.report` events since the stack started.
    pub reports: EventTap,
    _dir: tempfile::TempDir,
}

impl<S: XmppServer> Stack<S> {
    /// Starts the server with `users` and Herald; returns once Herald takes jobs.
    pub async fn start(users: &[&str]) -> Stack<S> {
        Self::start_with_env(users, &[]).await
    }

    /// Like [`Stack::start`], with `HERALD_*` variables overriding Herald's config.
    pub async fn start_with_env(users: &[&str], env: &[(&str, &str)]) -> Stack<S> {
        let server = S::start(users);
        let target = XmppTarget::of(&server);
        Self::start_at(server, target, env).await
    }

    /// Herald (with a fresh store) on a server the test started, so that
    /// users can be online before Herald first connects.
    pub async fn start_on(server: S, env: &[(&str, &str)]) -> Stack<S> {
        let target = XmppTarget::of(&server);
        Self::start_at(server, target, env).await
    }

    /// Like [`Stack::start_with_env`], with Herald reaching the server's
    /// component port through a [`CutProxy`] the test can cut.
    pub async fn start_behind_proxy(users: &[&str], env: &[(&str, &str)]) -> (Stack<S>, CutProxy) {
        let server = S::start(users);
        let proxy = CutProxy::start(server.component_port()).await;
        let target = XmppTarget {
            port: proxy.port(),
            ..XmppTarget::of(&server)
        };
        (Self::start_at(server, target, env).await, proxy)
    }

    async fn start_at(server: S, target: XmppTarget, env: &[(&str, &str)]) -> Stack<S> {
        let names = Names::unique();
        let dir = tempfile::tempdir().expect("temp dir");
        let herald = Herald::start_at(&target, &names, dir.path(), env);
        let presence = EventTap::bind(&names.events, "presence.changed").await;
        let reports = EventTap::bind(&names.events, "job.report").await;
        Stack {
            amqp: Amqp::connect().await,
            server,
            names,
            herald,
            presence,
            reports,
            _dir: dir,
        }
    }

    /// Herald's configuration file, as `herald send --config` reads it.
    pub fn config_path(&self) -> &Path {
        self.herald.config_path()
    }

    pub async fn publish(&self, job: Value) {
        self.amqp.publish_json(&self.names.jobs, &job).await;
    }

    /// Publishes `job` to Herald's urgent queue.
    pub async fn publish_urgent(&self, job: Value) {
        self.amqp.publish_json(&self.names.urgent, &job).await;
    }

    /// Logs `user` in as `user@localhost/desk`, available, and returns once
    /// Herald has published the presence (so a job now reaches the user).
    pub async fn online(&mut self, user: &str) -> XmppUser {
        let client = XmppUser::login_available(&self.server, user, "desk").await;
        let jid = format!("{user}@localhost/desk");
        await_presence(&mut self.presence, &jid, Some("online")).await;
        client
    }

    /// Logs each of `users` in as `user@localhost/r`, available, and
    /// returns once Herald counts them all online.
    pub async fn online_all(&self, users: &[String]) -> Vec<XmppUser> {
        let mut clients = Vec::new();
        for user in users {
            clients.push(XmppUser::login_available(&self.server, user, "r").await);
        }
        self.wait_metric("herald_online_users", users.len() as f64)
            .await;
        clients
    }

    /// The current value of one series on Herald's /metrics.
    pub fn metric(&self, series: &str) -> f64 {
        http::value(&self.herald.metrics(), series)
    }

    /// Polls /metrics until `series` has `value`; panics after a while.
    pub async fn wait_metric(&self, series: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            let now = self.metric(series);
            if now == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed {now}, expected {value}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
