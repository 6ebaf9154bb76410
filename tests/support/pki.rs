//! A TEST-ONLY PKI: a dev CA in a tempdir and the server and client certificates it issues.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use treuhand::tls::{DevCa, Role};

/// A dev CA written to `<dir>/certs`, issuing certificates into the same folder.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: DevCa,
    pub ca_pem: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        treuhand::tls::install_crypto_provider();
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let ca = DevCa::generate("treuhand TEST-ONLY CA").unwrap();
        ca.write(&certs).unwrap();
        Self {
            dir: certs.clone(),
            ca,
            ca_pem: certs.join("ca.pem"),
        }
    }

    /// A server certificate and key, written as `<stem>.pem` / `<stem>.key`.
    pub fn server(&self, stem: &str) -> (PathBuf, PathBuf) {
        self.ca
            .issue_server(stem, &[])
            .unwrap()
            .write(&self.dir, stem)
            .unwrap()
    }

    /// A client certificate for `role`/`name`, written as `<stem>.pem` / `<stem>.key`.
    pub fn client(&self, role: Role, name: &str, stem: &str) -> (PathBuf, PathBuf) {
        self.ca
            .issue_client(role, name)
            .unwrap()
            .write(&self.dir, stem)
            .unwrap()
    }
}

/// A client TLS config for `role`/`name`, its certificate issued by `ca` into `dir` (which
/// holds the CA as `ca.pem`).
pub fn tls_for(ca: &DevCa, dir: &Path, role: Role, name: &str) -> Arc<rustls::ClientConfig> {
    let stem = format!("client-{name}-{role:?}");
    let (cert, key) = ca
        .issue_client(role, name)
        .unwrap()
        .write(dir, &stem)
        .unwrap();
    treuhand::tls::client_config(&dir.join("ca.pem"), Some((&cert, &key))).unwrap()
}
