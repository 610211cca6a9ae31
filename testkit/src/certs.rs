//! A throw-away PKI for TLS tests, made with the `openssl` command line
//! (present wherever Debian's ca-certificates is; .ci/run checks): two
//! unrelated CAs, a server certificate for `localhost`/127.0.0.1 and a
//! client certificate, both issued by the first CA. Keys are unencrypted
//! PEM (PKCS#8); everything lives in the caller's directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a test PKI (all PEM).
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA that issued the server and client certificates.
    pub ca_cert: PathBuf,
    /// A CA that issued nothing here: trusting only it, a client must
    /// refuse the server.
    pub other_ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates the PKI in `dir`. Panics with openssl's output on failure.
    pub fn generate(dir: &Path) -> TestPki {
        let pki = TestPki {
            ca_cert: dir.join("ca.pem"),
            other_ca_cert: dir.join("other-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        let ca_key = dir.join("ca.key");
        self_signed_ca(dir, "Herald test CA", &ca_key, &pki.ca_cert);
        self_signed_ca(
            dir,
            "Herald untrusted CA",
            &dir.join("other-ca.key"),
            &pki.other_ca_cert,
        );
        let issue = |name: &str, extensions: &str, cert: &Path, key: &Path| {
            let csr = dir.join(format!("{name}.csr"));
            let ext = dir.join(format!("{name}.ext"));
            fs::write(&ext, extensions).expect("write extensions file");
            openssl(
                dir,
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &s(key),
                    "-out",
                    &s(&csr),
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &s(&csr),
                    "-CA",
                    &s(&pki.ca_cert),
                    "-CAkey",
                    &s(&ca_key),
                    "-set_serial",
                    &serial(),
                    "-days",
                    "2",
                    "-extfile",
                    &s(&ext),
                    "-out",
                    &s(cert),
                ],
            );
        };
        issue(
            "localhost",
            "basicConstraints = CA:FALSE\n\
             subjectAltName = DNS:localhost, IP:127.0.0.1\n\
             extendedKeyUsage = serverAuth\n",
            &pki.server_cert,
            &pki.server_key,
        );
        issue(
            "herald",
            "basicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n",
            &pki.client_cert,
            &pki.client_key,
        );
        pki
    }
}

fn self_signed_ca(dir: &Path, name: &str, key: &Path, cert: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints = critical, CA:TRUE",
            "-addext",
            "keyUsage = critical, keyCertSign, cRLSign",
            "-keyout",
            &s(key),
            "-out",
            &s(cert),
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): the TLS tests make their certificates with it")
        });
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

/// A random positive serial number, so no two certificates share one.
fn serial() -> String {
    format!("0x{}", &crate::random_hex()[..15])
}
