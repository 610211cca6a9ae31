//! The broker nodes Herald may connect to: `amqp.url` (one node) or
//! `amqp.urls` (the nodes of one cluster), checked once at start; the link
//! tries them in turn ([`crate::rotation`]).

use std::fmt;

use lapin::uri::{AMQPUri, SASLMechanism};

use super::tls::is_amqps;
use crate::config::{AmqpConfig, Secret};

/// The broker when the configuration names none.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One broker node: its URL, a secret (it holds the password), and what
/// logs may show of it (`host:port`).
#[derive(Clone)]
pub struct BrokerAddress {
    url: Secret,
    shown: String,
}

impl BrokerAddress {
    /// The URL of configuration key `key`, if lapin can connect to it.
    fn parse(key: &str, url: &Secret) -> Result<BrokerAddress, String> {
        let text = url.expose();
        if let Err(reason) = text.parse::<AMQPUri>() {
            // Some of the parser's messages quote the URL, password and all.
            let reason = if reason.contains(text) {
                "not a URL".to_string()
            } else {
                reason
            };
            return Err(format!(
                "{key} is not an AMQP URL such as amqp://user:password@host:5672/%2f ({reason})"
            ));
        }
        Ok(BrokerAddress {
            url: url.clone(),
            shown: host_and_port(text).to_string(),
        })
    }

    pub fn url(&self) -> &Secret {
        &self.url
    }

    pub fn is_tls(&self) -> bool {
        is_amqps(self.url.expose())
    }

    /// The broker user Herald logs in as here: the URL's user (lapin's
    /// default, `guest`, when it names none). None with SASL EXTERNAL
    /// (the broker takes the user from the client certificate) or
    /// ANONYMOUS, where the URL does not say.
    pub fn user(&self) -> Option<String> {
        let uri: AMQPUri = self.url.expose().parse().ok()?;
        match uri.query.auth_mechanism {
            Some(SASLMechanism::External | SASLMechanism::Anonymous) => None,
            _ => Some(uri.authority.userinfo.username),
        }
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerAddress({})", self.shown)
    }
}

/// The URL's authority without its user and password.
fn host_and_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// The configured nodes, in the order given: `amqp.urls`, else `amqp.url`,
/// else [`DEFAULT_URL`]. Never empty.
pub fn addresses(config: &AmqpConfig) -> Result<Vec<BrokerAddress>, String> {
    let addresses = match (&config.url, config.urls.as_slice()) {
        (Some(_), [_, ..]) => {
            return Err(
                "set amqp.url (one broker) or amqp.urls (the nodes of a cluster), not both".into(),
            )
        }
        (Some(url), []) => vec![BrokerAddress::parse("amqp.url", url)?],
        (None, []) => vec![BrokerAddress::parse("amqp.url", &Secret::new(DEFAULT_URL))?],
        (None, urls) => urls
            .iter()
            .enumerate()
            .map(|(i, url)| BrokerAddress::parse(&format!("amqp.urls[{i}]"), url))
            .collect::<Result<Vec<_>, _>>()?,
    };
    // A failover must not fall back to a link in clear, nor the other way
    // round to one whose certificate settings were never meant for it.
    if addresses
        .iter()
        .any(|a| a.is_tls() != addresses[0].is_tls())
    {
        return Err("amqp.urls mixes amqps:// and amqp://: use one scheme for every node".into());
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: Option<&str>, urls: &[&str]) -> AmqpConfig {
        AmqpConfig {
            url: url.map(Secret::new),
            urls: urls.iter().map(|u| Secret::new(*u)).collect(),
            ..AmqpConfig::default()
        }
    }

    fn shown(config: &AmqpConfig) -> Vec<String> {
        let addresses = addresses(config).unwrap();
        addresses.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_url_several_urls_or_the_default() {
        assert_eq!(shown(&config(None, &[])), ["127.0.0.1:5672"]);
        assert_eq!(
            shown(&config(Some("amqp://u:pw@broker:5673/%2f"), &[])),
            ["broker:5673"]
        );
        let cluster = [
            "amqp://u:pw@a:5672/%2f",
            "amqp://b/%2f",
            "amqp://u:p@[::1]:5674",
        ];
        assert_eq!(
            shown(&config(None, &cluster)),
            ["a:5672", "b", "[::1]:5674"]
        );
    }

    #[test]
    fn both_keys_mixed_schemes_and_bad_urls_are_refused_without_the_password() {
        let err = addresses(&config(Some("amqp://a"), &["amqp://b"])).unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let err = addresses(&config(None, &["amqps://a", "amqp://b"])).unwrap_err();
        assert!(err.contains("mixes amqps:// and amqp://"), "{err}");
        let err = addresses(&config(None, &["amqp://a", "http://u:secretpw@b"])).unwrap_err();
        assert!(err.starts_with("amqp.urls[1] is not an AMQP URL"), "{err}");
        assert!(!err.contains("secretpw"), "{err}");
        let err = addresses(&config(Some("secretpw"), &[])).unwrap_err();
        assert!(err.starts_with("amqp.url is not an AMQP URL"), "{err}");
        assert!(!err.contains("secretpw"), "{err}");
    }

    #[test]
    fn the_password_never_shows() {
        let address = &addresses(&config(Some("amqp://herald:secretpw@b:1/v"), &[])).unwrap()[0];
        let text = format!("{address} {address:?}");
        assert!(!text.contains("secretpw") && text.contains("b:1"), "{text}");
    }
}
