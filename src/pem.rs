//! PEM files of certificates, checked once at start for both TLS links
//! (the broker's and the XMPP server's): a clear error naming the option
//! rather than a failed handshake later.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The certificates in the PEM file `path`, the value of `option`; an
/// error unless it holds at least one.
pub fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let error = |e: &dyn std::fmt::Display| format!("{option} {}: {e}", path.display());
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(&e))?;
    if certificates.is_empty() {
        return Err(error(&"no PEM certificate in it"));
    }
    Ok(certificates)
}
