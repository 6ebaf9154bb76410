//! Storage backends: where ciphertext lives.
//!
//! One type, [`Storage`], over object_store's `ObjectStore` trait (the one backend trait), with
//! three implementations chosen by configuration: the local filesystem (the default), memory
//! (tests) and any S3-compatible endpoint (Ceph RGW, MinIO, Garage, AWS).
//!
//! Guarantees the proxy relies on:
//!
//! - **Atomic writes.** A [`Writer`] publishes its object only in [`Writer::complete`]. Small
//!   objects are buffered and written with one `put` (the filesystem writes a staged file and
//!   renames it); larger ones stream through a backend multipart upload (staged file on the
//!   filesystem, S3 multipart upload on S3). A writer dropped or aborted before completion
//!   leaves no visible object.
//! - **Bounded memory.** A writer holds at most one buffer of `chunk_size` bytes plus the
//!   parts in flight; reads are streams.
//!
//! This module sees only ciphertext and opaque paths; it must not depend on the proxy, the
//! trustee or the object format.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("not found")]
    NotFound,
    /// A path that cannot be stored (e.g. a key segment too long for the backend).
    #[error("invalid storage path: {0}")]
    InvalidPath(String),
    /// The backend failed (I/O, network, remote error).
    #[error("backend error: {0}")]
    Backend(String),
    /// Invalid storage configuration.
    #[error("storage configuration error: {0}")]
    Config(String),
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound,
            object_store::Error::InvalidPath { source } => Error::InvalidPath(source.to_string()),
            other => Error::Backend(other.to_string()),
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

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

/// Size and modification time of a stored object.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Stored (ciphertext) size in bytes.
    pub size: u64,
    /// Last modification time.
    pub last_modified: std::time::SystemTime,
}

/// The storage backend.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    chunk_size: usize,
    kind: Kind,
}

/// Which backend a [`Storage`] is, for what object_store cannot do for us (the staging sweep).
/// No `Debug`: the S3 variant holds the backend's secret key.
#[derive(Clone)]
enum Kind {
    /// The filesystem below this root.
    Fs(std::path::PathBuf),
    /// Memory: nothing outlives the process.
    Memory,
    /// An S3-compatible endpoint.
    S3(Arc<S3Backend>),
}

/// What the staging sweep needs of an S3 backend: object_store can abort a multipart upload
/// but not list them, so the listing is one signed request of our own.
struct S3Backend {
    store: Arc<object_store::aws::AmazonS3>,
    /// `<endpoint>/<bucket>` (path style) or `<scheme>://<bucket>.<host>` (virtual host).
    bucket_url: String,
    region: String,
    credential: object_store::aws::AwsCredential,
}

/// What one [`Storage::sweep_staging`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Staging leftovers removed.
    pub removed: usize,
    /// Staging files kept because they are younger than the safety age.
    pub kept: usize,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.store)
    }
}

/// The longest key an S3 backend stores, in bytes (S3's documented limit; MinIO and Ceph RGW
/// keep it).
pub const S3_MAX_KEY: usize = 1024;

/// Objects up to this size are written with one `put`; larger ones use multipart (5 MiB is
/// S3's minimum part size).
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;

impl Storage {
    /// Builds the backend from its configuration.
    ///
    /// # Errors
    /// [`Error::Config`] with the reason.
    pub fn from_config(config: &StorageConfig) -> Result<Self> {
        let mut s3_backend = None;
        let store: Arc<dyn ObjectStore> = match config {
            StorageConfig::Fs { root, fsync } => {
                std::fs::create_dir_all(root)
                    .map_err(|e| Error::Config(format!("cannot create {}: {e}", root.display())))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| Error::Config(e.to_string()))?
                    .with_automatic_cleanup(true)
                    .with_fsync(*fsync);
                Arc::new(fs)
            }
            StorageConfig::Memory => Arc::new(object_store::memory::InMemory::new()),
            StorageConfig::S3 {
                endpoint,
                region,
                bucket,
                access_key_id,
                secret_access_key,
                path_style,
                allow_http,
                create_bucket: _,
            } => {
                let s3 = object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(endpoint)
                    .with_region(region)
                    .with_bucket_name(bucket)
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key.expose_secret())
                    .with_virtual_hosted_style_request(!*path_style)
                    .with_allow_http(*allow_http)
                    .build()
                    .map_err(|e| Error::Config(e.to_string()))?;
                let s3 = Arc::new(s3);
                let endpoint = endpoint.trim_end_matches('/');
                let bucket_url = if *path_style {
                    format!("{endpoint}/{bucket}")
                } else {
                    match endpoint.split_once("://") {
                        Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                        None => format!("{endpoint}/{bucket}"),
                    }
                };
                s3_backend = Some(Arc::new(S3Backend {
                    store: s3.clone(),
                    bucket_url,
                    region: region.clone(),
                    credential: object_store::aws::AwsCredential {
                        key_id: access_key_id.clone(),
                        secret_key: secret_access_key.expose_secret().to_owned(),
                        token: None,
                    },
                }));
                s3
            }
        };
        let kind = match (config, s3_backend) {
            (StorageConfig::Fs { root, .. }, _) => Kind::Fs(root.clone()),
            (_, Some(s3)) => Kind::S3(s3),
            _ => Kind::Memory,
        };
        Ok(Self {
            store,
            chunk_size: DEFAULT_CHUNK_SIZE,
            kind,
        })
    }

    /// Creates the backend bucket of an S3 configuration with `create_bucket = true` (an
    /// existing bucket of the same owner is fine). Other backends: nothing to do.
    ///
    /// # Errors
    /// [`Error::Backend`] with the endpoint's answer.
    pub async fn ensure_bucket(config: &StorageConfig) -> Result<()> {
        let StorageConfig::S3 {
            endpoint,
            region,
            bucket,
            access_key_id,
            secret_access_key,
            create_bucket: true,
            ..
        } = config
        else {
            return Ok(());
        };
        let credential = object_store::aws::AwsCredential {
            key_id: access_key_id.clone(),
            secret_key: secret_access_key.expose_secret().to_owned(),
            token: None,
        };
        let url = format!("{}/{bucket}", endpoint.trim_end_matches('/'));
        let mut request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(&url)
            .body(object_store::client::HttpRequestBody::from(Vec::new()))
            .map_err(|e| Error::Config(format!("bad endpoint {endpoint}: {e}")))?;
        object_store::aws::AwsAuthorizer::new(&credential, "s3", region)
            .try_authorize(&mut request, None)
            .map_err(|e| Error::Config(e.to_string()))?;
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::Backend(e.to_string()))?;
        let mut builder = client.put(&url);
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| Error::Backend(format!("{url}: {e}")))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() || body.contains("BucketAlreadyOwnedByYou") {
            Ok(())
        } else {
            Err(Error::Backend(format!(
                "creating bucket {bucket} at {endpoint}: {status} {body}"
            )))
        }
    }

    /// An in-memory backend.
    pub fn memory() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            chunk_size: DEFAULT_CHUNK_SIZE,
            kind: Kind::Memory,
        }
    }

    /// The same backend, switching from one `put` to a multipart write at `chunk_size` bytes
    /// (tests use small ones to exercise the multipart path).
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Removes the staging leftovers of writes that never completed and are older than
    /// `older_than`: what a process killed in the middle of a write leaves behind.
    ///
    /// - **Filesystem:** a write is staged as `<name>#<n>` beside its target and renamed over
    ///   it when complete. A staging file no rename came for stays for ever, hidden from
    ///   listings and out of reach of every S3 call. Object names never contain `#`
    ///   ([`encode_key`] escapes it, and the other names of the layout are hex, digits and
    ///   bucket names), so a name ending in `#<digits>` is a staging file and nothing else.
    /// - **Memory:** a staged write lives in the writer and dies with the process; nothing to do.
    /// - **S3:** a killed write leaves an incomplete multipart upload, invisible and billed.
    ///   Uploads below `tenants/` initiated longer than `older_than` ago are aborted (every
    ///   multipart upload there is one of a [`Writer`]: the proxy stages its clients' parts as
    ///   objects). A bucket lifecycle rule `AbortIncompleteMultipartUpload` does the same
    ///   without a running proxy.
    ///
    /// # Safety age
    ///
    /// Only files whose modification time is older than `older_than` are removed: a staging
    /// file of a write in flight (this process's or another proxy's sharing the backend) is
    /// written to at least once per chunk, so it stays young while its write is alive. Use an
    /// age well above the longest pause of a slow client upload (the default is one hour).
    ///
    /// # Errors
    /// [`Error::Backend`] if the tree cannot be walked; files that vanish or cannot be removed
    /// while sweeping are skipped (a concurrent rename or sweep got there first).
    pub async fn sweep_staging(&self, older_than: std::time::Duration) -> Result<SweepReport> {
        match &self.kind {
            Kind::Fs(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || sweep_fs(&root, older_than))
                    .await
                    .map_err(|e| Error::Backend(format!("staging sweep task failed: {e}")))?
            }
            Kind::S3(s3) => s3.sweep(older_than).await,
            Kind::Memory => Ok(SweepReport::default()),
        }
    }

    fn path(path: &str) -> Result<Path> {
        Path::parse(path).map_err(|e| Error::InvalidPath(e.to_string()))
    }

    /// A path to write. An S3 backend stores keys of at most [`S3_MAX_KEY`] bytes; a longer
    /// path (a key near S3's limit, grown by its prefix and escapes) is refused here as
    /// [`Error::InvalidPath`], a client error, instead of reaching the backend and coming
    /// back as a backend failure that clients retry.
    fn write_path(&self, path: &str) -> Result<Path> {
        if matches!(self.kind, Kind::S3(_)) && path.len() > S3_MAX_KEY {
            return Err(Error::InvalidPath(format!(
                "the stored path is {} bytes, longer than the S3 backend's {S3_MAX_KEY}",
                path.len()
            )));
        }
        Self::path(path)
    }

    /// A path to read or delete: one the backend cannot store is simply absent.
    fn read_path(&self, path: &str) -> Result<Path> {
        if matches!(self.kind, Kind::S3(_)) && path.len() > S3_MAX_KEY {
            return Err(Error::NotFound);
        }
        Self::path(path)
    }

    /// Size and modification time, or [`Error::NotFound`].
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Backend`].
    pub async fn head(&self, path: &str) -> Result<Meta> {
        let meta = self.store.head(&self.read_path(path)?).await?;
        Ok(Meta {
            size: meta.size,
            last_modified: meta.last_modified.into(),
        })
    }

    /// Reads a byte range completely (for headers and footers; keep ranges small).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Backend`].
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        Ok(self.store.get_range(&self.read_path(path)?, range).await?)
    }

    /// Streams a byte range.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Backend`].
    pub async fn stream_range(
        &self,
        path: &str,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let options = object_store::GetOptions {
            range: Some(range.into()),
            ..Default::default()
        };
        let result = self.store.get_opts(&self.read_path(path)?, options).await?;
        Ok(result.into_stream().map_err(Error::from).boxed())
    }

    /// Writes a small object in one atomic put.
    ///
    /// # Errors
    /// [`Error::Backend`], [`Error::InvalidPath`].
    pub async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.write_path(path)?, PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    /// Starts an atomic streaming write.
    ///
    /// # Errors
    /// [`Error::InvalidPath`].
    pub fn writer(&self, path: &str) -> Result<Writer> {
        Ok(Writer {
            store: self.store.clone(),
            path: self.write_path(path)?,
            chunk_size: self.chunk_size,
            buffer: Vec::new(),
            upload: None,
            written: 0,
        })
    }

    /// Deletes an object; deleting a missing object succeeds.
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub async fn delete(&self, path: &str) -> Result<()> {
        let path = match self.read_path(path) {
            Err(Error::NotFound) => return Ok(()),
            other => other?,
        };
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists every object under a directory prefix (recursively), as (path, meta).
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<(String, Meta)>> {
        let prefix = match Self::path(prefix) {
            Ok(p) => p,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        self.store
            .list(Some(&prefix))
            .map(|item| {
                let meta = item?;
                Ok((
                    meta.location.to_string(),
                    Meta {
                        size: meta.size,
                        last_modified: meta.last_modified.into(),
                    },
                ))
            })
            .boxed()
    }

    /// Copies raw stored bytes.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Backend`].
    pub async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.store
            .copy(&self.read_path(from)?, &self.write_path(to)?)
            .await?;
        Ok(())
    }
}

impl S3Backend {
    /// Aborts the multipart uploads below `tenants/` initiated more than `older_than` ago.
    async fn sweep(&self, older_than: std::time::Duration) -> Result<SweepReport> {
        use object_store::multipart::MultipartStore as _;
        let now = std::time::SystemTime::now();
        let mut report = SweepReport::default();
        let mut marker: Option<(String, String)> = None;
        // Bounded: a backend that keeps answering "truncated" cannot keep the sweep forever.
        for _ in 0..10_000 {
            let mut query = vec![
                ("prefix", "tenants/".to_owned()),
                ("uploads", String::new()),
            ];
            if let Some((key, id)) = &marker {
                query.push(("key-marker", key.clone()));
                query.push(("upload-id-marker", id.clone()));
            }
            let body = self.signed_get(&query).await?;
            for upload in xml_blocks(&body, "Upload") {
                let (Some(key), Some(id), Some(initiated)) = (
                    xml_text(upload, "Key"),
                    xml_text(upload, "UploadId"),
                    xml_text(upload, "Initiated").and_then(|t| parse_s3_time(&t)),
                ) else {
                    continue;
                };
                if now.duration_since(initiated).unwrap_or_default() < older_than {
                    report.kept += 1;
                    continue;
                }
                let Ok(path) = Path::parse(&key) else {
                    continue;
                };
                match self.store.abort_multipart(&path, &id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => report.removed += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "aborting a leftover multipart upload failed")
                    }
                }
            }
            if xml_text(&body, "IsTruncated").as_deref() != Some("true") {
                return Ok(report);
            }
            match (
                xml_text(&body, "NextKeyMarker"),
                xml_text(&body, "NextUploadIdMarker"),
            ) {
                (Some(key), Some(id)) => marker = Some((key, id)),
                _ => return Ok(report),
            }
        }
        Ok(report)
    }

    /// A SigV4-signed GET of the bucket with `query`; the body as text.
    async fn signed_get(&self, query: &[(&str, String)]) -> Result<String> {
        let encoded: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", uri_encode(v)))
            .collect();
        let url = format!("{}?{}", self.bucket_url, encoded.join("&"));
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(&url)
            .body(object_store::client::HttpRequestBody::from(Vec::new()))
            .map_err(|e| Error::Backend(format!("listing multipart uploads: {e}")))?;
        object_store::aws::AwsAuthorizer::new(&self.credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| Error::Backend(e.to_string()))?;
        crate::tls::install_crypto_provider();
        // The startup sweep runs before the proxy serves: a backend that hangs must not hold
        // the start for ever (object_store's own requests have the same default timeout).
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Backend(e.to_string()))?;
        let mut builder = client.get(&url);
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| Error::Backend(format!("listing multipart uploads: {e}")))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| Error::Backend(format!("listing multipart uploads: {e}")))?;
        if !status.is_success() {
            return Err(Error::Backend(format!(
                "listing multipart uploads: {status}"
            )));
        }
        Ok(body)
    }
}

/// Percent-encodes a query value as SigV4 canonicalizes it.
fn uri_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        escape_byte(b, &mut out);
    }
    out
}

/// The contents of every `<tag>...</tag>` element of `xml`, in order (S3's answers are flat
/// enough for this; no attributes, no nesting of the same tag).
fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|part| part.split_once(close.as_str()).map(|(inner, _)| inner))
        .collect()
}

/// The unescaped text of the first `<tag>` element of `xml`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let raw = xml_blocks(xml, tag).into_iter().next()?;
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `2026-12-03T08:29:54.000Z` (S3's timestamps) as a time; `None` if it is anything else.
fn parse_s3_time(text: &str) -> Option<std::time::SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time_of_day) = text.split_once('T')?;
    let mut date_parts = date.split('-').map(|p| p.parse::<i32>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let seconds_text = time_of_day.split('.').next()?;
    let mut time_parts = seconds_text.split(':').map(|p| p.parse::<u8>().ok());
    let (hour, minute, second) = (
        time_parts.next()??,
        time_parts.next()??,
        time_parts.next()??,
    );
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let time_of_day = time::Time::from_hms(hour, minute, second).ok()?;
    let at = time::PrimitiveDateTime::new(date, time_of_day).assume_utc();
    Some(std::time::SystemTime::from(at))
}

/// Whether a file name is a filesystem staging file: `<anything>#<one or more digits>`, the
/// names object_store's filesystem backend stages writes and copies under.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn sweep_fs(root: &std::path::Path, older_than: std::time::Duration) -> Result<SweepReport> {
    let now = std::time::SystemTime::now();
    let mut report = SweepReport::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed under us (automatic cleanup of an emptied directory): nothing to sweep.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(Error::Backend(format!("sweeping {}: {e}", dir.display()))),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if file_type.is_dir() {
                dirs.push(path);
                continue;
            }
            if !file_type.is_file() || !entry.file_name().to_str().is_some_and(is_staging_name) {
                continue;
            }
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            // A clock step backwards makes every file look fresh: kept, swept next time.
            if now.duration_since(modified).unwrap_or_default() < older_than {
                report.kept += 1;
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                report.removed += 1;
                remove_empty_parents(root, &path);
            }
        }
    }
    Ok(report)
}

/// Removes the directories a swept file leaves empty, up to (not including) the root, as the
/// filesystem backend does after a delete. `remove_dir` fails on a non-empty directory, so a
/// directory a concurrent write has just put a file into stays.
fn remove_empty_parents(root: &std::path::Path, file: &std::path::Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// An atomic streaming write: nothing is visible until [`Writer::complete`] returns.
pub struct Writer {
    store: Arc<dyn ObjectStore>,
    path: Path,
    chunk_size: usize,
    buffer: Vec<u8>,
    upload: Option<WriteMultipart>,
    written: u64,
}

impl Writer {
    /// Appends bytes; applies backpressure when parts are in flight.
    ///
    /// # Errors
    /// [`Error::Backend`].
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        if let Some(upload) = &mut self.upload {
            upload.wait_for_capacity(2).await?;
            upload.write(data);
            return Ok(());
        }
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= self.chunk_size {
            let inner = self.store.put_multipart(&self.path).await?;
            let mut upload = WriteMultipart::new_with_chunk_size(inner, self.chunk_size);
            upload.write(&std::mem::take(&mut self.buffer));
            self.upload = Some(upload);
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Publishes the object atomically.
    ///
    /// # Errors
    /// [`Error::Backend`]; the object is then not visible.
    pub async fn complete(mut self) -> Result<()> {
        match self.upload.take() {
            Some(upload) => {
                upload.finish().await?;
            }
            None => {
                let data = Bytes::from(std::mem::take(&mut self.buffer));
                self.store
                    .put(&self.path, PutPayload::from_bytes(data))
                    .await?;
            }
        }
        Ok(())
    }

    /// Abandons the write; nothing becomes visible.
    pub async fn abort(mut self) {
        if let Some(upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(error = %e, "aborting a backend multipart upload failed");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A writer dropped mid-stream (client went away, handler error): abort in the
        // background so staged data is removed. The object was never published.
        if let Some(upload) = self.upload.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// Longest encoded path component [`encode_key`] produces, in bytes (marker included).
///
/// Why 250: Linux filesystems name at most 255 bytes per component (NAME_MAX), and the
/// filesystem backend stages every write as `<name>#<n>` beside its target, so a stored name
/// must leave room for `#` and a few digits. Every component that fitted before this limit
/// existed (at most 253 bytes with its staging suffix) keeps its old encoding unless it is one
/// of the rare 251 to 253 byte names.
pub const MAX_COMPONENT: usize = 250;

/// Reversible, backend-safe encoding of an S3 object key as a storage path below some prefix.
///
/// The key is split at `/`; every segment but the last becomes `d<escaped>`, the last one
/// `f<escaped>`, where escaping keeps `[A-Za-z0-9._~-]` and percent-encodes every other byte.
/// So keys never collide with each other on a filesystem (`a` is the file `fa`, `a/b` the file
/// `fb` in the directory `da`), empty segments and `..` are harmless, and listing a key prefix
/// only has to walk the directory of the prefix.
///
/// A segment whose encoded component would exceed [`MAX_COMPONENT`] bytes (S3 allows 1,024
/// byte keys, a filesystem 255 byte names) is cut into pieces at escape boundaries: every
/// piece but the last becomes a directory `c<escaped piece>`, and the last piece carries the
/// segment's `d` or `f`. `c` pieces are glued back without a `/` when decoding, so the stored
/// path still spells the whole key and listings return it exactly. The cut is deterministic
/// (each piece as long as fits), so one key has one path. The encoded key never contains `#`
/// (escaped as `%23`), which is what tells a backend's staging files apart from objects.
pub fn encode_key(key: &str) -> String {
    let segments: Vec<&str> = key.split('/').collect();
    let last = segments.len() - 1;
    let mut out = String::with_capacity(key.len() + segments.len() * 2);
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_segment(segment, if i == last { 'f' } else { 'd' }, &mut out);
    }
    out
}

/// The directory path (encoded) that contains every key starting with `prefix`.
pub fn encode_prefix_dir(prefix: &str) -> String {
    match prefix.rfind('/') {
        None => String::new(),
        Some(i) => {
            let mut out = String::new();
            for (n, segment) in prefix[..i].split('/').enumerate() {
                if n > 0 {
                    out.push('/');
                }
                encode_segment(segment, 'd', &mut out);
            }
            out
        }
    }
}

/// Appends one key segment as `marker<escaped>`, preceded by `c<piece>/` directories when the
/// escaped segment is longer than a component may be.
fn encode_segment(segment: &str, marker: char, out: &mut String) {
    let mut piece = String::new();
    let mut token = String::with_capacity(3);
    for b in segment.bytes() {
        token.clear();
        escape_byte(b, &mut token);
        // One byte of every component is the marker.
        if 1 + piece.len() + token.len() > MAX_COMPONENT {
            out.push('c');
            out.push_str(&piece);
            out.push('/');
            piece.clear();
        }
        piece.push_str(&token);
    }
    out.push(marker);
    out.push_str(&piece);
}

fn escape_byte(b: u8, out: &mut String) {
    if is_unreserved(b) {
        out.push(char::from(b));
    } else {
        out.push_str(&format!("%{b:02X}"));
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

/// Inverse of [`encode_key`]; `None` for anything that is not an encoded key.
pub fn decode_key(encoded: &str) -> Option<String> {
    let components: Vec<&str> = encoded.split('/').collect();
    let last = components.len() - 1;
    let mut out = Vec::with_capacity(encoded.len());
    for (i, component) in components.iter().enumerate() {
        let bytes = component.as_bytes();
        let (&marker, mut rest) = bytes.split_first()?;
        match marker {
            // A piece of a long segment: glued to the next component, so never the last one,
            // and never empty (encode_key only cuts before a byte that does not fit).
            b'c' if i != last && !rest.is_empty() => {}
            b'd' if i != last => {}
            b'f' if i == last => {}
            _ => return None,
        }
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' {
                let hex = tail.get(..2)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                rest = &tail[2..];
            } else if is_unreserved(b) {
                out.push(b);
                rest = tail;
            } else {
                // Not produced by encode_key (e.g. a backend's staging file): not an object.
                return None;
            }
        }
        if marker == b'd' {
            out.push(b'/');
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;

    #[test]
    fn key_encoding_round_trips_awkward_keys() {
        for key in [
            "a",
            "a/b",
            "a//b",
            "dir/",
            "../x",
            ".",
            "ü ber/%41#?",
            "/lead",
        ] {
            let enc = encode_key(key);
            assert!(Path::parse(&enc).is_ok(), "{enc}");
            assert_eq!(decode_key(&enc).as_deref(), Some(key));
        }
        assert_ne!(
            encode_key("a"),
            encode_key("a/b").split('/').next().unwrap()
        );
    }

    fn long_keys() -> Vec<String> {
        vec![
            "a".repeat(1024),
            "é".repeat(300),
            "x/".repeat(511) + "y",
            format!("{}/{}", "é".repeat(100), "%".repeat(400)),
            format!("{}/tail", "b".repeat(600)),
            // Exactly at the limit, one over, and an escape straddling the cut.
            "m".repeat(MAX_COMPONENT - 1),
            "m".repeat(MAX_COMPONENT),
            format!("{}é", "m".repeat(MAX_COMPONENT - 3)),
        ]
    }

    #[test]
    fn long_segments_are_cut_into_components_that_fit_name_max_and_round_trip() {
        for key in long_keys() {
            let enc = encode_key(&key);
            assert!(Path::parse(&enc).is_ok(), "{enc}");
            for component in enc.split('/') {
                assert!(component.len() <= MAX_COMPONENT, "{}", component.len());
                assert!(!component.contains('#'));
            }
            assert_eq!(decode_key(&enc).as_deref(), Some(key.as_str()));
        }
        // Short segments keep the encoding objects were stored under before.
        assert_eq!(encode_key("a/b"), "da/fb");
        assert_eq!(
            encode_key(&"m".repeat(MAX_COMPONENT - 1)),
            format!("f{}", "m".repeat(MAX_COMPONENT - 1))
        );
    }

    #[test]
    fn decoding_rejects_paths_encode_key_never_writes() {
        for bad in [
            "ca", "ca/", "c/fb", "fa/fb", "da", "fa#1", "f%zz", "f%+1", "",
        ] {
            assert_eq!(decode_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefix_dir_of_a_long_segment_contains_its_keys() {
        let long = "q".repeat(700);
        let key = format!("{long}/inner/x");
        let dir = encode_prefix_dir(&format!("{long}/in"));
        assert!(encode_key(&key).starts_with(&format!("{dir}/")), "{dir}");
    }

    #[tokio::test]
    async fn filesystem_stores_lists_and_deletes_keys_longer_than_name_max() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_config(&StorageConfig::Fs {
            root: dir.path().into(),
            fsync: false,
        })
        .unwrap();
        let mut expected = Vec::new();
        for key in long_keys() {
            let path = format!("t/{}", encode_key(&key));
            storage.put(&path, Bytes::from_static(b"v")).await.unwrap();
            assert_eq!(storage.head(&path).await.unwrap().size, 1);
            expected.push(key);
        }
        let mut listed: Vec<String> = storage
            .list("t")
            .map(|item| decode_key(item.unwrap().0.strip_prefix("t/").unwrap()).unwrap())
            .collect()
            .await;
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);
        for key in long_keys() {
            storage
                .delete(&format!("t/{}", encode_key(&key)))
                .await
                .unwrap();
        }
        assert!(storage.list("t").collect::<Vec<_>>().await.is_empty());
    }

    #[tokio::test]
    async fn s3_paths_over_its_key_limit_are_a_client_error_or_absent_without_a_request() {
        // Nothing listens on port 1: a request would fail as a backend error (after retries).
        crate::tls::install_crypto_provider();
        let storage = Storage::from_config(&StorageConfig::S3 {
            endpoint: "http://127.0.0.1:1".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            access_key_id: "AK".into(),
            secret_access_key: "SK".into(),
            path_style: true,
            allow_http: true,
            create_bucket: false,
        })
        .unwrap();
        let path = format!("tenants/t/objects/b/{}", encode_key(&"é".repeat(300)));
        assert!(path.len() > S3_MAX_KEY);
        assert!(matches!(storage.writer(&path), Err(Error::InvalidPath(_))));
        assert!(matches!(
            storage.put(&path, Bytes::new()).await,
            Err(Error::InvalidPath(_))
        ));
        assert!(matches!(storage.head(&path).await, Err(Error::NotFound)));
        assert!(matches!(
            storage.read_range(&path, 0..1).await,
            Err(Error::NotFound)
        ));
        assert!(storage.delete(&path).await.is_ok());
    }

    /// A fake S3 endpoint on 127.0.0.1:0 that lists `uploads_xml` for `?uploads` and answers
    /// 204 to everything else; returns its address and the requests it saw.
    async fn fake_s3(
        uploads_xml: String,
    ) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let requests = requests.clone();
                let xml = uploads_xml.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let line = format!("{} {}", req.method(), req.uri());
                            requests.lock().unwrap().push(line);
                            let (status, body) = if req.method() == http::Method::GET {
                                (200, Bytes::from(xml.clone()))
                            } else {
                                (204, Bytes::new())
                            };
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(http_body_util::Full::new(body))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn s3_sweep_aborts_multipart_uploads_older_than_the_age_only() {
        crate::tls::install_crypto_provider();
        let now = time::OffsetDateTime::now_utc();
        let fresh = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListMultipartUploadsResult>\
             <Bucket>b</Bucket><IsTruncated>false</IsTruncated>\
             <Upload><Key>tenants/t/objects/b/fold</Key><UploadId>old-1</UploadId>\
             <Initiated>2020-01-02T03:04:05.000Z</Initiated></Upload>\
             <Upload><Key>tenants/t/objects/b/fnew</Key><UploadId>new-1</UploadId>\
             <Initiated>{fresh}</Initiated></Upload></ListMultipartUploadsResult>"
        );
        let (addr, seen) = fake_s3(xml).await;
        let storage = Storage::from_config(&StorageConfig::S3 {
            endpoint: format!("http://{addr}"),
            region: "us-east-1".into(),
            bucket: "b".into(),
            access_key_id: "AK".into(),
            secret_access_key: "SK".into(),
            path_style: true,
            allow_http: true,
            create_bucket: false,
        })
        .unwrap();
        let report = storage
            .sweep_staging(std::time::Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(
            report,
            SweepReport {
                removed: 1,
                kept: 1
            }
        );
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.iter().any(|r| r.starts_with("GET /b?")
                && r.contains("uploads")
                && r.contains("prefix=tenants%2F")),
            "{seen:?}"
        );
        let deletes: Vec<&String> = seen.iter().filter(|r| r.starts_with("DELETE")).collect();
        assert_eq!(
            deletes,
            ["DELETE /b/tenants/t/objects/b/fold?uploadId=old-1"],
            "{seen:?}"
        );
    }

    #[test]
    fn s3_timestamps_parse_and_garbage_does_not() {
        let t = parse_s3_time("2020-01-02T03:04:05.000Z").unwrap();
        let secs = t
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(secs, 1_577_934_245);
        for bad in [
            "",
            "2020-01-02",
            "2020-13-02T03:04:05Z",
            "x-01-02T03:04:05Z",
        ] {
            assert_eq!(parse_s3_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefix_dir_contains_prefixed_keys() {
        assert_eq!(encode_prefix_dir("abc"), "");
        assert_eq!(encode_prefix_dir("a/b/c"), "da/db");
        assert!(encode_key("a/b/cde").starts_with(&encode_prefix_dir("a/b/c")));
    }

    #[tokio::test]
    async fn aborted_and_dropped_writers_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::from_config(&StorageConfig::Fs {
            root: dir.path().into(),
            fsync: false,
        })
        .unwrap();
        let mut storage_small = storage.clone();
        storage_small.chunk_size = 5 * 1024 * 1024;
        let mut w = storage_small.writer("t/x").unwrap();
        w.write(&vec![1u8; 6 * 1024 * 1024]).await.unwrap();
        drop(w);
        let mut w = storage.writer("t/y").unwrap();
        w.write(b"abc").await.unwrap();
        w.abort().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let listed: Vec<_> = storage.list("t").collect().await;
        assert!(listed.is_empty(), "{listed:?}");
        let mut w = storage_small.writer("t/z").unwrap();
        w.write(&vec![2u8; 6 * 1024 * 1024]).await.unwrap();
        w.complete().await.unwrap();
        assert_eq!(storage.head("t/z").await.unwrap().size, 6 * 1024 * 1024);
    }
}
