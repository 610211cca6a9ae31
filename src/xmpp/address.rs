//! The XMPP server nodes Herald may connect to: `xmpp.host` and
//! `xmpp.port` (one server) or `xmpp.servers` (the nodes of one cluster
//! serving the same domain), checked once at start; the dialer tries them
//! in turn ([`crate::rotation`]).

use std::fmt;

use crate::config::XmppConfig;

/// The component listener when the configuration names none.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Prosody's and ejabberd's usual component port.
pub const DEFAULT_PORT: u16 = 5347;

/// One node's component listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    host: String,
    port: u16,
}

impl ServerAddress {
    pub fn new(host: impl Into<String>, port: u16) -> ServerAddress {
        ServerAddress {
            host: host.into(),
            port,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host:port` of entry `key` of `xmpp.servers`; a literal IPv6 host
    /// is written in brackets (`[::1]:5347`).
    fn parse(key: &str, entry: &str) -> Result<ServerAddress, String> {
        let invalid =
            || format!("{key} {entry:?} is not host:port, such as xmpp1.example.com:5347");
        let (host, port) = entry.rsplit_once(':').ok_or_else(invalid)?;
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.is_empty()
            || (host.contains(':') && !bracketed)
            || host.contains(|c: char| c.is_whitespace() || "/@?#".contains(c))
        {
            return Err(invalid());
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(ServerAddress::new(host, port)),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The configured nodes, in the order given: `xmpp.servers`, else
/// `xmpp.host` and `xmpp.port` (each defaulting to [`DEFAULT_HOST`] and
/// [`DEFAULT_PORT`]). Never empty; the same node twice is refused.
pub fn addresses(config: &XmppConfig) -> Result<Vec<ServerAddress>, String> {
    if config.servers.is_empty() {
        let host = config.host.as_deref().unwrap_or(DEFAULT_HOST);
        let port = config.port.unwrap_or(DEFAULT_PORT);
        return Ok(vec![ServerAddress::new(host, port)]);
    }
    if config.host.is_some() || config.port.is_some() {
        return Err(
            "set xmpp.host and xmpp.port (one server) or xmpp.servers (the nodes of a cluster), \
             not both"
                .into(),
        );
    }
    let mut addresses = Vec::with_capacity(config.servers.len());
    for (i, entry) in config.servers.iter().enumerate() {
        let key = format!("xmpp.servers[{i}]");
        let address = ServerAddress::parse(&key, entry)?;
        if addresses.contains(&address) {
            return Err(format!("{key}: {address} is listed twice"));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: Option<&str>, port: Option<u16>, servers: &[&str]) -> XmppConfig {
        XmppConfig {
            host: host.map(Into::into),
            port,
            servers: servers.iter().map(|s| s.to_string()).collect(),
            ..XmppConfig::default()
        }
    }

    fn shown(config: &XmppConfig) -> Vec<String> {
        let addresses = addresses(config).unwrap();
        addresses.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_server_several_nodes_or_the_default() {
        assert_eq!(shown(&config(None, None, &[])), ["127.0.0.1:5347"]);
        assert_eq!(shown(&config(Some("xmpp"), None, &[])), ["xmpp:5347"]);
        assert_eq!(shown(&config(None, Some(5275), &[])), ["127.0.0.1:5275"]);
        let cluster = ["a.example:5347", "10.0.0.2:6000", "[::1]:5347"];
        assert_eq!(shown(&config(None, None, &cluster)), cluster);
    }

    #[test]
    fn both_forms_and_bad_entries_are_refused() {
        for (host, port) in [(Some("a"), None), (None, Some(5347))] {
            let err = addresses(&config(host, port, &["b:5347"])).unwrap_err();
            assert!(err.contains("not both"), "{err}");
        }
        for bad in [
            "b", "b:", ":5347", "b:0", "b:70000", "::1:5347", "u@b:5347", "b c:1",
        ] {
            let err = addresses(&config(None, None, &["a:1", bad])).unwrap_err();
            assert!(err.starts_with("xmpp.servers[1]"), "{bad}: {err}");
        }
        let err = addresses(&config(None, None, &["a:1", "a:1"])).unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
    }
}
