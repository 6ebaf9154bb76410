//! TLS plumbing shared by every network role: rustls configs (ring provider only), PEM loading,
//! mTLS caller identities, and the TEST-ONLY dev PKI generator.
//!
//! Caller identity convention: a client certificate names its holder in its first DNS subject
//! alternative name as `<name>.<role>.treuhand`, with role `proxy`, `customer` or `operator`.
//! For a customer admin the name is the tenant id. The CA that signs client certificates is the
//! trust anchor, so only certificates the trustee's CA issued can claim a role.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Errors while building TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {what} from {path}: {reason}")]
    Load {
        /// What was expected (certificate, key).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls rejected the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// Writing generated files failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Installs ring as the process-wide rustls provider. Idempotent; call it at the start of every
/// entry point (object_store's reqwest client needs a process default).
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads all certificates of a PEM file.
///
/// # Errors
/// [`Error::Load`] if the file is missing, unreadable or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let load = |reason: String| Error::Load {
        what: "certificates",
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| load(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load(e.to_string()))?;
    if certs.is_empty() {
        return Err(load("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Loads the private key of a PEM file.
///
/// # Errors
/// [`Error::Load`] if the file is missing or holds no private key. The message never includes
/// key material.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| Error::Load {
        what: "private key",
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn root_store(ca: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("CA certificate in {}: {e}", ca.display())))?;
    }
    Ok(roots)
}

/// A server config. With `client_ca`, client certificates signed by that CA are **mandatory**
/// (mTLS); a client without one fails the handshake with `CertificateRequired`.
///
/// # Errors
/// [`Error::Load`] or [`Error::Config`].
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider())
                    .build()
                    .map_err(|e| Error::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| Error::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client config trusting `ca`, optionally presenting a client certificate (mTLS).
///
/// # Errors
/// [`Error::Load`] or [`Error::Config`].
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(root_store(ca)?);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| Error::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client config with no trust anchors, for plain-HTTP endpoints (the connector never uses
/// it for `http://` URLs, but the client type needs one).
pub fn client_config_webpki_roots_free() -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        });
    match config {
        Ok(config) => Arc::new(config),
        // ring's default provider always supports the safe default versions.
        Err(_) => Arc::new(
            ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

/// The role a client certificate claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A proxy instance asking for share releases.
    Proxy,
    /// A tenant's customer admin (its name is the tenant id).
    Customer,
    /// The operator's staff (emergency access requests).
    Operator,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            Role::Customer => "customer",
            Role::Operator => "operator",
        }
    }
}

/// Who is calling, as read from a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// The caller's role.
    pub role: Role,
    /// The caller's name (tenant id for customers).
    pub name: String,
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.role.label(), self.name)
    }
}

/// The DNS name that encodes an identity in a client certificate.
pub fn identity_dns_name(role: Role, name: &str) -> String {
    format!("{name}.{}.treuhand", role.label())
}

/// Reads the caller identity from the end-entity certificate of a verified peer chain.
/// Returns `None` if the certificate does not follow the naming convention.
pub fn peer_identity(end_entity: &CertificateDer<'_>) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
            let Some(rest) = dns.strip_suffix(".treuhand") else {
                continue;
            };
            let Some((name, role)) = rest.rsplit_once('.') else {
                continue;
            };
            let role = match role {
                "proxy" => Role::Proxy,
                "customer" => Role::Customer,
                "operator" => Role::Operator,
                _ => continue,
            };
            if name.is_empty() {
                continue;
            }
            return Some(PeerIdentity {
                role,
                name: name.to_owned(),
            });
        }
    }
    None
}

/// A certificate and key, PEM-encoded.
pub struct IssuedCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("key_pem", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A TEST-ONLY certificate authority for the dev stack and the tests. Never use it in
/// production: its key sits unencrypted next to the certificates.
pub struct DevCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate PEM (the trust anchor to hand to clients).
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevCa([REDACTED])")
    }
}

fn gen_err(e: rcgen::Error) -> Error {
    Error::Generate(e.to_string())
}

impl DevCa {
    /// Generates a new CA (ECDSA P-256).
    ///
    /// # Errors
    /// [`Error::Generate`].
    pub fn generate(common_name: &str) -> Result<Self, Error> {
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).map_err(gen_err)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// Loads a CA from PEM files written by [`DevCa::write`].
    ///
    /// # Errors
    /// [`Error::Load`] or [`Error::Generate`].
    pub fn load(cert: &Path, key: &Path) -> Result<Self, Error> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| Error::Load {
                what: "CA",
                path: p.to_owned(),
                reason: e.to_string(),
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let key_pair = rcgen::KeyPair::from_pem(&key_pem).map_err(gen_err)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&cert_pem, key_pair).map_err(gen_err)?;
        Ok(Self {
            issuer,
            cert_pem,
            key_pem,
        })
    }

    /// Writes `ca.pem` and `ca.key` into `dir`.
    ///
    /// # Errors
    /// [`Error::Write`].
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        write_file(&dir.join("ca.pem"), &self.cert_pem)?;
        write_secret_file(&dir.join("ca.key"), &self.key_pem)
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1` plus `extra_names`.
    ///
    /// # Errors
    /// [`Error::Generate`].
    pub fn issue_server(
        &self,
        common_name: &str,
        extra_names: &[String],
    ) -> Result<IssuedCert, Error> {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        names.extend_from_slice(extra_names);
        self.issue(
            common_name,
            names,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// Issues a client certificate carrying a [`PeerIdentity`].
    ///
    /// # Errors
    /// [`Error::Generate`].
    pub fn issue_client(&self, role: Role, name: &str) -> Result<IssuedCert, Error> {
        self.issue(
            name,
            vec![identity_dns_name(role, name)],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn issue(
        &self,
        common_name: &str,
        names: Vec<String>,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> Result<IssuedCert, Error> {
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::new(names).map_err(gen_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl IssuedCert {
    /// Writes `<stem>.pem` and `<stem>.key` into `dir` and returns both paths.
    ///
    /// # Errors
    /// [`Error::Write`].
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), Error> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&cert, &self.cert_pem)?;
        write_secret_file(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file readable by its owner only (private keys, shares).
///
/// # Errors
/// [`Error::Write`].
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificate_identity_round_trips() {
        let ca = DevCa::generate("test ca").unwrap();
        let issued = ca.issue_client(Role::Proxy, "proxy-1").unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            peer_identity(&der),
            Some(PeerIdentity {
                role: Role::Proxy,
                name: "proxy-1".into()
            })
        );
        let server = ca.issue_server("srv", &[]).unwrap();
        let der = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        assert_eq!(peer_identity(&der), None);
    }

    #[test]
    fn written_ca_can_be_loaded_and_issue() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate("test ca").unwrap();
        ca.write(dir.path()).unwrap();
        let loaded = DevCa::load(&dir.path().join("ca.pem"), &dir.path().join("ca.key")).unwrap();
        let (cert, key) = loaded
            .issue_server("srv", &[])
            .unwrap()
            .write(dir.path(), "srv")
            .unwrap();
        install_crypto_provider();
        server_config(&cert, &key, Some(&dir.path().join("ca.pem"))).unwrap();
        client_config(&dir.path().join("ca.pem"), None).unwrap();
    }
}
