//! The `[storage]` section of the proxy config: which backend, and how to reach it.

use serde::{Deserialize, Serialize};

/// Storage configuration (`[storage]` in the proxy config).
///
/// `Debug` is derived: the one secret, the S3 secret access key, is a
/// [`crate::secret::SecretString`] whose `Debug` prints `[REDACTED]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// Local filesystem under `root` (created if absent).
    Fs {
        /// Root directory.
        root: std::path::PathBuf,
        /// fsync files and directories before a write returns (slower, durable).
        #[serde(default)]
        fsync: bool,
    },
    /// In-memory (tests; lost on exit).
    Memory,
    /// An S3-compatible endpoint.
    S3 {
        /// Endpoint URL, e.g. `http://127.0.0.1:7480`.
        endpoint: String,
        /// Region to sign with.
        #[serde(default = "default_region")]
        region: String,
        /// The backend bucket all tenants' ciphertext goes into.
        bucket: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key (written out only where `proxy.toml` is generated).
        #[serde(serialize_with = "crate::secret::serialize_exposed")]
        secret_access_key: crate::secret::SecretString,
        /// Path-style requests (`endpoint/bucket/key`); needed by most self-hosted stores.
        #[serde(default = "default_true")]
        path_style: bool,
        /// Allow plain `http://` endpoints.
        #[serde(default)]
        allow_http: bool,
        /// Create `bucket` at startup if it does not exist.
        #[serde(default)]
        create_bucket: bool,
    },
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_true() -> bool {
    true
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Fs {
            root: "storage".into(),
            fsync: false,
        }
    }
}

#[cfg(test)]
impl StorageConfig {
    /// The filesystem below `root`, without fsync (tests).
    pub(crate) fn fs_for_tests(root: &std::path::Path) -> Self {
        StorageConfig::Fs {
            root: root.into(),
            fsync: false,
        }
    }

    /// Bucket `b` of a path-style, plain-HTTP S3 endpoint, keys `AK`/`SK` (tests).
    pub(crate) fn s3_for_tests(endpoint: String) -> Self {
        StorageConfig::S3 {
            endpoint,
            region: "us-east-1".into(),
            bucket: "b".into(),
            access_key_id: "AK".into(),
            secret_access_key: "SK".into(),
            path_style: true,
            allow_http: true,
            create_bucket: false,
        }
    }
}
