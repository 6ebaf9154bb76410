//! Proxy configuration (`proxy.toml`) and tenant registrations (`tenants/*.toml`).
//!
//! Relative paths in a config file are resolved against the file's directory. Every problem
//! is a [`ConfigError`] at startup, never a panic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::KeyMetadata;
use crate::logging::describe_toml_error;
use crate::secret::SecretString;
use crate::storage::StorageConfig;

/// Configuration errors, with a message saying how to fix them.
#[derive(Debug, thiserror::Error)]
#[error("proxy configuration error: {0}")]
pub struct ConfigError(pub String);

/// `proxy.toml`.
///
/// `Debug` is derived: its one secret, the storage backend's key in [`StorageConfig`], is a
/// [`SecretString`] that prints `[REDACTED]`. `Serialize` writes a `proxy.toml` that loads
/// back with the same settings (`treuhand dev init` writes its config so), and so does write
/// that secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address of the S3 HTTPS endpoint.
    pub listen: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint (plain HTTP; keep it on loopback or a
    /// management network). Absent: no metrics endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Connection limits and timeouts of the S3 endpoint (`[limits]`; every field has a
    /// default, so configs without the section keep working).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Server certificate and key of the S3 endpoint.
    pub tls: ServerTls,
    /// The proxy's mTLS client identity towards trustees and customer holders, and the CA
    /// that signs their server certificates.
    pub trustee_client: ClientTls,
    /// Directory of tenant registration files (`*.toml`, see [`TenantConfig`]).
    pub tenants_dir: PathBuf,
    /// The region clients are told to use (the dev env files). Informational: SigV4 is verified
    /// with whatever region the client signed for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Key cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Per-request timeout for a trustee or holder release, in milliseconds.
    #[serde(default = "default_release_timeout")]
    pub release_timeout_ms: u64,
    /// Storage backend.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Multipart uploads: in-memory cipher cap per tenant, reaping of abandoned uploads.
    #[serde(default)]
    pub multipart: MultipartConfig,
    /// DANGER, benchmark baseline only: PUT/GET/HEAD store and serve objects UNENCRYPTED and
    /// ask no trustee ("TLS pass-through" in `treuhand bench`). Off by default; never enable it
    /// for real data.
    #[serde(default)]
    pub danger_passthrough_no_encryption: bool,
}

/// Connection limits and timeouts of the S3 endpoint, against clients that open connections
/// and then send slowly or nothing (slowloris). Timeouts are in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// How long an HTTP/1 client may take to send a request's headers. hyper starts this
    /// timer whenever the connection waits for the next request, so it also closes an idle
    /// HTTP/1 keep-alive connection.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (HTTP/1 and HTTP/2,
    /// and a connection that sent nothing after the TLS handshake).
    pub idle_timeout_ms: u64,
    /// Interval of HTTP/2 keep-alive pings.
    pub http2_keep_alive_interval_ms: u64,
    /// An HTTP/2 connection whose ping is not answered within this time is closed.
    pub http2_keep_alive_timeout_ms: u64,
    /// Open connections beyond this are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address beyond this are closed at once (IPv6
    /// addresses count per /64), so one address cannot take every slot.
    pub max_connections_per_address: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 20_000,
            idle_timeout_ms: 60_000,
            http2_keep_alive_interval_ms: 30_000,
            http2_keep_alive_timeout_ms: 10_000,
            max_connections: 4096,
            max_connections_per_address: 256,
        }
    }
}

impl LimitsConfig {
    /// Checks that no limit is zero (a zero timeout or limit would refuse every client).
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let settings = [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            (
                "http2_keep_alive_interval_ms",
                self.http2_keep_alive_interval_ms,
            ),
            (
                "http2_keep_alive_timeout_ms",
                self.http2_keep_alive_timeout_ms,
            ),
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_address",
                self.max_connections_per_address as u64,
            ),
        ];
        for (name, value) in settings {
            if value == 0 {
                return Err(ConfigError(format!("limits.{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_release_timeout() -> u64 {
    5000
}

/// Server TLS files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// mTLS client files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM CA that signs trustee and holder server certificates.
    pub ca: PathBuf,
    /// PEM client certificate of this proxy.
    pub cert: PathBuf,
    /// PEM client key of this proxy.
    pub key: PathBuf,
}

/// Key cache bounds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Seconds a released key stays cached; 0 asks the trustees on every request.
    pub ttl_secs: u64,
    /// Maximum number of cached keys.
    pub max_entries: usize,
    /// Seconds a key stays cached at most while the revocation stream of one of its tenant's
    /// holders is down (not yet connected, an error, a timeout): a shred the proxy did not
    /// hear about then still takes effect within this time. Never above `ttl_secs`.
    #[serde(default = "default_fallback_ttl")]
    pub fallback_ttl_secs: u64,
}

fn default_fallback_ttl() -> u64 {
    1
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 60,
            max_entries: 1024,
            fallback_ttl_secs: default_fallback_ttl(),
        }
    }
}

/// `[multipart]` in proxy.toml.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultipartConfig {
    /// Upload ciphers kept in memory per tenant, so a Complete without SSE-C headers (stock
    /// clients send none) still finds its key. A tenant over the cap loses its own oldest
    /// entry, never another tenant's; that upload then needs the SSE-C headers on Complete.
    pub max_uploads_per_tenant: usize,
    /// An upload whose staging has not changed for this many seconds is abandoned and reaped
    /// (S3's lifecycle rule `AbortIncompleteMultipartUpload`, 7 days by default).
    pub abandon_after_secs: u64,
    /// Seconds between two reaper passes (the first runs at startup); at least 1.
    pub reap_interval_secs: u64,
    /// The smallest plaintext size, in bytes, of every part but the last that
    /// CompleteMultipartUpload accepts (`EntityTooSmall` otherwise); S3's 5 MiB by default.
    pub min_part_size: u64,
}

impl Default for MultipartConfig {
    fn default() -> Self {
        Self {
            max_uploads_per_tenant: 1000,
            abandon_after_secs: 7 * 24 * 3600,
            reap_interval_secs: 3600,
            min_part_size: 5 * 1024 * 1024,
        }
    }
}

/// One tenant registration: `tenants/<tenant>.toml`, written by `treuhand tenant create`
/// (public metadata) and completed by the operator (access keys, trustee URLs).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// S3 access key id of this tenant.
    pub access_key_id: String,
    /// S3 secret access key of this tenant (an operator-side credential, not key material).
    /// Absent for a strict tenant ([`KeyMetadata::strict`]): only the customer and the holder
    /// that checks its signatures know it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::secret::serialize_exposed_option"
    )]
    pub secret_access_key: Option<SecretString>,
    /// Name of the customer's holder in the key metadata.
    pub customer_holder: String,
    /// URL of the customer-run share holder. Absent: the customer share travels in SSE-C
    /// headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_url: Option<String>,
    /// The trustees holding the other shares.
    pub trustees: Vec<TrusteeRef>,
    /// Public key metadata of the current key version (new objects are written under it).
    pub metadata: KeyMetadata,
    /// Older key versions that are still readable (decrypt-only), newest first: what
    /// `treuhand tenant rotate` moved out of `metadata`. `treuhand tenant shred` removes a
    /// version from here. Each version's trustees are the entries of `trustees` whose holder
    /// is in that version's metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<KeyMetadata>,
}

// Hand-written so the SigV4 secret never reaches a log or panic message through `{:?}` (its
// `SecretString` type redacts it too; this keeps the registration's shape in one place).
impl std::fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfig")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("customer_holder", &self.customer_holder)
            .field("customer_url", &self.customer_url)
            .field("trustees", &self.trustees)
            .field("metadata", &self.metadata)
            .field("previous", &self.previous)
            .finish()
    }
}

/// Where a trustee share is released.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrusteeRef {
    /// Holder name in the key metadata.
    pub holder: String,
    /// Base URL of the trustee, e.g. `https://127.0.0.1:7443`.
    pub url: String,
}

impl TenantConfig {
    /// Checks consistency: metadata valid, holders registered, threshold reachable.
    ///
    /// # Errors
    /// [`ConfigError`] naming the problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tenant = &self.metadata.tenant;
        self.validate_version(&self.metadata)?;
        let mut seen = vec![self.metadata.key_version];
        for older in &self.previous {
            if older.tenant != *tenant {
                return Err(ConfigError(format!(
                    "tenant {tenant}: previous key version {} belongs to tenant {}",
                    older.key_version, older.tenant
                )));
            }
            if older.key_version >= self.metadata.key_version || seen.contains(&older.key_version) {
                return Err(ConfigError(format!(
                    "tenant {tenant}: previous key version {} must be older than the current version {} and listed once",
                    older.key_version, self.metadata.key_version
                )));
            }
            seen.push(older.key_version);
            self.validate_version(older)?;
        }
        for trustee in &self.trustees {
            let in_some_version = std::iter::once(&self.metadata)
                .chain(&self.previous)
                .any(|m| m.holder(&trustee.holder).is_some());
            if !in_some_version || trustee.holder == self.customer_holder {
                return Err(ConfigError(format!(
                    "tenant {tenant}: trustee holder '{}' is not a registered non-customer holder",
                    trustee.holder
                )));
            }
        }
        Ok(())
    }

    /// Every key version of the registration: the current one first, then the older ones.
    pub fn versions(&self) -> impl Iterator<Item = &KeyMetadata> {
        std::iter::once(&self.metadata).chain(&self.previous)
    }

    /// The trustees of one key version: those of `trustees` whose holder is in `metadata`.
    pub fn trustees_of<'a>(
        &'a self,
        metadata: &'a KeyMetadata,
    ) -> impl Iterator<Item = &'a TrusteeRef> {
        self.trustees
            .iter()
            .filter(|t| metadata.holder(&t.holder).is_some())
    }

    /// The checks of one key version of this registration.
    fn validate_version(&self, metadata: &KeyMetadata) -> Result<(), ConfigError> {
        let tenant = &self.metadata.tenant;
        let version = metadata.key_version;
        metadata.validate().map_err(|e| {
            ConfigError(format!(
                "tenant {tenant}: invalid metadata of key version {version}: {e}"
            ))
        })?;
        match (&self.secret_access_key, metadata.strict) {
            (Some(secret), false)
                if !self.access_key_id.is_empty() && secret.expose_secret().len() >= 8 => {}
            (None, true) if !self.access_key_id.is_empty() => {}
            (Some(_), true) => {
                return Err(ConfigError(format!(
                    "tenant {tenant}: a strict tenant's registration must not contain its secret_access_key (only the customer and its signature-checking holder know it); remove the line"
                )));
            }
            _ => {
                return Err(ConfigError(format!(
                    "tenant {tenant}: access keys missing or too short"
                )));
            }
        }
        if metadata.holder(&self.customer_holder).is_none() {
            return Err(ConfigError(format!(
                "tenant {tenant}: customer_holder '{}' is not in the metadata of key version {version}",
                self.customer_holder
            )));
        }
        // A threshold the trustees reach without the customer would let them (and an operator
        // who persuades them) derive every key alone: only with the customer's explicit
        // consent, recorded at the ceremony and in every holder's audit entry.
        if metadata.trustees_alone_reach_threshold(&self.customer_holder)
            && !metadata.allow_trustees_alone
        {
            return Err(ConfigError(format!(
                "tenant {tenant}: the {} trustees alone reach threshold {} without the customer; raise the threshold above the number of trustees (a new key ceremony with `treuhand tenant create`), or, if the customer accepts that the trustees together can read every object, re-run the ceremony with --allow-trustees-alone",
                metadata
                    .holders
                    .iter()
                    .filter(|h| h.name != self.customer_holder)
                    .count(),
                metadata.threshold
            )));
        }
        let trustees = self.trustees_of(metadata).count();
        if trustees + 1 < usize::from(metadata.threshold) {
            return Err(ConfigError(format!(
                "tenant {tenant}: {trustees} trustees plus the customer cannot reach threshold {} of key version {version}",
                metadata.threshold
            )));
        }
        Ok(())
    }
}

fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

impl ProxyConfig {
    /// Reads and validates `proxy.toml`, resolving relative paths.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        // The text may hold the storage backend's secret: zeroized after parsing, and a parse
        // error gives line and column only (see `describe_toml_error`).
        let text = Zeroizing::new(text);
        let mut config: ProxyConfig =
            toml::from_str(&text).map_err(|e| ConfigError(describe_toml_error(path, &text, &e)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve(base, &mut config.tls.cert);
        resolve(base, &mut config.tls.key);
        resolve(base, &mut config.trustee_client.ca);
        resolve(base, &mut config.trustee_client.cert);
        resolve(base, &mut config.trustee_client.key);
        resolve(base, &mut config.tenants_dir);
        if let StorageConfig::Fs { root, .. } = &mut config.storage {
            resolve(base, root);
        }
        config.limits.validate()?;
        if config.multipart.reap_interval_secs == 0 {
            return Err(ConfigError(
                "multipart.reap_interval_secs must be at least 1".into(),
            ));
        }
        if config.cache.max_entries == 0 && config.cache.ttl_secs > 0 {
            return Err(ConfigError(
                "cache.max_entries must be at least 1 when ttl_secs > 0".into(),
            ));
        }
        Ok(config)
    }

    /// Loads every `*.toml` in `tenants_dir`.
    ///
    /// # Errors
    /// [`ConfigError`] for unreadable or invalid files and duplicate tenants or access keys.
    pub fn load_tenants(&self) -> Result<Vec<TenantConfig>, ConfigError> {
        let dir = &self.tenants_dir;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ConfigError(format!("cannot read tenants_dir {}: {e}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut tenants: Vec<TenantConfig> = Vec::new();
        for path in paths {
            // A registration holds the tenant's SigV4 secret: the text is zeroized after
            // parsing, and a parse error gives line and column only, never the line (this is
            // also the SIGHUP reload path, whose error goes to the log).
            let text = Zeroizing::new(
                std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?,
            );
            let tenant: TenantConfig = toml::from_str(&text)
                .map_err(|e| ConfigError(describe_toml_error(&path, &text, &e)))?;
            tenant.validate()?;
            if tenants.iter().any(|t| {
                t.metadata.tenant == tenant.metadata.tenant
                    || t.access_key_id == tenant.access_key_id
            }) {
                return Err(ConfigError(format!(
                    "{}: duplicate tenant or access key id",
                    path.display()
                )));
            }
            tenants.push(tenant);
        }
        Ok(tenants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyId;
    use crate::crypto::scheme::{self, SplitOptions};

    /// A registration of `acme` with the customer and `trustees`, threshold `k`.
    fn registration(k: u8, trustees: &[&str], options: SplitOptions) -> TenantConfig {
        let key = KeyId::new("acme", 1).unwrap();
        let mut names = vec!["customer"];
        names.extend_from_slice(trustees);
        let (metadata, _) = scheme::split(&key, k, &names, options).unwrap();
        TenantConfig {
            access_key_id: "AKACME".into(),
            secret_access_key: (!options.strict).then(|| "secret-acme-0123".to_owned().into()),
            customer_holder: "customer".into(),
            customer_url: None,
            trustees: trustees
                .iter()
                .map(|t| TrusteeRef {
                    holder: (*t).into(),
                    url: format!("https://{t}.example:7443"),
                })
                .collect(),
            metadata,
            previous: Vec::new(),
        }
    }

    #[test]
    fn a_tenant_whose_trustees_alone_reach_the_threshold_is_refused_unless_allowed() {
        // 2-of-3 with two trustees: they could derive every object key without the customer.
        let wide = registration(2, &["t1", "t2"], SplitOptions::default());
        let message = wide.validate().unwrap_err().0;
        assert!(
            message.contains("trustees alone reach threshold 2"),
            "{message}"
        );
        assert!(message.contains("--allow-trustees-alone"), "{message}");
        // The customer's explicit consent, recorded at the ceremony, lets it through.
        let allowed = SplitOptions {
            allow_trustees_alone: true,
            ..SplitOptions::default()
        };
        registration(2, &["t1", "t2"], allowed).validate().unwrap();
        // Thresholds that need the customer pass without it: 2-of-2, 3-of-3.
        registration(2, &["t1"], SplitOptions::default())
            .validate()
            .unwrap();
        registration(3, &["t1", "t2"], SplitOptions::default())
            .validate()
            .unwrap();
    }

    #[test]
    fn a_strict_tenant_has_no_secret_and_a_standard_one_needs_it() {
        let strict = SplitOptions {
            strict: true,
            ..SplitOptions::default()
        };
        registration(2, &["t1"], strict).validate().unwrap();
        let mut leaked = registration(2, &["t1"], strict);
        leaked.secret_access_key = Some("secret-acme-0123".to_owned().into());
        let message = leaked.validate().unwrap_err().0;
        assert!(
            message.contains("must not contain its secret_access_key"),
            "{message}"
        );
        let mut missing = registration(2, &["t1"], SplitOptions::default());
        missing.secret_access_key = None;
        assert!(missing.validate().is_err());
    }
}
