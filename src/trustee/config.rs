//! The trustee's TOML configuration, validated at startup with messages that say what is wrong
//! and how to fix it.
//!
//! Relative paths are resolved against the directory of the configuration file. Example:
//!
//! ```toml
//! listen = "127.0.0.1:8443"
//!
//! [tls]
//! cert = "certs/trustee.pem"      # server certificate chain (PEM)
//! key = "certs/trustee.key"       # its private key (PEM)
//! client_ca = "certs/ca.pem"      # CA that issues proxy, customer and operator certificates
//!
//! [store]
//! path = "data/trustee.db"        # SQLite file, created if missing
//!
//! [keys]
//! sealing_key = "keys/sealing.key"   # 64 hex digits; seals shares at rest
//! signing_key = "keys/signing.key"   # 64 hex digits (Ed25519 seed); signs checkpoints
//!
//! [limits]                        # optional; these are the defaults
//! max_body_bytes = 65536
//! handshake_timeout_secs = 10
//! max_connections = 1024
//! max_grant_secs = 28800
//! max_batch = 1024
//! denial_log_per_second = 10      # denials each caller may add to audit chains, sustained
//! denial_log_burst = 100          # ... and in a burst; further denials are answered, not logged
//! denial_log_callers = 4096       # callers whose denial budget is remembered (bounded memory)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Error;
use crate::crypto::seal::SealingKey;
use crate::crypto::sign::SigningKey;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. `0.0.0.0:8443` (port 0 picks a free port).
    pub listen: String,
    /// TLS files.
    pub tls: TlsFiles,
    /// The durable store.
    pub store: StoreConfig,
    /// Key files.
    pub keys: KeyFiles,
    /// Limits; every field has a default.
    #[serde(default)]
    pub limits: Limits,
}

/// TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// The CA whose client certificates are accepted (mTLS is always on).
    pub client_ca: PathBuf,
}

/// Store settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite database file.
    pub path: PathBuf,
}

/// Key files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFiles {
    /// 32-byte sealing key as 64 hex digits.
    pub sealing_key: PathBuf,
    /// 32-byte Ed25519 seed as 64 hex digits.
    pub signing_key: PathBuf,
}

/// Server limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body (1 KiB ..= 1 MiB).
    pub max_body_bytes: usize,
    /// Time a client has to finish the TLS handshake (1..=120 s).
    pub handshake_timeout_secs: u64,
    /// Most concurrent connections; further connections are closed at once.
    pub max_connections: usize,
    /// Longest emergency grant, in seconds (default 8 h: "a few hours").
    pub max_grant_secs: u64,
    /// Most requests per group commit.
    pub max_batch: usize,
    /// Denials one caller identity may add to the audit chains per second, sustained. Denials
    /// beyond it are still answered 403 but not chained, so a flood cannot grow the store.
    pub denial_log_per_second: u32,
    /// Denials one caller identity may add to the audit chains in a burst.
    pub denial_log_burst: u32,
    /// Caller identities whose denial budget is remembered; beyond it the least recently
    /// denied caller is forgotten (and starts again with a full budget).
    pub denial_log_callers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            handshake_timeout_secs: 10,
            max_connections: 1024,
            max_grant_secs: 8 * 3600,
            max_batch: 1024,
            denial_log_per_second: 10,
            denial_log_burst: 100,
            denial_log_callers: 4096,
        }
    }
}

fn config_err(message: String) -> Error {
    Error::Config(message)
}

impl Config {
    /// Reads, parses, resolves relative paths against the file's directory, and validates.
    ///
    /// # Errors
    /// [`Error::Config`] saying what is wrong and how to fix it.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_err(format!(
                "cannot read the configuration file {}: {e}. Pass an existing file with --config.",
                path.display()
            ))
        })?;
        // Line, column and kind only: `toml`'s own message quotes the offending line, and no
        // config file's text belongs in a log (see `describe_toml_error`).
        let mut config: Config = toml::from_str(&text).map_err(|e| {
            config_err(format!(
                "not a valid trustee configuration: {}",
                crate::logging::describe_toml_error(path, &text, &e)
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        config.validate()?;
        Ok(config)
    }

    /// Makes relative paths absolute against `base`.
    pub fn resolve(&mut self, base: &Path) {
        for path in [
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.tls.client_ca,
            &mut self.store.path,
            &mut self.keys.sealing_key,
            &mut self.keys.signing_key,
        ] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The parsed listen address.
    ///
    /// # Errors
    /// [`Error::Config`].
    pub fn listen_addr(&self) -> Result<SocketAddr, Error> {
        self.listen.parse().map_err(|_| {
            config_err(format!(
                "listen = {:?} is not an address; use IP:PORT, e.g. \"127.0.0.1:8443\" or \"0.0.0.0:8443\"",
                self.listen
            ))
        })
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first problem.
    pub fn validate(&self) -> Result<(), Error> {
        self.listen_addr()?;
        let must_exist = [
            (
                "tls.cert",
                &self.tls.cert,
                "the server certificate chain (PEM)",
            ),
            ("tls.key", &self.tls.key, "the server private key (PEM)"),
            (
                "tls.client_ca",
                &self.tls.client_ca,
                "the CA certificate that signs client certificates (PEM)",
            ),
            (
                "keys.sealing_key",
                &self.keys.sealing_key,
                "the sealing key; create it with `treuhand trustee keygen`",
            ),
            (
                "keys.signing_key",
                &self.keys.signing_key,
                "the signing key; create it with `treuhand trustee keygen`",
            ),
        ];
        for (field, path, what) in must_exist {
            if !path.is_file() {
                return Err(config_err(format!(
                    "{field} = {} does not exist; it must be {what}",
                    path.display()
                )));
            }
        }
        let parent = self.store.path.parent().unwrap_or(Path::new("."));
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            return Err(config_err(format!(
                "store.path = {}: the directory {} does not exist; create it first",
                self.store.path.display(),
                parent.display()
            )));
        }
        let limits = &self.limits;
        let as_u64 = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        // (field, value, least, most, a note on the bound)
        let bounds = [
            (
                "max_body_bytes",
                as_u64(limits.max_body_bytes),
                1024,
                1024 * 1024,
                "",
            ),
            (
                "handshake_timeout_secs",
                limits.handshake_timeout_secs,
                1,
                120,
                "",
            ),
            (
                "max_connections",
                as_u64(limits.max_connections),
                1,
                1_000_000,
                "",
            ),
            (
                "max_grant_secs",
                limits.max_grant_secs,
                60,
                7 * 24 * 3600,
                " (one week)",
            ),
            ("max_batch", as_u64(limits.max_batch), 1, 65_536, ""),
            (
                "denial_log_per_second",
                u64::from(limits.denial_log_per_second),
                1,
                1_000_000,
                "",
            ),
            (
                "denial_log_burst",
                u64::from(limits.denial_log_burst),
                1,
                10_000_000,
                "",
            ),
            (
                "denial_log_callers",
                as_u64(limits.denial_log_callers),
                1,
                1_000_000,
                "",
            ),
        ];
        for (field, value, least, most, note) in bounds {
            if !(least..=most).contains(&value) {
                return Err(config_err(format!(
                    "limits.{field} must be between {least} and {most}{note}"
                )));
            }
        }
        Ok(())
    }
}

fn read_hex_key(path: &Path, field: &str) -> Result<Zeroizing<[u8; 32]>, Error> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| config_err(format!("cannot read {field} = {}: {e}", path.display())))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), key.as_mut_slice()).map_err(|_| {
        config_err(format!(
            "{field} = {} must hold exactly 64 hex digits (32 bytes); create one with `treuhand trustee keygen`",
            path.display()
        ))
    })?;
    warn_if_readable_by_others(path, field);
    Ok(key)
}

fn warn_if_readable_by_others(path: &Path, field: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(field, path = %path.display(), "key file is readable by group or others; chmod 600 it");
    }
}

/// Loads the sealing key named by `keys.sealing_key`.
///
/// # Errors
/// [`Error::Config`].
pub fn load_sealing_key(path: &Path) -> Result<SealingKey, Error> {
    let key = read_hex_key(path, "keys.sealing_key")?;
    Ok(SealingKey::new(&key)?)
}

/// Loads the signing key named by `keys.signing_key`.
///
/// # Errors
/// [`Error::Config`].
pub fn load_signing_key(path: &Path) -> Result<SigningKey, Error> {
    let seed = read_hex_key(path, "keys.signing_key")?;
    Ok(SigningKey::from_seed(&seed)?)
}

/// Creates `sealing.key`, `signing.key` (both 0600) and `signing.pub` in `dir`, refusing to
/// overwrite existing keys. Returns the hex public key.
///
/// # Errors
/// [`Error::Config`] if a key file exists; [`Error::Io`]; [`Error::Crypto`].
pub fn generate_keys(dir: &Path) -> Result<String, Error> {
    let sealing = dir.join("sealing.key");
    let signing = dir.join("signing.key");
    for path in [&sealing, &signing] {
        if path.exists() {
            return Err(config_err(format!(
                "{} already exists; refusing to overwrite a key (losing the sealing key loses every stored share)",
                path.display()
            )));
        }
    }
    let sealing_bytes = crate::crypto::envelope::random_key()?;
    crate::tls::write_secret_file(
        &sealing,
        &Zeroizing::new(hex::encode(sealing_bytes.as_slice())),
    )?;
    let seed = SigningKey::generate_seed()?;
    crate::tls::write_secret_file(&signing, &Zeroizing::new(hex::encode(seed.as_slice())))?;
    let public = hex::encode(SigningKey::from_seed(&seed)?.public_key());
    std::fs::write(dir.join("signing.pub"), format!("{public}\n"))?;
    Ok(public)
}

/// Reads a trustee public key given either as 64 hex digits or as a file holding them.
///
/// # Errors
/// [`Error::Config`].
pub fn read_public_key(value: &str) -> Result<[u8; 32], Error> {
    let text = if Path::new(value).is_file() {
        std::fs::read_to_string(value)
            .map_err(|e| config_err(format!("cannot read the trustee key {value}: {e}")))?
    } else {
        value.to_owned()
    };
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
        config_err(
            "the trustee key must be 64 hex digits, or a file holding them (signing.pub)".into(),
        )
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose
    use super::*;

    #[test]
    fn missing_file_names_the_field_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trustee.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\nclient_ca = \"ca.pem\"\n[store]\npath = \"t.db\"\n[keys]\nsealing_key = \"s.key\"\nsigning_key = \"g.key\"\n",
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("tls.cert"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trustee.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:0\"\nlisten_port = 3\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn generated_keys_load() {
        let dir = tempfile::tempdir().unwrap();
        let public = generate_keys(dir.path()).unwrap();
        load_sealing_key(&dir.path().join("sealing.key")).unwrap();
        let signing = load_signing_key(&dir.path().join("signing.key")).unwrap();
        assert_eq!(hex::encode(signing.public_key()), public);
        assert_eq!(
            read_public_key(dir.path().join("signing.pub").to_str().unwrap()).unwrap(),
            signing.public_key()
        );
        assert!(generate_keys(dir.path()).is_err());
    }
}
