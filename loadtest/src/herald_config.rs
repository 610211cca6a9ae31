//! Herald's config file for a load-test run, generated from the XMPP
//! target, the run's AMQP names and the few settings runs change.

use std::path::Path;

use crate::broker::Names;
use crate::component::XmppTarget;

/// What goes into Herald's generated config: info logging, HTTP on a free
/// port, presence events as asked; `None` keeps Herald's default.
pub struct HeraldConfig<'a> {
    pub xmpp: &'a XmppTarget,
    pub amqp_url: &'a str,
    pub names: &'a Names,
    /// `amqp.prefetch`.
    pub prefetch: Option<u32>,
    pub presence_events: bool,
    /// `xmpp.probe_settle_ms`.
    pub probe_settle_ms: Option<u64>,
    /// `broadcast.max_recipients`.
    pub max_recipients: Option<u64>,
}

impl HeraldConfig<'_> {
    /// The config file, with Herald's store at `store`.
    pub fn text(&self, store: &Path) -> String {
        let optional = |key: &str, value: Option<u64>| {
            value.map(|v| format!("{key} = {v}\n")).unwrap_or_default()
        };
        format!(
            r#"[xmpp]
host = "{host}"
port = {port}
domain = "{domain}"
server_domain = "{server_domain}"
secret = "{secret}"
{probe_settle_ms}
[amqp]
url = "{url}"
jobs_queue = "{jobs}"
dead_letter_queue = "{dead}"
events_exchange = "{events}"
presence_events = {presence_events}
{prefetch}
[broadcast]
{max_recipients}
[http]
listen = "127.0.0.1:0"

[store]
path = "{store}"

[log]
level = "info"
"#,
            host = self.xmpp.host,
            port = self.xmpp.port,
            domain = self.xmpp.domain,
            server_domain = self.xmpp.server_domain,
            secret = self.xmpp.secret,
            probe_settle_ms = optional("probe_settle_ms", self.probe_settle_ms),
            url = self.amqp_url,
            jobs = self.names.jobs,
            dead = self.names.dead,
            events = self.names.events,
            presence_events = self.presence_events,
            prefetch = optional("prefetch", self.prefetch.map(u64::from)),
            max_recipients = optional("max_recipients", self.max_recipients),
            store = store.display(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            jobs: "run.jobs".into(),
            dead: "run.jobs.dead".into(),
            events: "run.events".into(),
            reports: "run.reports".into(),
        }
    }

    fn xmpp() -> XmppTarget {
        XmppTarget {
            host: "127.0.0.1".into(),
            port: 5347,
            domain: "broadcast.localhost".into(),
            server_domain: "localhost".into(),
            secret: "s3cret".into(),
        }
    }

    #[test]
    fn herald_config_leaves_out_what_is_not_set() {
        let (xmpp, names) = (xmpp(), names());
        let config = HeraldConfig {
            xmpp: &xmpp,
            amqp_url: "amqp://127.0.0.1",
            names: &names,
            prefetch: None,
            presence_events: false,
            probe_settle_ms: None,
            max_recipients: None,
        };
        let text = config.text(Path::new("/tmp/x/herald.redb"));
        let toml: toml::Table = text.parse().unwrap();
        assert_eq!(toml["xmpp"]["port"].as_integer(), Some(5347));
        assert_eq!(toml["xmpp"]["domain"].as_str(), Some("broadcast.localhost"));
        assert_eq!(toml["xmpp"].get("probe_settle_ms"), None);
        assert_eq!(toml["amqp"]["jobs_queue"].as_str(), Some("run.jobs"));
        assert_eq!(toml["amqp"]["events_exchange"].as_str(), Some("run.events"));
        assert_eq!(toml["amqp"]["presence_events"].as_bool(), Some(false));
        assert_eq!(toml["amqp"].get("prefetch"), None);
        assert_eq!(toml["broadcast"].as_table().map(|t| t.len()), Some(0));
        assert_eq!(toml["store"]["path"].as_str(), Some("/tmp/x/herald.redb"));
    }

    #[test]
    fn herald_config_has_what_is_set() {
        let (xmpp, names) = (xmpp(), names());
        let config = HeraldConfig {
            xmpp: &xmpp,
            amqp_url: "amqp://127.0.0.1",
            names: &names,
            prefetch: Some(64),
            presence_events: true,
            probe_settle_ms: Some(100),
            max_recipients: Some(200_000),
        };
        let toml: toml::Table = config.text(Path::new("s")).parse().unwrap();
        assert_eq!(toml["xmpp"]["probe_settle_ms"].as_integer(), Some(100));
        assert_eq!(toml["amqp"]["prefetch"].as_integer(), Some(64));
        assert_eq!(toml["amqp"]["presence_events"].as_bool(), Some(true));
        assert_eq!(
            toml["broadcast"]["max_recipients"].as_integer(),
            Some(200_000)
        );
    }
}
