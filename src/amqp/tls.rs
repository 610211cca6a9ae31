//! AMQP over TLS: what Herald trusts and what it presents when `amqp.url`
//! (or `amqp.urls`) is `amqps://`. lapin does the TLS (rustls on ring,
//! trusting the system's roots); this adds a private CA
//! (`amqp.tls_ca_file`) and a client certificate (`amqp.tls_cert_file`,
//! `amqp.tls_key_file`).
//!
//! The files are checked once at start (a clear error rather than a failed
//! handshake later) and read again at each connect, so that renewed
//! certificates are picked up at the next reconnect without a restart.

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties, DefaultConnectionBuilder};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::BrokerAddress;
use crate::config::AmqpConfig;

/// Connects to `broker`, over TLS with the configured CA and client
/// certificate when it is `amqps://`.
pub async fn connect(
    config: &AmqpConfig,
    broker: &BrokerAddress,
    properties: ConnectionProperties,
) -> Result<Connection, lapin::Error> {
    DefaultConnectionBuilder::new()?
        .with_uri_str(broker.url().expose().to_string())
        .with_properties(properties)
        .with_tls_config(settings(config)?)
        .connect()
        .await
}

/// Whether `url` asks for TLS.
pub fn is_amqps(url: &str) -> bool {
    url.trim_start()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("amqps://"))
}

/// Checks the TLS options: they need `amqps://` URLs (`brokers`, which
/// share one scheme), the certificate and its key go together, and every
/// file holds what it should.
pub fn check(config: &AmqpConfig, brokers: &[BrokerAddress]) -> Result<(), String> {
    let any = config.tls_ca_file.is_some()
        || config.tls_cert_file.is_some()
        || config.tls_key_file.is_some();
    if any && !brokers.iter().all(BrokerAddress::is_tls) {
        return Err(
            "amqp.tls_ca_file, tls_cert_file and tls_key_file apply to TLS only: \
             amqp.url (or amqp.urls) must be amqps://"
                .into(),
        );
    }
    if config.tls_cert_file.is_some() != config.tls_key_file.is_some() {
        return Err(
            "amqp.tls_cert_file and amqp.tls_key_file go together: set both or neither".into(),
        );
    }
    if let Some(path) = &config.tls_ca_file {
        crate::pem::certificates("amqp.tls_ca_file", path)?;
    }
    if let Some(path) = &config.tls_cert_file {
        crate::pem::certificates("amqp.tls_cert_file", path)?;
    }
    if let Some(path) = &config.tls_key_file {
        PrivateKeyDer::from_pem_file(path).map_err(|e| {
            format!(
                "amqp.tls_key_file {}: no unencrypted PEM private key ({e})",
                path.display()
            )
        })?;
    }
    Ok(())
}

/// lapin's TLS settings, from the files as they are now.
fn settings(config: &AmqpConfig) -> std::io::Result<OwnedTLSConfig> {
    let cert_chain = match &config.tls_ca_file {
        Some(path) => Some(std::fs::read_to_string(path)?),
        None => None,
    };
    let identity = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: std::fs::read(cert)?,
            key: std::fs::read(key)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::addresses;
    use crate::config::Secret;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

    fn amqps() -> AmqpConfig {
        AmqpConfig {
            url: Some(Secret::new("amqps://herald:pw@broker.example:5671/%2f")),
            ..AmqpConfig::default()
        }
    }

    #[test]
    fn the_scheme_decides() {
        assert!(is_amqps("amqps://h/%2f"));
        assert!(is_amqps("AMQPS://h"));
        assert!(!is_amqps("amqp://h"));
        assert!(!is_amqps("amqp"));
    }

    #[test]
    fn tls_files_need_an_amqps_url_and_go_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, CERT).unwrap();
        std::fs::write(&key, KEY).unwrap();

        let mut config = amqps();
        config.tls_ca_file = Some(cert.clone());
        check(&config, &addresses(&config).unwrap()).unwrap();
        config.url = Some(Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f"));
        let err = check(&config, &addresses(&config).unwrap()).unwrap_err();
        assert!(err.contains("must be amqps://"), "{err}");

        let mut config = amqps();
        config.tls_cert_file = Some(cert.clone());
        let err = check(&config, &addresses(&config).unwrap()).unwrap_err();
        assert!(err.contains("go together"), "{err}");
        config.tls_key_file = Some(key);
        check(&config, &addresses(&config).unwrap()).unwrap();
    }

    #[test]
    fn files_without_what_they_should_hold_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();

        let mut config = amqps();
        config.tls_ca_file = Some(dir.path().join("missing.pem"));
        let err = check(&config, &addresses(&config).unwrap()).unwrap_err();
        assert!(
            err.starts_with("amqp.tls_ca_file ") && err.contains("missing.pem"),
            "{err}"
        );
        config.tls_ca_file = Some(empty.clone());
        let err = check(&config, &addresses(&config).unwrap()).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");

        let mut config = amqps();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, CERT).unwrap();
        config.tls_cert_file = Some(cert);
        config.tls_key_file = Some(empty);
        let err = check(&config, &addresses(&config).unwrap()).unwrap_err();
        assert!(err.contains("no unencrypted PEM private key"), "{err}");
    }
}
