//! TLS on the component link (`xmpp.tls`): TLS from the first byte, as
//! ejabberd's `ejabberd_service` listener with `tls: true` and Openfire's
//! SSL component port speak it (XEP-0114 has no STARTTLS). The server's
//! certificate is checked like the broker's: against the system's roots
//! plus `xmpp.tls_ca_file`, for the name `xmpp.tls_server_name` (by
//! default the server's domain). The CA file is checked at start and read
//! again at each connect, so a renewed CA is picked up without a restart.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::XmppConfig;

/// How to secure the component link.
#[derive(Debug, Clone)]
pub struct LinkTls {
    /// The name the server's certificate must carry.
    server_name: ServerName<'static>,
    /// Certificate authorities trusted besides the system's.
    ca_file: Option<PathBuf>,
}

impl LinkTls {
    /// The TLS settings of `xmpp`, if it asks for TLS; `server` is the
    /// server's domain, the default name to check.
    pub fn from_config(xmpp: &XmppConfig, server: &str) -> Result<Option<LinkTls>, String> {
        if !xmpp.tls {
            if xmpp.tls_ca_file.is_some() || xmpp.tls_server_name.is_some() {
                return Err(
                    "xmpp.tls_ca_file and xmpp.tls_server_name apply to TLS only: \
                     set xmpp.tls = true"
                        .into(),
                );
            }
            return Ok(None);
        }
        let name = xmpp.tls_server_name.as_deref().unwrap_or(server);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| format!("xmpp.tls_server_name {name:?} is not a DNS name or address"))?;
        if let Some(path) = &xmpp.tls_ca_file {
            crate::pem::certificates("xmpp.tls_ca_file", path)?;
        }
        Ok(Some(LinkTls {
            server_name,
            ca_file: xmpp.tls_ca_file.clone(),
        }))
    }

    /// The TLS handshake over `socket`, checking the server's certificate.
    pub async fn connect(&self, socket: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        TlsConnector::from(Arc::new(self.client_config()?))
            .connect(self.server_name.clone(), socket)
            .await
    }

    fn client_config(&self) -> io::Result<ClientConfig> {
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped, as lapin does; a
        // server they would have vouched for then fails the handshake.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = &self.ca_file {
            let extra = crate::pem::certificates("xmpp.tls_ca_file", path)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            roots.add_parsable_certificates(extra);
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        Ok(ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// Whether `host` is this machine, where a plaintext link crosses no
/// network.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
