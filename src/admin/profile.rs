//! Admin profiles: a small TOML naming the caller's mTLS identity, the holders to talk to, the
//! customer's share and registration directories and the S3 endpoint.
//!
//! ```toml
//! role = "customer"              # or "operator"
//! tenant = "demo"                # customer profiles: the tenant this admin manages
//! ca = "certs/ca.pem"            # CA of the holders' server certificates (and of S3's)
//! client_cert = "certs/customer-demo.pem"
//! client_key = "certs/customer-demo.key"
//! share_dir = "."                # the customer's share files
//! registration_dir = "tenants"   # the proxy's tenants_dir (where `tenant create` wrote)
//!
//! [[trustees]]
//! name = "trustee"
//! url = "https://127.0.0.1:7443"
//! trustee_key = "trustee-keys/signing.pub"   # its public key: file or 64 hex digits
//!
//! [holder]                       # the customer-run holder, if the tenant has one
//! name = "customer"
//! url = "https://127.0.0.1:7444"
//! trustee_key = "holder-keys/signing.pub"
//!
//! [s3]                           # for `tenant rewrap`
//! endpoint = "https://127.0.0.1:9443"
//! region = "us-east-1"
//! access_key_id = "AKDEMO"
//! secret_access_key = "..."
//! ```
//!
//! Relative paths are resolved against the profile's directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::secret::SecretString;
use crate::trustee::client::TrusteeClient;

/// Who the profile's caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A tenant's customer admin (`<tenant>.customer.treuhand`).
    Customer,
    /// The operator (`<name>.operator.treuhand`).
    Operator,
}

/// One holder the profile talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderRef {
    /// Holder name in the key metadata (`trustee`, `customer`, ...).
    pub name: String,
    /// Base URL, e.g. `https://127.0.0.1:7443`.
    pub url: String,
    /// The holder's Ed25519 public key (signs checkpoints and receipts): a file holding 64 hex
    /// digits (`signing.pub`) or the digits themselves. Needed by `audit pull` and to check
    /// receipts; obtain it out of band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trustee_key: Option<String>,
}

/// `[s3]`: the S3 endpoint (the proxy) for commands that go through S3.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Profile {
    /// `https://host:port` of the proxy.
    pub endpoint: String,
    /// SigV4 region.
    #[serde(default = "default_region")]
    pub region: String,
    /// The tenant's S3 access key id.
    pub access_key_id: String,
    /// The tenant's S3 secret access key.
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    pub secret_access_key: SecretString,
    /// CA of the proxy's server certificate; absent: the profile's `ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for S3Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Profile")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .field("ca", &self.ca)
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// An admin profile (`--profile FILE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Customer admin or operator.
    pub role: Role,
    /// The tenant a customer profile manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// CA certificate of the holders' server certificates (PEM).
    pub ca: PathBuf,
    /// The caller's client certificate (PEM).
    pub client_cert: PathBuf,
    /// The caller's client key (PEM).
    pub client_key: PathBuf,
    /// The trustees.
    #[serde(default)]
    pub trustees: Vec<HolderRef>,
    /// The customer-run holder of the tenant, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<HolderRef>,
    /// Directory of the customer's share files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_dir: Option<PathBuf>,
    /// The proxy's registration directory (`tenants_dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_dir: Option<PathBuf>,
    /// The S3 endpoint, for `tenant rewrap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Profile>,
}

impl Profile {
    /// Reads a profile and resolves its relative paths against the file's directory.
    ///
    /// # Errors
    /// Unreadable file or invalid TOML, with the path and what to fix.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the admin profile {} (`treuhand dev init` writes examples under DIR/admin/)",
                path.display()
            )
        })?);
        let mut profile: Profile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!(crate::logging::describe_toml_error(path, &text, &e)))?;
        // Absolute, so a profile written back (`save`, after a hand-over) can name its paths
        // relative to its own directory again, whatever the caller's working directory.
        let base = profile_dir(path)?;
        profile.map_paths(|p| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_owned()
            }
        });
        Ok(profile)
    }

    /// The tenant of a customer profile.
    ///
    /// # Errors
    /// An operator profile, or one without `tenant`.
    pub fn tenant(&self) -> anyhow::Result<&str> {
        match (&self.role, &self.tenant) {
            (Role::Customer, Some(t)) => Ok(t),
            (Role::Customer, None) => {
                anyhow::bail!(
                    "the profile has no `tenant = \"...\"`: add the tenant this customer admin manages"
                )
            }
            (Role::Operator, _) => anyhow::bail!(
                "this command is the customer's: use a customer admin profile (role = \"customer\"), not the operator's"
            ),
        }
    }

    /// The share directory.
    ///
    /// # Errors
    /// When the profile names none.
    pub fn share_dir(&self) -> anyhow::Result<&Path> {
        self.share_dir.as_deref().ok_or_else(|| {
            anyhow::anyhow!("the profile has no `share_dir = \"...\"` (where your share files are)")
        })
    }

    /// The registration directory.
    ///
    /// # Errors
    /// When the profile names none.
    pub fn registration_dir(&self) -> anyhow::Result<&Path> {
        self.registration_dir.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "the profile has no `registration_dir = \"...\"` (the proxy's tenants_dir)"
            )
        })
    }

    /// The mTLS client configuration of the profile's identity.
    ///
    /// # Errors
    /// Unreadable certificate or key files.
    pub fn tls(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        crate::tls::install_crypto_provider();
        crate::tls::client_config(&self.ca, Some((&self.client_cert, &self.client_key)))
            .with_context(|| {
                format!(
                    "cannot load the profile's TLS files ({}, {}, {})",
                    self.ca.display(),
                    self.client_cert.display(),
                    self.client_key.display()
                )
            })
    }

    /// A client for `url` under the profile's identity.
    ///
    /// # Errors
    /// As [`Profile::tls`], or an invalid URL.
    pub fn client(&self, url: &str) -> anyhow::Result<TrusteeClient> {
        Ok(TrusteeClient::new(url, self.tls()?)?)
    }

    /// Every holder of the profile: the trustees, then the customer's holder.
    pub fn holders(&self) -> impl Iterator<Item = &HolderRef> {
        self.trustees.iter().chain(self.holder.as_ref())
    }

    /// Writes the profile back (after a hand-over changed its trustees), mode 0600 (it may
    /// hold the S3 secret).
    ///
    /// # Errors
    /// Serialization or write failures.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        // Paths under the profile's directory are written relative to it, as `load` reads them
        // (so a dev directory can still move); others stay as they are.
        let base = profile_dir(path)?;
        let mut out = self.clone();
        out.map_paths(|p| match p.strip_prefix(&base) {
            Ok(rest) => rest.to_owned(),
            Err(_) => p.to_owned(),
        });
        let text = toml::to_string_pretty(&out)?;
        crate::tls::write_secret_file(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Applies `f` to every path of the profile (a `trustee_key` that is a file name, not
    /// 64 hex digits, included).
    fn map_paths(&mut self, f: impl Fn(&Path) -> PathBuf) {
        for p in [&mut self.ca, &mut self.client_cert, &mut self.client_key] {
            *p = f(p);
        }
        let optional = [
            self.share_dir.as_mut(),
            self.registration_dir.as_mut(),
            self.s3.as_mut().and_then(|s| s.ca.as_mut()),
        ];
        for p in optional.into_iter().flatten() {
            *p = f(p);
        }
        for h in self.trustees.iter_mut().chain(self.holder.as_mut()) {
            if let Some(key) = h.trustee_key.as_mut() {
                let is_hex = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
                if !is_hex {
                    *key = f(Path::new(key.as_str())).display().to_string();
                }
            }
        }
    }
}

/// The absolute directory of the profile file at `path`.
fn profile_dir(path: &Path) -> anyhow::Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::path::absolute(parent)
        .with_context(|| format!("cannot resolve the directory of {}", path.display()))
}

/// Reads a holder's public key: 64 hex digits, or a file holding them.
///
/// # Errors
/// Neither, with what was expected.
pub fn read_public_key(spec: &str) -> anyhow::Result<[u8; 32]> {
    Ok(crate::trustee::config::read_public_key(spec)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_profile_keeps_its_paths_relative_and_loads_back_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let admin = tmp.path().join("dev/admin");
        std::fs::create_dir_all(&admin).unwrap();
        let file = admin.join("demo.toml");
        std::fs::write(
            &file,
            "role = \"customer\"\ntenant = \"demo\"\nca = \"../certs/ca.pem\"\nclient_cert = \"../certs/c.pem\"\nclient_key = \"/abs/c.key\"\nshare_dir = \"../shares\"\n\n[[trustees]]\nname = \"trustee\"\nurl = \"https://127.0.0.1:1\"\ntrustee_key = \"../trustee/signing.pub\"\n",
        )
        .unwrap();
        let loaded = Profile::load(&file).unwrap();
        assert!(loaded.ca.is_absolute(), "{:?}", loaded.ca);
        loaded.save(&file).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("ca = \"../certs/ca.pem\""), "{text}");
        assert!(text.contains("client_key = \"/abs/c.key\""), "{text}");
        assert!(
            text.contains("trustee_key = \"../trustee/signing.pub\""),
            "{text}"
        );
        let again = Profile::load(&file).unwrap();
        assert_eq!(again.ca, loaded.ca);
        assert_eq!(again.share_dir, loaded.share_dir);
        assert_eq!(again.trustees, loaded.trustees);
    }
}
