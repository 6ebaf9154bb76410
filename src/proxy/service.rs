//! The S3 operations: an `s3s::S3` implementation that encrypts on the way in and decrypts on
//! the way out.
//!
//! Storage layout (all below the backend root):
//!
//! ```text
//! tenants/<tenant>/buckets/<bucket>                     empty bucket marker
//! tenants/<tenant>/objects/<bucket>/<encoded key>       header ‖ runs [‖ footer]
//! tenants/<tenant>/uploads/<bucket>/<id>/header         multipart header (+ object key)
//! tenants/<tenant>/uploads/<bucket>/<id>/p<part>-<len>-<etag>-<attempt>
//!                                                       one staged run per part attempt
//! ```
//!
//! A staged part's name records its plaintext length, its ETag (a keyed digest of the
//! plaintext, docs/proxy.md) and its attempt id, which selects the key the run is encrypted
//! under (multipart layout 2, docs/format.md §7). Uploads begun before layout 2 stage
//! `p<part>-<len>-<etag>` and complete in layout 1.
//!
//! The object key encoding is [`crate::storage::encode_key`]. Every response shows the
//! plaintext view: Content-Length, ranges and listing sizes are plaintext sizes.
//!
//! Content-Type, Content-Encoding, Content-Disposition, Content-Language, Cache-Control and the
//! `x-amz-meta-*` user metadata travel sealed inside the object header (format v2,
//! docs/format.md §6), never in plaintext next to the ciphertext.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use md5::Digest as _;
use s3s::dto::{self, ETag, StreamingBlob, Timestamp};
use s3s::{S3, S3Request, S3Response, S3Result};
use zeroize::Zeroizing;

use super::config::MultipartConfig;
use super::error::ProxyError;
use super::keys::{KeyService, ReleaseContext, TenantKeys};
use super::listing;
use super::registry::Registry;
use crate::crypto::DekContext;
use crate::format::{self, Layout};
use crate::secret::Kek;
use crate::storage::{self, Storage};

/// GET responses up to this size are decrypted before the response starts.
const BUFFERED_GET_LIMIT: u64 = 1024 * 1024;

/// A GET of a stored object up to this size reads it whole in the same backend call that reads
/// the header, so a small GET costs two backend calls (existence, read) instead of four. Each
/// call is an HTTP request on S3 and a blocking-pool hand-off on the filesystem; profiling the
/// TTL-0 open-loop cell showed those hand-offs as the proxy's main cost (docs/benchmarks.md).
const READ_AHEAD: u64 = 256 * 1024;

/// Plaintext is written to storage in pieces of about this size.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Storage path of a bucket's marker object (used by `treuhand dev` to pre-create buckets).
pub fn bucket_marker_path(tenant: &str, bucket: &str) -> String {
    format!("tenants/{tenant}/buckets/{bucket}")
}

/// One registered tenant.
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// The tenant's S3 access key id.
    pub access_key_id: String,
    /// Key release configuration.
    pub keys: TenantKeys,
}

/// The S3 service state.
pub struct Proxy {
    /// Ciphers of multipart uploads in progress, per tenant (see
    /// `complete_multipart_upload`).
    uploads: std::sync::Mutex<UploadCiphers>,
    /// Multipart limits.
    multipart: MultipartConfig,
    /// Tenants by access key id (reloadable, shared with the SigV4 check).
    tenants: Arc<Registry>,
    storage: Storage,
    keys: Arc<KeyService>,
    /// Benchmark baseline only (`danger_passthrough_no_encryption`): PUT/GET/HEAD move bytes
    /// unencrypted and ask no trustee. Never on by default.
    passthrough: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("tenants", &self.tenants.len())
            .field("storage", &self.storage)
            .finish()
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

fn random_hex(bytes: usize) -> Result<String, ProxyError> {
    let mut buf = vec![0u8; bytes];
    crate::crypto::envelope::fill_random(&mut buf)
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// Parses the SSE-C headers into the raw share bytes.
pub(crate) fn sse_c(
    algorithm: Option<&str>,
    key: Option<&str>,
    key_md5: Option<&str>,
) -> Result<Option<Zeroizing<Vec<u8>>>, ProxyError> {
    let Some(key) = key else {
        if algorithm.is_some() {
            return Err(ProxyError::MalformedShare(
                "SSE-C algorithm given without a key",
            ));
        }
        return Ok(None);
    };
    if algorithm != Some("AES256") {
        return Err(ProxyError::MalformedShare(
            "the SSE-C algorithm must be AES256",
        ));
    }
    let raw = Zeroizing::new(
        STANDARD
            .decode(key.trim())
            .map_err(|_| ProxyError::MalformedShare("the SSE-C key is not base64"))?,
    );
    if raw.len() != 32 {
        return Err(ProxyError::MalformedShare("the SSE-C key must be 32 bytes"));
    }
    if let Some(md5) = key_md5 {
        let expected = STANDARD.encode(md5::Md5::digest(raw.as_slice()));
        if md5.trim() != expected {
            return Err(ProxyError::MalformedShare(
                "the SSE-C key MD5 does not match the key",
            ));
        }
    }
    Ok(Some(raw))
}

fn key_md5_of(raw: Option<&Zeroizing<Vec<u8>>>) -> Option<String> {
    raw.map(|r| STANDARD.encode(md5::Md5::digest(r.as_slice())))
}

fn request_id_fallback() -> String {
    random_hex(8).unwrap_or_else(|_| "unknown".into())
}

fn phase(name: &'static str, started: Instant) {
    metrics::histogram!("treuhand_phase_seconds", "phase" => name)
        .record(started.elapsed().as_secs_f64());
}

/// The standard headers stored with an object, by their format v2 metadata names.
const CACHE_CONTROL: &str = "cache-control";
const CONTENT_DISPOSITION: &str = "content-disposition";
const CONTENT_ENCODING: &str = "content-encoding";
const CONTENT_LANGUAGE: &str = "content-language";
const CONTENT_TYPE: &str = "content-type";
/// User metadata is stored under its full header name, so it can never collide with the
/// standard headers above.
const USER_METADATA_PREFIX: &str = "x-amz-meta-";

/// The metadata a PutObject, CreateMultipartUpload or CopyObject (REPLACE) request carries, as
/// it is sealed into the header. Rejects metadata the format cannot hold before any key is
/// released.
fn request_metadata(
    standard: [(&'static str, Option<&str>); 5],
    user: Option<&dto::Metadata>,
) -> Result<format::Metadata, ProxyError> {
    let mut out = format::Metadata::new();
    for (name, value) in standard {
        if let Some(value) = value {
            out.insert(name, value);
        }
    }
    for (name, value) in user.into_iter().flatten() {
        out.insert(&format!("{USER_METADATA_PREFIX}{name}"), value);
    }
    out.check_size()?;
    Ok(out)
}

/// [`request_metadata`] for any input type with the standard fields (they share field names).
macro_rules! request_metadata {
    ($input:expr) => {
        request_metadata(
            [
                (CACHE_CONTROL, $input.cache_control.as_deref()),
                (CONTENT_DISPOSITION, $input.content_disposition.as_deref()),
                (CONTENT_ENCODING, $input.content_encoding.as_deref()),
                (CONTENT_LANGUAGE, $input.content_language.as_deref()),
                (CONTENT_TYPE, $input.content_type.as_deref()),
            ],
            $input.metadata.as_ref(),
        )
    };
}

/// The stored metadata as GetObject and HeadObject return it.
struct ResponseMetadata {
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    /// Defaults to application/octet-stream, as S3 does for objects stored without a type.
    content_type: String,
    metadata: Option<dto::Metadata>,
}

impl ResponseMetadata {
    fn of(stored: &format::Metadata) -> Self {
        let get = |name: &str| stored.get(name).map(str::to_owned);
        let user: dto::Metadata = stored
            .iter()
            .filter_map(|(name, value)| {
                name.strip_prefix(USER_METADATA_PREFIX)
                    .map(|n| (n.to_owned(), value.to_owned()))
            })
            .collect();
        Self {
            cache_control: get(CACHE_CONTROL),
            content_disposition: get(CONTENT_DISPOSITION),
            content_encoding: get(CONTENT_ENCODING),
            content_language: get(CONTENT_LANGUAGE),
            content_type: get(CONTENT_TYPE).unwrap_or_else(|| "application/octet-stream".into()),
            metadata: (!user.is_empty()).then_some(user),
        }
    }
}

/// What an opened object looks like to the handlers.
struct Opened {
    cipher: format::ObjectCipher,
    /// The stored bytes from offset 0 that `open` read: the header at least, the whole object
    /// when it was small enough for the read-ahead.
    prefix: Bytes,
    footer: Option<Vec<u8>>,
    meta: storage::Meta,
    plaintext_len: u64,
    etag: String,
}

impl Proxy {
    /// Builds the service state.
    pub fn new(tenants: Arc<Registry>, storage: Storage, keys: Arc<KeyService>) -> Self {
        Self {
            tenants,
            storage,
            keys,
            uploads: std::sync::Mutex::new(UploadCiphers::default()),
            multipart: MultipartConfig::default(),
            passthrough: false,
        }
    }

    /// Sets the multipart limits (per-tenant cipher cap).
    pub fn with_multipart(mut self, config: MultipartConfig) -> Self {
        self.multipart = config;
        self
    }

    /// Turns on the TLS pass-through benchmark baseline: no encryption, no escrow.
    pub fn with_passthrough(mut self, on: bool) -> Self {
        if on {
            tracing::warn!(
                "danger_passthrough_no_encryption is set: objects are stored UNENCRYPTED (benchmark baseline only)"
            );
        }
        self.passthrough = on;
        self
    }

    /// Pass-through PUT: the body goes to storage as it is.
    async fn put_plain(
        &self,
        path: &str,
        body: futures::stream::BoxStream<'static, Result<Bytes, s3s::StdError>>,
    ) -> Result<String, ProxyError> {
        let mut body = body;
        let mut writer = self.storage.writer(path)?;
        let mut len = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ProxyError::InvalidRequest(format!("reading the request body failed: {e}"))
            })?;
            len += chunk.len() as u64;
            let started = Instant::now();
            writer.write(&chunk).await?;
            phase("backend_io", started);
        }
        writer.complete().await?;
        Ok(md5_hex(format!("{path}:{len}").as_bytes()))
    }

    /// Pass-through GET body: the stored bytes of `range`, streamed.
    fn stream_plain(&self, path: String, range: Range<u64>) -> StreamingBlob {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let storage = self.storage.clone();
        let remaining = range.end - range.start;
        tokio::spawn(async move {
            let result: Result<(), ProxyError> = async {
                let mut stream = storage.stream_range(&path, range).await?;
                while let Some(chunk) = stream.next().await {
                    if tx.send(Ok(chunk?)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "pass-through read failed");
                let _ = tx
                    .send(Err(std::io::Error::other("backend read failed")))
                    .await;
            }
        });
        StreamingBlob::new(Body { rx, remaining })
    }

    fn tenant<T>(&self, req: &S3Request<T>) -> Result<Arc<Tenant>, ProxyError> {
        // s3s has already verified the signature; the access key maps to exactly one tenant.
        let creds = req
            .credentials
            .as_ref()
            .ok_or(ProxyError::Denied("anonymous requests are refused".into()))?;
        self.tenants
            .tenant(&creds.access_key)
            .ok_or(ProxyError::Denied("unknown access key".into()))
    }

    fn bucket_path(tenant: &Tenant, bucket: &str) -> String {
        bucket_marker_path(&tenant.id, bucket)
    }

    fn objects_dir(tenant: &Tenant, bucket: &str) -> String {
        format!("tenants/{}/objects/{bucket}", tenant.id)
    }

    fn object_path(tenant: &Tenant, bucket: &str, key: &str) -> String {
        format!(
            "{}/{}",
            Self::objects_dir(tenant, bucket),
            storage::encode_key(key)
        )
    }

    fn upload_dir(tenant: &Tenant, bucket: &str, upload_id: &str) -> Result<String, ProxyError> {
        if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProxyError::NoSuchUpload);
        }
        Ok(format!(
            "tenants/{}/uploads/{bucket}/{upload_id}",
            tenant.id
        ))
    }

    /// Size and time of a stored object, or `NoSuchKey` / `NoSuchBucket`. The bucket marker is
    /// only looked up when the object is missing: an object can only exist in an existing
    /// bucket (DeleteBucket refuses non-empty buckets), and skipping that lookup saves a
    /// backend call on every GET and HEAD.
    /// `x-amz-server-side-encryption: aws:kms` on the responses of a tenant whose share comes
    /// from its holder (no SSE-C). It tells clients what S3 tells them for SSE-KMS objects: the
    /// object is encrypted under a managed key and its ETag is not the MD5 of the plaintext.
    /// s3cmd and the AWS SDK for Java skip their upload MD5 check on it; without it, s3cmd
    /// retried every upload and gave up ("MD5 sums of sent and received files don't match").
    /// SSE-C tenants get the SSE-C headers instead, as on S3.
    fn escrow_sse(&self, tenant: &Tenant) -> Option<dto::ServerSideEncryption> {
        (!self.needs_sse_c(tenant))
            .then(|| dto::ServerSideEncryption::from_static(dto::ServerSideEncryption::AWS_KMS))
    }

    async fn stat_object(
        &self,
        tenant: &Tenant,
        bucket: &str,
        path: &str,
    ) -> Result<storage::Meta, ProxyError> {
        let started = Instant::now();
        let result = self.storage.head(path).await;
        phase("backend_io", started);
        match result {
            Ok(meta) => Ok(meta),
            Err(storage::Error::NotFound) => {
                self.require_bucket(tenant, bucket).await?;
                Err(ProxyError::NoSuchKey)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn require_bucket(
        &self,
        tenant: &Tenant,
        bucket: &str,
    ) -> Result<storage::Meta, ProxyError> {
        let started = Instant::now();
        let result = self.storage.head(&Self::bucket_path(tenant, bucket)).await;
        phase("backend_io", started);
        match result {
            Ok(meta) => Ok(meta),
            Err(storage::Error::NotFound) => Err(ProxyError::NoSuchBucket),
            Err(e) => Err(e.into()),
        }
    }

    async fn kek(
        &self,
        request_id: Option<&super::server::RequestId>,
        tenant: &Tenant,
        share: Option<&Zeroizing<Vec<u8>>>,
        reason: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Arc<Kek>, ProxyError> {
        let context = ReleaseContext {
            request_id: request_id
                .map(|r| r.0.clone())
                .unwrap_or_else(request_id_fallback),
            object: Some((bucket.to_owned(), key.to_owned())),
            reason: reason.to_owned(),
        };
        self.keys
            .kek(&tenant.keys, share.map(|s| s.as_slice()), &context)
            .await
    }

    /// The shared preamble of GetObject and HeadObject: release the key, open the object and
    /// apply the conditional headers.
    #[allow(clippy::too_many_arguments)] // One call site per operation; a struct adds nothing.
    async fn open_for_read(
        &self,
        request_id: Option<&super::server::RequestId>,
        tenant: &Tenant,
        share: Option<&Zeroizing<Vec<u8>>>,
        operation: &str,
        (bucket, key): (&str, &str),
        conditions: Conditions<'_>,
        (meta, read_ahead): (storage::Meta, u64),
    ) -> Result<Opened, ProxyError> {
        let kek = self
            .kek(request_id, tenant, share, operation, bucket, key)
            .await?;
        let opened = self
            .open(tenant, &kek, bucket, key, meta, read_ahead)
            .await?;
        check_conditions(
            &opened.etag,
            opened.meta.last_modified,
            conditions.if_match,
            conditions.if_none_match,
            conditions.if_modified_since,
            conditions.if_unmodified_since,
        )?;
        Ok(opened)
    }

    /// Opens a stored object whose `meta` the caller has from [`Self::stat_object`]: header,
    /// layout, plaintext length. Fails closed. An object of at most `read_ahead` bytes is read
    /// whole (see [`READ_AHEAD`]).
    async fn open(
        &self,
        tenant: &Tenant,
        kek: &Kek,
        bucket: &str,
        key: &str,
        meta: storage::Meta,
        read_ahead: u64,
    ) -> Result<Opened, ProxyError> {
        let path = Self::object_path(tenant, bucket, key);
        let started = Instant::now();
        let first = if meta.size <= read_ahead {
            meta.size
        } else {
            meta.size.min(format::MAX_HEADER_LEN as u64)
        };
        let prefix = match self.storage.read_range(&path, 0..first).await {
            Err(storage::Error::NotFound) => return Err(ProxyError::NoSuchKey),
            other => other?,
        };
        phase("backend_io", started);
        let crypto_started = Instant::now();
        let ctx = DekContext {
            key: &tenant.keys.key_id,
            bucket,
            object: key,
        };
        let (cipher, header_len) = format::open_object(kek, &ctx, &prefix)?;
        let etag = md5_hex(prefix.get(..header_len).ok_or(ProxyError::Integrity)?);
        phase("crypto", crypto_started);
        let (footer, plaintext_len) = match cipher.header().layout {
            Layout::Single => (None, cipher.single_layout(meta.size)?.plaintext_len()),
            Layout::Multipart | Layout::MultipartKeyed => {
                let size = meta.size;
                let tail = self
                    .storage
                    .read_range(&path, size.saturating_sub(4)..size)
                    .await?;
                let footer_len = format::footer_len_from_tail(&tail)? as u64;
                let start = size.checked_sub(footer_len).ok_or(ProxyError::Integrity)?;
                let footer = self.storage.read_range(&path, start..size).await?.to_vec();
                let len = cipher.multipart_layout(&footer, size)?.plaintext_len();
                (Some(footer), len)
            }
        };
        Ok(Opened {
            cipher,
            prefix,
            footer,
            meta,
            plaintext_len,
            etag,
        })
    }

    /// Decrypts a (small) plaintext range of an opened object into memory.
    async fn decrypt_buffered(
        &self,
        path: &str,
        opened: &Opened,
        range: Range<u64>,
    ) -> Result<Vec<u8>, ProxyError> {
        let layout = match &opened.footer {
            None => opened.cipher.single_layout(opened.meta.size)?,
            Some(footer) => opened.cipher.multipart_layout(footer, opened.meta.size)?,
        };
        let (ct_range, mut decryptor) = layout.decryptor(range)?;
        let ciphertext = match usize::try_from(ct_range.start)
            .ok()
            .zip(usize::try_from(ct_range.end).ok())
            .filter(|(start, end)| start <= end && *end <= opened.prefix.len())
        {
            // Read ahead by `open`: no second backend call, and no copy.
            Some((start, end)) => opened.prefix.slice(start..end),
            None => {
                let started = Instant::now();
                let ciphertext = self.storage.read_range(path, ct_range).await?;
                phase("backend_io", started);
                ciphertext
            }
        };
        let started = Instant::now();
        let mut out = Vec::with_capacity(ciphertext.len());
        decryptor.push(&ciphertext, &mut out)?;
        decryptor.finish()?;
        phase("crypto", started);
        Ok(out)
    }

    /// Streams the decrypted plaintext range of an opened object.
    fn decrypt_stream(&self, path: String, opened: Opened, range: Range<u64>) -> StreamingBlob {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let storage = self.storage.clone();
        let remaining = range.end - range.start;
        tokio::spawn(async move {
            let result: Result<(), ProxyError> = async {
                let layout = match &opened.footer {
                    None => opened.cipher.single_layout(opened.meta.size)?,
                    Some(footer) => opened.cipher.multipart_layout(footer, opened.meta.size)?,
                };
                let (ct_range, mut decryptor) = layout.decryptor(range)?;
                let mut stream = storage.stream_range(&path, ct_range).await?;
                let mut out = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    let started = Instant::now();
                    decryptor.push(&chunk, &mut out)?;
                    phase("crypto", started);
                    if !out.is_empty() {
                        let piece = Bytes::from(std::mem::take(&mut out));
                        if tx.send(Ok(piece)).await.is_err() {
                            return Ok(()); // client went away
                        }
                    }
                }
                decryptor.finish()?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "streaming decryption failed; aborting the response");
                let _ = tx
                    .send(Err(std::io::Error::other(
                        "stored object failed authentication",
                    )))
                    .await;
            }
        });
        StreamingBlob::new(Body { rx, remaining })
    }

    /// Encrypts a body stream as run `run` of `cipher` into `writer` (after `prefix`).
    async fn encrypt_into<S, E>(
        cipher: &format::ObjectCipher,
        run: u32,
        body: S,
        writer: &mut storage::Writer,
        md5: Option<&mut md5::Md5>,
    ) -> Result<u64, ProxyError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut md5 = md5;
        Self::encrypt_with(cipher.encryptor(run), body, writer, |chunk| {
            if let Some(h) = md5.as_mut() {
                h.update(chunk);
            }
        })
        .await
    }

    /// Encrypts a body stream with `encryptor` into `writer`, showing every plaintext chunk to
    /// `observe` (MD5, part ETag digest).
    async fn encrypt_with<S, E>(
        mut encryptor: format::Encryptor<'_>,
        mut body: S,
        writer: &mut storage::Writer,
        mut observe: impl FnMut(&[u8]),
    ) -> Result<u64, ProxyError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut out = Vec::with_capacity(WRITE_CHUNK + format::DEFAULT_SEGMENT_SIZE as usize);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                ProxyError::InvalidRequest(format!("reading the request body failed: {e}"))
            })?;
            observe(&chunk);
            let started = Instant::now();
            encryptor.push(&chunk, &mut out)?;
            phase("crypto", started);
            if out.len() >= WRITE_CHUNK {
                let started = Instant::now();
                writer.write(&out).await?;
                phase("backend_io", started);
                out.clear();
            }
        }
        let len = encryptor.finish(&mut out)?;
        writer.write(&out).await?;
        Ok(len)
    }

    /// One page of the decoded keys (with stored metadata) of a bucket, streamed from the
    /// storage's listing of the prefix's directory into a [`listing::PageBuilder`], which keeps
    /// only a page's worth of entries and stops early when the listing is in key order.
    async fn list_keys(
        &self,
        tenant: &Tenant,
        bucket: &str,
        req: &listing::PageRequest<'_>,
    ) -> Result<listing::Page<storage::Meta>, ProxyError> {
        let base = Self::objects_dir(tenant, bucket);
        let found = self
            .storage
            .list_keys(&base, req.prefix, req.delimiter, req.after);
        Ok(listing::page_from_stream(found.keys, found.ordered, req).await?)
    }

    async fn staged_parts(&self, dir: &str) -> Result<Vec<StagedPart>, ProxyError> {
        let mut stream = self.storage.list(dir);
        let mut parts = Vec::new();
        while let Some(item) = stream.next().await {
            let (path, meta) = item?;
            let Some(name) = path.rsplit('/').next() else {
                continue;
            };
            if let Some(part) = StagedPart::parse(name, &path, meta) {
                parts.push(part);
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }
}

/// One staged attempt of a multipart part: `p<number>-<plaintext len>-<etag>-<attempt>`
/// (layout 2), or `p<number>-<plaintext len>-<etag>` for an upload begun in layout 1.
#[derive(Debug, Clone)]
struct StagedPart {
    number: u32,
    plaintext_len: u64,
    etag: String,
    /// The attempt whose key encrypted the run (layout 2).
    attempt: Option<format::PartAttempt>,
    path: String,
    meta: storage::Meta,
}

impl StagedPart {
    fn name(
        number: u32,
        plaintext_len: u64,
        etag: &str,
        attempt: Option<&format::PartAttempt>,
    ) -> String {
        match attempt {
            Some(a) => format!("p{number:05}-{plaintext_len}-{etag}-{}", a.to_hex()),
            None => format!("p{number:05}-{plaintext_len}-{etag}"),
        }
    }

    fn parse(name: &str, path: &str, meta: storage::Meta) -> Option<Self> {
        let rest = name.strip_prefix('p')?;
        // ETags and attempt ids are hex, so '-' only separates fields.
        let mut it = rest.splitn(4, '-');
        let number = it.next()?.parse().ok()?;
        let plaintext_len = it.next()?.parse().ok()?;
        let etag = it.next()?.to_owned();
        let attempt = match it.next() {
            Some(a) => Some(format::PartAttempt::from_hex(a)?),
            None => None,
        };
        Some(Self {
            number,
            plaintext_len,
            etag,
            attempt,
            path: path.to_owned(),
            meta,
        })
    }
}

/// The newest staged attempt of every part number (normally there is one: an upload replaces
/// the earlier attempts, but two concurrent uploads of one part may leave both for a moment).
/// `staged` is sorted by part number.
fn latest_attempts(staged: &[StagedPart]) -> Vec<&StagedPart> {
    let mut out: Vec<&StagedPart> = Vec::with_capacity(staged.len());
    for part in staged {
        match out.last_mut() {
            Some(last) if last.number == part.number => {
                if part.meta.last_modified >= last.meta.last_modified {
                    *last = part;
                }
            }
            _ => out.push(part),
        }
    }
    out
}

/// The response body of a GET: decrypted pieces from the decryption task, with an exact
/// length so hyper frames it with Content-Length.
struct Body {
    rx: futures::channel::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    remaining: u64,
}

impl futures::Stream for Body {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.rx.poll_next_unpin(cx) {
            std::task::Poll::Ready(Some(Ok(b))) => {
                self.remaining = self.remaining.saturating_sub(b.len() as u64);
                std::task::Poll::Ready(Some(Ok(b)))
            }
            std::task::Poll::Ready(Some(Err(e))) => std::task::Poll::Ready(Some(Err(Box::new(e)))),
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl s3s::stream::ByteStream for Body {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        s3s::stream::RemainingLength::new_exact(n)
    }
}

impl Proxy {
    /// ETag and plaintext size shown in listings, without a key. The ETag is the one GET and
    /// HEAD report (MD5 of the header bytes, including a v2 header's sealed metadata). The
    /// header length comes from the unauthenticated header structure (version, tenant length,
    /// v2 metadata length M). Single objects: size from the stored size. Multipart objects
    /// (header layout byte): the sum of the part lengths in the footer. All are unauthenticated
    /// display values; GET and HEAD authenticate what they serve.
    async fn listing_view(
        &self,
        path: &str,
        stored: u64,
        tenant_len: usize,
    ) -> (Option<String>, u64) {
        // If the header cannot be read or parsed, assume v1 for the displayed size.
        let v1_len = format::HEADER_PROBE_LEN - 63 + tenant_len;
        let probe = (format::HEADER_PROBE_LEN as u64).min(stored);
        let Ok(mut head) = self.storage.read_range(path, 0..probe).await else {
            return (None, listing_size(stored, v1_len));
        };
        let Some(header_len) = format::header_len_hint(&head) else {
            return (None, listing_size(stored, v1_len));
        };
        if header_len > head.len() && header_len as u64 <= stored {
            // A v2 header is longer than the probe: one more read for the whole header.
            match self.storage.read_range(path, 0..header_len as u64).await {
                Ok(whole) => head = whole,
                Err(_) => return (None, listing_size(stored, header_len)),
            }
        }
        let etag = head.get(..header_len).map(md5_hex);
        let size = self
            .listing_plaintext_size(path, &head, stored, header_len)
            .await;
        (etag, size)
    }

    /// One listing page as S3 objects and common prefixes, from the parameters ListObjects
    /// and ListObjectsV2 share; names are URL-encoded if the request asks for it.
    async fn list_page(
        &self,
        tenant: &Tenant,
        bucket: &str,
        params: ListParams<'_>,
    ) -> Result<ListPage, ProxyError> {
        let encode = listing::url_encoding(params.encoding_type.map(|e| e.as_str()))?;
        let req = listing::PageRequest {
            prefix: params.prefix.unwrap_or_default(),
            delimiter: params.delimiter,
            after: params.after,
            max_keys: listing::max_keys(params.max_keys),
        };
        self.require_bucket(tenant, bucket).await?;
        let started = Instant::now();
        let page = self.list_keys(tenant, bucket, &req).await?;
        phase("backend_io", started);
        // Sizes: arithmetic for single objects, the footer's part lengths for multipart ones
        // (a few small range reads per listed object, 16 at a time).
        let started = Instant::now();
        let objects: Vec<dto::Object> = futures::stream::iter(page.contents)
            .map(|(key, meta)| {
                let path = Self::object_path(tenant, bucket, &key);
                let tenant_len = tenant.id.len();
                async move {
                    let (etag_value, size) = self.listing_view(&path, meta.size, tenant_len).await;
                    dto::Object {
                        key: Some(listing::encode_if(encode, key)),
                        e_tag: etag_value.map(etag),
                        size: Some(i64::try_from(size).unwrap_or(0)),
                        last_modified: Some(timestamp(meta.last_modified)),
                        storage_class: Some(dto::ObjectStorageClass::from_static(
                            dto::ObjectStorageClass::STANDARD,
                        )),
                        ..Default::default()
                    }
                }
            })
            .buffered(16)
            .collect()
            .await;
        phase("backend_io", started);
        Ok(ListPage {
            objects,
            common_prefixes: page
                .common_prefixes
                .into_iter()
                .map(|p| dto::CommonPrefix {
                    prefix: Some(listing::encode_if(encode, p)),
                })
                .collect(),
            truncated: page.truncated,
            last: page.last,
            encode,
            max_keys: i32::try_from(req.max_keys).unwrap_or(1000),
        })
    }

    async fn listing_plaintext_size(
        &self,
        path: &str,
        head: &[u8],
        stored: u64,
        header_len: usize,
    ) -> u64 {
        let single = listing_size(stored, header_len);
        if !format::layout_hint(head).is_some_and(Layout::is_multipart) {
            return single;
        }
        let Ok(tail) = self
            .storage
            .read_range(path, stored.saturating_sub(4)..stored)
            .await
        else {
            return single;
        };
        let Ok(footer_len) = format::footer_len_from_tail(&tail) else {
            return single;
        };
        let Some(start) = stored.checked_sub(footer_len as u64) else {
            return single;
        };
        let Ok(footer) = self.storage.read_range(path, start..stored).await else {
            return single;
        };
        format::footer_plaintext_len_hint(&footer).unwrap_or(single)
    }
}

/// A listing page as ListObjects and ListObjectsV2 return it.
struct ListPage {
    objects: Vec<dto::Object>,
    common_prefixes: Vec<dto::CommonPrefix>,
    truncated: bool,
    /// The last key or common prefix returned (unencoded): where the next page resumes.
    last: Option<String>,
    /// Names in the response are URL-encoded (`encoding-type=url`).
    encode: bool,
    /// The `max-keys` in effect.
    max_keys: i32,
}

impl ListPage {
    /// Encodes a name echoed from the request, as the listed names are.
    fn echo(&self, name: Option<String>) -> Option<String> {
        name.map(|n| listing::encode_if(self.encode, n))
    }
}

/// The listing parameters ListObjects and ListObjectsV2 share (the resume point is `marker`
/// in v1, the continuation token or `start-after` in v2).
struct ListParams<'a> {
    prefix: Option<&'a str>,
    delimiter: Option<&'a str>,
    after: Option<&'a str>,
    max_keys: Option<i32>,
    encoding_type: Option<&'a dto::EncodingType>,
}

/// Plaintext size of a stored single-PUT object from its stored size and header length alone
/// (listings have no key).
fn listing_size(stored: u64, header_len: usize) -> u64 {
    let header = header_len as u64;
    let tag = 16u64;
    let stride = u64::from(format::DEFAULT_SEGMENT_SIZE) + tag;
    let Some(body) = stored.checked_sub(header) else {
        return 0;
    };
    if body % stride < tag {
        return 0;
    }
    body - tag * (body / stride + 1)
}

/// The body length a request declared, where the body knows it: Content-Length, or for
/// aws-chunked uploads the `x-amz-decoded-content-length` that s3s turns into the decoded
/// stream's exact length.
fn declared_len(body: Option<&StreamingBlob>) -> Option<u64> {
    use s3s::stream::ByteStream as _;
    body.and_then(|b| b.remaining_length().exact())
        .and_then(|n| u64::try_from(n).ok())
}

/// s3s 0.14.1 ends an aws-chunked stream at the end of the transport body even when the final
/// zero-length chunk never came, without comparing with `x-amz-decoded-content-length`. A
/// signed streaming upload cut short at a chunk boundary would then be stored short with a 200.
/// Called before the writer completes, so a short body leaves nothing visible.
fn check_complete(declared: Option<u64>, received: u64) -> Result<(), ProxyError> {
    match declared {
        Some(declared) if declared != received => {
            Err(ProxyError::IncompleteBody { declared, received })
        }
        _ => Ok(()),
    }
}

fn etag(value: String) -> ETag {
    ETag::Strong(value)
}

fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn system_time(t: &Timestamp) -> SystemTime {
    let odt: time::OffsetDateTime = t.clone().into();
    SystemTime::from(odt)
}

/// Evaluates If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since (RFC 7232 §6).
/// The conditional request headers of a read.
struct Conditions<'a> {
    if_match: Option<&'a dto::ETagCondition>,
    if_none_match: Option<&'a dto::ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

pub(crate) fn check_conditions(
    etag_value: &str,
    last_modified: SystemTime,
    if_match: Option<&dto::ETagCondition>,
    if_none_match: Option<&dto::ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> Result<(), ProxyError> {
    let matches = |c: &dto::ETagCondition| match c {
        dto::ETagCondition::Any => true,
        dto::ETagCondition::ETag(e) => e.value() == etag_value,
    };
    // Compare at whole seconds: HTTP dates have no sub-second precision.
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(ProxyError::PreconditionFailed);
        }
    } else if let Some(t) = if_unmodified_since
        && secs(last_modified) > secs(system_time(t))
    {
        return Err(ProxyError::PreconditionFailed);
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(ProxyError::NotModified);
        }
    } else if let Some(t) = if_modified_since
        && secs(last_modified) <= secs(system_time(t))
    {
        return Err(ProxyError::NotModified);
    }
    Ok(())
}

pub(crate) fn resolve_range(
    range: Option<&dto::Range>,
    len: u64,
) -> Result<Option<Range<u64>>, ProxyError> {
    match range {
        None => Ok(None),
        // s3s resolves a suffix range on an empty object to 0..0; RFC 9110 §14.1.3 calls it
        // unsatisfiable, and a 206 would claim `bytes 0-0/0` (found by fuzzing).
        Some(r) => match r.check(len) {
            Ok(resolved) if !resolved.is_empty() => Ok(Some(resolved)),
            _ => Err(ProxyError::InvalidRange),
        },
    }
}

#[async_trait::async_trait]
impl S3 for Proxy {
    #[tracing::instrument(skip_all)]
    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let tenant = self.tenant(&req)?;
        let prefix = format!("tenants/{}/buckets", tenant.id);
        let mut stream = self.storage.list(&prefix);
        let mut buckets = Vec::new();
        while let Some(item) = stream.next().await {
            let (path, meta) = item.map_err(ProxyError::from)?;
            if let Some(name) = path.strip_prefix(&prefix).and_then(|p| p.strip_prefix('/')) {
                buckets.push(dto::Bucket {
                    name: Some(name.to_owned()),
                    creation_date: Some(timestamp(meta.last_modified)),
                    bucket_region: None,
                });
            }
        }
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        let output = dto::ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(dto::Owner {
                display_name: Some(tenant.id.clone()),
                id: Some(tenant.id.clone()),
            }),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let tenant = self.tenant(&req)?;
        let bucket = &req.input.bucket;
        match self.require_bucket(&tenant, bucket).await {
            Ok(_) => return Err(ProxyError::BucketExists.into()),
            Err(ProxyError::NoSuchBucket) => {}
            Err(e) => return Err(e.into()),
        }
        self.storage
            .put(&Self::bucket_path(&tenant, bucket), Bytes::new())
            .await
            .map_err(ProxyError::from)?;
        let output = dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        let tenant = self.tenant(&req)?;
        self.require_bucket(&tenant, &req.input.bucket).await?;
        Ok(S3Response::new(dto::HeadBucketOutput::default()))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        let tenant = self.tenant(&req)?;
        self.require_bucket(&tenant, &req.input.bucket).await?;
        // An empty location constraint means us-east-1, which is what clients sign with by
        // default; the proxy accepts any region in signatures.
        Ok(S3Response::new(dto::GetBucketLocationOutput {
            location_constraint: None,
        }))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let tenant = self.tenant(&req)?;
        let bucket = &req.input.bucket;
        self.require_bucket(&tenant, bucket).await?;
        let mut objects = self.storage.list(&Self::objects_dir(&tenant, bucket));
        if objects.next().await.is_some() {
            return Err(ProxyError::BucketNotEmpty.into());
        }
        self.storage
            .delete(&Self::bucket_path(&tenant, bucket))
            .await
            .map_err(ProxyError::from)?;
        Ok(S3Response::new(dto::DeleteBucketOutput::default()))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let tenant = self.tenant(&req)?;
        let rid = req.extensions.get::<super::server::RequestId>().cloned();
        let input = req.input;
        let share = sse_c(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        self.require_bucket(&tenant, &input.bucket).await?;
        // Passthrough (benchmark baseline) ignores metadata: it stores raw bytes only.
        if self.passthrough {
            let path = Self::object_path(&tenant, &input.bucket, &input.key);
            let body: futures::stream::BoxStream<'static, Result<Bytes, s3s::StdError>> =
                match input.body {
                    Some(body) => body.boxed(),
                    None => futures::stream::empty().boxed(),
                };
            let etag_value = self.put_plain(&path, body).await?;
            let output = dto::PutObjectOutput {
                e_tag: Some(etag(etag_value)),
                ..Default::default()
            };
            return Ok(S3Response::new(output));
        }
        let metadata = request_metadata!(input)?;
        let kek = self
            .kek(
                rid.as_ref(),
                &tenant,
                share.as_ref(),
                "PutObject",
                &input.bucket,
                &input.key,
            )
            .await?;
        let ctx = DekContext {
            key: &tenant.keys.key_id,
            bucket: &input.bucket,
            object: &input.key,
        };
        let (cipher, header) =
            format::new_object_with_metadata(&kek, &ctx, Layout::Single, &metadata)
                .map_err(ProxyError::from)?;
        let etag_value = md5_hex(&header);
        let path = Self::object_path(&tenant, &input.bucket, &input.key);
        let mut writer = self.storage.writer(&path).map_err(ProxyError::from)?;
        writer.write(&header).await.map_err(ProxyError::from)?;
        let declared = declared_len(input.body.as_ref());
        let body: futures::stream::BoxStream<'static, Result<Bytes, s3s::StdError>> =
            match input.body {
                Some(body) => body.boxed(),
                None => futures::stream::empty().boxed(),
            };
        // On any error the writer is dropped, which aborts it: nothing becomes visible.
        let len = Self::encrypt_into(&cipher, 0, body, &mut writer, None).await?;
        check_complete(declared, len)?;
        let started = Instant::now();
        writer.complete().await.map_err(ProxyError::from)?;
        phase("backend_io", started);
        tracing::info!(plaintext_len = len, "object stored");
        let output = dto::PutObjectOutput {
            e_tag: Some(etag(etag_value)),
            sse_customer_algorithm: share.as_ref().map(|_| "AES256".to_owned()),
            sse_customer_key_md5: key_md5_of(share.as_ref()),
            server_side_encryption: self.escrow_sse(&tenant),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let tenant = self.tenant(&req)?;
        let rid = req.extensions.get::<super::server::RequestId>().cloned();
        let input = req.input;
        let share = sse_c(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        let path = Self::object_path(&tenant, &input.bucket, &input.key);
        // Existence first, so a missing key is a 404 without bothering the trustee.
        let meta = match self.stat_object(&tenant, &input.bucket, &path).await {
            Err(e) => return Err(e.into()),
            Ok(meta) if self.passthrough => {
                let total = meta.size;
                let range = resolve_range(input.range.as_ref(), total)?;
                let content_range = range
                    .as_ref()
                    .map(|r| format!("bytes {}-{}/{total}", r.start, r.end.saturating_sub(1)));
                let range = range.unwrap_or(0..total);
                let output = dto::GetObjectOutput {
                    content_length: Some(
                        i64::try_from(range.end - range.start).unwrap_or(i64::MAX),
                    ),
                    content_range,
                    last_modified: Some(timestamp(meta.last_modified)),
                    body: Some(self.stream_plain(path, range)),
                    ..Default::default()
                };
                return Ok(S3Response::new(output));
            }
            Ok(meta) => meta,
        };
        let opened = self
            .open_for_read(
                rid.as_ref(),
                &tenant,
                share.as_ref(),
                "GetObject",
                (&input.bucket, &input.key),
                Conditions {
                    if_match: input.if_match.as_ref(),
                    if_none_match: input.if_none_match.as_ref(),
                    if_modified_since: input.if_modified_since.as_ref(),
                    if_unmodified_since: input.if_unmodified_since.as_ref(),
                },
                (meta, READ_AHEAD),
            )
            .await?;
        let total = opened.plaintext_len;
        let range = resolve_range(input.range.as_ref(), total)?;
        let content_range = range
            .as_ref()
            .map(|r| format!("bytes {}-{}/{total}", r.start, r.end.saturating_sub(1)));
        let range = range.unwrap_or(0..total);
        // Small responses are decrypted completely before the status line goes out, so any
        // tampering is a clean 502. Larger ones stream; a bad segment then aborts the body.
        let length = range.end - range.start;
        let etag_value = opened.etag.clone();
        let last_modified = opened.meta.last_modified;
        let stored = ResponseMetadata::of(opened.cipher.metadata());
        let body = if length <= BUFFERED_GET_LIMIT {
            let plaintext = self.decrypt_buffered(&path, &opened, range.clone()).await?;
            StreamingBlob::from(s3s::Body::from(Bytes::from(plaintext)))
        } else {
            self.decrypt_stream(path, opened, range.clone())
        };
        let output = dto::GetObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(i64::try_from(range.end - range.start).unwrap_or(i64::MAX)),
            content_range,
            content_type: Some(stored.content_type),
            cache_control: stored.cache_control,
            content_disposition: stored.content_disposition,
            content_encoding: stored.content_encoding,
            content_language: stored.content_language,
            metadata: stored.metadata,
            e_tag: Some(etag(etag_value)),
            last_modified: Some(timestamp(last_modified)),
            sse_customer_algorithm: share.as_ref().map(|_| "AES256".to_owned()),
            sse_customer_key_md5: key_md5_of(share.as_ref()),
            server_side_encryption: self.escrow_sse(&tenant),
            body: Some(body),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let tenant = self.tenant(&req)?;
        let rid = req.extensions.get::<super::server::RequestId>().cloned();
        let input = req.input;
        let share = sse_c(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        let path = Self::object_path(&tenant, &input.bucket, &input.key);
        let meta = match self.stat_object(&tenant, &input.bucket, &path).await {
            Err(e) => return Err(e.into()),
            Ok(meta) if self.passthrough => {
                let output = dto::HeadObjectOutput {
                    content_length: Some(i64::try_from(meta.size).unwrap_or(i64::MAX)),
                    last_modified: Some(timestamp(meta.last_modified)),
                    ..Default::default()
                };
                return Ok(S3Response::new(output));
            }
            Ok(meta) => meta,
        };
        let opened = self
            .open_for_read(
                rid.as_ref(),
                &tenant,
                share.as_ref(),
                "HeadObject",
                (&input.bucket, &input.key),
                Conditions {
                    if_match: input.if_match.as_ref(),
                    if_none_match: input.if_none_match.as_ref(),
                    if_modified_since: input.if_modified_since.as_ref(),
                    if_unmodified_since: input.if_unmodified_since.as_ref(),
                },
                // HEAD needs the header only.
                (meta, 0),
            )
            .await?;
        let total = opened.plaintext_len;
        let range = resolve_range(input.range.as_ref(), total)?;
        let length = range.as_ref().map_or(total, |r| r.end - r.start);
        let stored = ResponseMetadata::of(opened.cipher.metadata());
        let output = dto::HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(i64::try_from(length).unwrap_or(i64::MAX)),
            content_range: range
                .map(|r| format!("bytes {}-{}/{total}", r.start, r.end.saturating_sub(1))),
            content_type: Some(stored.content_type),
            cache_control: stored.cache_control,
            content_disposition: stored.content_disposition,
            content_encoding: stored.content_encoding,
            content_language: stored.content_language,
            metadata: stored.metadata,
            e_tag: Some(etag(opened.etag)),
            last_modified: Some(timestamp(opened.meta.last_modified)),
            sse_customer_algorithm: share.as_ref().map(|_| "AES256".to_owned()),
            sse_customer_key_md5: key_md5_of(share.as_ref()),
            server_side_encryption: self.escrow_sse(&tenant),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let tenant = self.tenant(&req)?;
        self.require_bucket(&tenant, &req.input.bucket).await?;
        let path = Self::object_path(&tenant, &req.input.bucket, &req.input.key);
        self.storage.delete(&path).await.map_err(ProxyError::from)?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        self.require_bucket(&tenant, &input.bucket).await?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            let path = Self::object_path(&tenant, &input.bucket, &object.key);
            match self.storage.delete(&path).await {
                Ok(()) => {
                    if !quiet {
                        deleted.push(dto::DeletedObject {
                            key: Some(object.key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "delete failed");
                    errors.push(dto::Error {
                        code: Some("InternalError".into()),
                        key: Some(object.key),
                        message: Some("the storage backend failed".into()),
                        ..Default::default()
                    });
                }
            }
        }
        let output = dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let page = self
            .list_page(
                &tenant,
                &input.bucket,
                ListParams {
                    prefix: input.prefix.as_deref(),
                    delimiter: input.delimiter.as_deref(),
                    after: input.marker.as_deref(),
                    max_keys: input.max_keys,
                    encoding_type: input.encoding_type.as_ref(),
                },
            )
            .await?;
        // S3 sends NextMarker only with a delimiter (clients otherwise resume after the last
        // key); sending it whenever the page is truncated serves both kinds of client.
        let next_marker = if page.truncated {
            page.echo(page.last.clone())
        } else {
            None
        };
        let output = dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: page.echo(input.prefix),
            delimiter: page.echo(input.delimiter),
            marker: page.echo(input.marker),
            max_keys: Some(page.max_keys),
            is_truncated: Some(page.truncated),
            next_marker,
            contents: Some(page.objects),
            common_prefixes: Some(page.common_prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        // The continuation token is the hex of the last key (or common prefix) returned.
        let after = match &input.continuation_token {
            Some(token) => Some(
                hex::decode(token)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        ProxyError::InvalidArgument("invalid continuation token".into())
                    })?,
            ),
            None => input.start_after.clone(),
        };
        let page = self
            .list_page(
                &tenant,
                &input.bucket,
                ListParams {
                    prefix: input.prefix.as_deref(),
                    delimiter: input.delimiter.as_deref(),
                    after: after.as_deref(),
                    max_keys: input.max_keys,
                    encoding_type: input.encoding_type.as_ref(),
                },
            )
            .await?;
        let key_count =
            i32::try_from(page.objects.len() + page.common_prefixes.len()).unwrap_or(i32::MAX);
        let output = dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: page.echo(input.prefix),
            delimiter: page.echo(input.delimiter),
            max_keys: Some(page.max_keys),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: page.echo(input.start_after),
            is_truncated: Some(page.truncated),
            next_continuation_token: if page.truncated {
                page.last.map(|k| hex::encode(k.as_bytes()))
            } else {
                None
            },
            contents: Some(page.objects),
            common_prefixes: Some(page.common_prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let tenant = self.tenant(&req)?;
        let rid = req.extensions.get::<super::server::RequestId>().cloned();
        let input = req.input;
        let (src_bucket, src_key) = match &input.copy_source {
            dto::CopySource::Bucket {
                bucket,
                key,
                version_id: None,
            } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(
                    ProxyError::NotImplemented("copy sources other than bucket/key").into(),
                );
            }
        };
        let dest_share = sse_c(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        let src_share = sse_c(
            input.copy_source_sse_customer_algorithm.as_deref(),
            input.copy_source_sse_customer_key.as_deref(),
            input.copy_source_sse_customer_key_md5.as_deref(),
        )?;
        // REPLACE takes the request's metadata (checked now, before any key is released); COPY,
        // the default, keeps the source's once it is opened.
        let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some(dto::MetadataDirective::COPY) => false,
            Some(dto::MetadataDirective::REPLACE) => true,
            Some(_) => {
                return Err(ProxyError::InvalidArgument(
                    "x-amz-metadata-directive must be COPY or REPLACE".into(),
                )
                .into());
            }
        };
        let replacement = if replace {
            Some(request_metadata!(input)?)
        } else {
            None
        };
        // Source existence first (NoSuchKey / NoSuchBucket), before bothering the trustee.
        let src_meta = self
            .stat_object(
                &tenant,
                &src_bucket,
                &Self::object_path(&tenant, &src_bucket, &src_key),
            )
            .await?;
        self.require_bucket(&tenant, &input.bucket).await?;
        // Both sides belong to the same tenant key, so both shares must be the customer's
        // share; each is checked by the key service.
        let src_kek = self
            .kek(
                rid.as_ref(),
                &tenant,
                src_share.as_ref(),
                "CopyObject source",
                &src_bucket,
                &src_key,
            )
            .await?;
        let dest_kek = self
            .kek(
                rid.as_ref(),
                &tenant,
                dest_share.as_ref(),
                "CopyObject",
                &input.bucket,
                &input.key,
            )
            .await?;
        let opened = self
            .open(&tenant, &src_kek, &src_bucket, &src_key, src_meta, 0)
            .await?;
        check_conditions(
            &opened.etag,
            opened.meta.last_modified,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(|e| match e {
            ProxyError::NotModified => ProxyError::PreconditionFailed,
            other => other,
        })?;
        let total = opened.plaintext_len;
        let metadata = match replacement {
            Some(m) => m,
            None => opened.cipher.metadata().clone(),
        };
        let src_path = Self::object_path(&tenant, &src_bucket, &src_key);
        let plaintext = self.decrypt_stream(src_path, opened, 0..total);
        let ctx = DekContext {
            key: &tenant.keys.key_id,
            bucket: &input.bucket,
            object: &input.key,
        };
        let (cipher, header) =
            format::new_object_with_metadata(&dest_kek, &ctx, Layout::Single, &metadata)
                .map_err(ProxyError::from)?;
        let etag_value = md5_hex(&header);
        let mut writer = self
            .storage
            .writer(&Self::object_path(&tenant, &input.bucket, &input.key))
            .map_err(ProxyError::from)?;
        writer.write(&header).await.map_err(ProxyError::from)?;
        Self::encrypt_into(&cipher, 0, plaintext, &mut writer, None)
            .await
            .map_err(|e| match e {
                ProxyError::InvalidRequest(_) => ProxyError::Integrity,
                other => other,
            })?;
        writer.complete().await.map_err(ProxyError::from)?;
        let output = dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(etag(etag_value)),
                last_modified: Some(timestamp(SystemTime::now())),
                ..Default::default()
            }),
            sse_customer_algorithm: dest_share.as_ref().map(|_| "AES256".to_owned()),
            sse_customer_key_md5: key_md5_of(dest_share.as_ref()),
            server_side_encryption: self.escrow_sse(&tenant),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let tenant = self.tenant(&req)?;
        let rid = req.extensions.get::<super::server::RequestId>().cloned();
        let input = req.input;
        let share = sse_c(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        self.require_bucket(&tenant, &input.bucket).await?;
        // S3 takes an object's metadata at CreateMultipartUpload; it is sealed into the staged
        // header, which Complete writes unchanged.
        let metadata = request_metadata!(input)?;
        let kek = self
            .kek(
                rid.as_ref(),
                &tenant,
                share.as_ref(),
                "CreateMultipartUpload",
                &input.bucket,
                &input.key,
            )
            .await?;
        let ctx = DekContext {
            key: &tenant.keys.key_id,
            bucket: &input.bucket,
            object: &input.key,
        };
        let (cipher, header) =
            format::new_object_with_metadata(&kek, &ctx, Layout::MultipartKeyed, &metadata)
                .map_err(ProxyError::from)?;
        let upload_id = random_hex(16)?;
        let dir = Self::upload_dir(&tenant, &input.bucket, &upload_id)?;
        self.remember_upload(&tenant.id, &dir, cipher);
        // The staged header records the object key too, so a part can never be completed
        // into another key.
        let mut staged = Vec::with_capacity(header.len() + input.key.len() + 4);
        staged.extend_from_slice(&(header.len() as u32).to_be_bytes());
        staged.extend_from_slice(&header);
        staged.extend_from_slice(input.key.as_bytes());
        self.storage
            .put(&format!("{dir}/header"), Bytes::from(staged))
            .await
            .map_err(ProxyError::from)?;
        let output = dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            sse_customer_algorithm: share.as_ref().map(|_| "AES256".to_owned()),
            sse_customer_key_md5: key_md5_of(share.as_ref()),
            server_side_encryption: self.escrow_sse(&tenant),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number))]
    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let tenant = self.tenant(&req)?;
        let rid = req.extensions.get::<super::server::RequestId>().cloned();
        let input = req.input;
        let share = sse_c(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        let part = u32::try_from(input.part_number)
            .ok()
            .filter(|p| (1..=10_000).contains(p))
            .ok_or_else(|| ProxyError::InvalidRequest("part numbers are 1 to 10000".into()))?;
        let dir = Self::upload_dir(&tenant, &input.bucket, &input.upload_id)?;
        let header = self.staged_header(&dir, &input.key).await?;
        let kek = self
            .kek(
                rid.as_ref(),
                &tenant,
                share.as_ref(),
                "UploadPart",
                &input.bucket,
                &input.key,
            )
            .await?;
        let ctx = DekContext {
            key: &tenant.keys.key_id,
            bucket: &input.bucket,
            object: &input.key,
        };
        let (cipher, _) = format::open_object(&kek, &ctx, &header).map_err(ProxyError::from)?;
        // Every attempt gets a fresh attempt id and so its own key (docs/format.md §7): a part
        // uploaded again never reuses the nonces of an earlier attempt. An upload begun in
        // layout 1 (before this existed) keeps layout 1 until it completes.
        let attempt = format::PartAttempt::random().map_err(ProxyError::from)?;
        let (encryptor, attempt) = match cipher.header().layout {
            Layout::MultipartKeyed => (
                cipher
                    .part_encryptor(part, &attempt)
                    .map_err(ProxyError::from)?,
                Some(attempt),
            ),
            Layout::Multipart => (cipher.encryptor(part), None),
            Layout::Single => return Err(ProxyError::Integrity.into()),
        };
        // Stage under a temporary name first; the final name carries length, ETag and attempt.
        let tmp = format!("{dir}/tmp-{}", random_hex(16)?);
        let mut writer = self.storage.writer(&tmp).map_err(ProxyError::from)?;
        let declared = declared_len(input.body.as_ref());
        let body: futures::stream::BoxStream<'static, Result<Bytes, s3s::StdError>> =
            match input.body {
                Some(body) => body.boxed(),
                None => futures::stream::empty().boxed(),
            };
        let mut digest = cipher.part_etag_digest();
        let len = Self::encrypt_with(encryptor, body, &mut writer, |chunk| {
            if let Some(d) = digest.as_mut() {
                d.update(chunk);
            }
        })
        .await?;
        check_complete(declared, len)?;
        writer.complete().await.map_err(ProxyError::from)?;
        // The part ETag is a keyed digest of the plaintext (docs/proxy.md), so identical bytes
        // sent again get the same ETag, as on S3. Layout 1 uploads keep random ETags.
        let etag_value = match digest {
            Some(d) => hex::encode(d.finish()),
            None => random_hex(16)?,
        };
        let final_path = format!(
            "{dir}/{}",
            StagedPart::name(part, len, &etag_value, attempt.as_ref())
        );
        let result = self.storage.copy(&tmp, &final_path).await;
        self.storage.delete(&tmp).await.map_err(ProxyError::from)?;
        result.map_err(ProxyError::from)?;
        // Then replace every other attempt of the same part number: the new attempt is in
        // place first, so a failure here leaves an extra attempt, never none. Not "only older
        // ones": S3 backends report Last-Modified in whole seconds, so a quick retry with other
        // bytes would keep the replaced attempt completable. Two *concurrent* uploads of one
        // part may remove each other; Complete then answers InvalidPart and the client retries.
        for old in self
            .staged_parts(&dir)
            .await?
            .into_iter()
            .filter(|p| p.number == part && p.path != final_path)
        {
            self.storage
                .delete(&old.path)
                .await
                .map_err(ProxyError::from)?;
        }
        let output = dto::UploadPartOutput {
            e_tag: Some(etag(etag_value)),
            sse_customer_algorithm: share.as_ref().map(|_| "AES256".to_owned()),
            sse_customer_key_md5: key_md5_of(share.as_ref()),
            server_side_encryption: self.escrow_sse(&tenant),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let tenant = self.tenant(&req)?;
        let rid = req.extensions.get::<super::server::RequestId>().cloned();
        let input = req.input;
        let share = sse_c(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        )?;
        let dir = Self::upload_dir(&tenant, &input.bucket, &input.upload_id)?;
        // The bucket may have been deleted since the upload began (DeleteBucket looks at
        // objects only); S3 answers NoSuchBucket then, and nothing may be written.
        self.require_bucket(&tenant, &input.bucket).await?;
        let header = self.staged_header(&dir, &input.key).await?;
        // Stock clients (object_store, some SDKs) send no SSE-C headers on Complete, which S3
        // allows. Then the cipher kept in memory since CreateMultipartUpload is used; without
        // it (proxy restarted, another replica) the share is required.
        let cached = if share.is_none() && self.needs_sse_c(&tenant) {
            Some(
                self.cached_upload(&tenant.id, &dir)
                    .ok_or(ProxyError::MissingShare)?,
            )
        } else {
            None
        };
        let cipher: Arc<format::ObjectCipher> = match cached {
            Some(c) => c,
            None => {
                let kek = self
                    .kek(
                        rid.as_ref(),
                        &tenant,
                        share.as_ref(),
                        "CompleteMultipartUpload",
                        &input.bucket,
                        &input.key,
                    )
                    .await?;
                let ctx = DekContext {
                    key: &tenant.keys.key_id,
                    bucket: &input.bucket,
                    object: &input.key,
                };
                Arc::new(
                    format::open_object(&kek, &ctx, &header)
                        .map_err(ProxyError::from)?
                        .0,
                )
            }
        };
        let header_len = cipher.header_len();
        let staged = self.staged_parts(&dir).await?;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(ProxyError::InvalidRequest(
                "a multipart upload needs at least one part".into(),
            )
            .into());
        }
        let mut chosen: Vec<&StagedPart> = Vec::with_capacity(requested.len());
        let mut previous = 0u32;
        for part in &requested {
            let number = part
                .part_number
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0);
            if number <= previous {
                return Err(ProxyError::InvalidPartOrder.into());
            }
            previous = number;
            let mut attempts = staged.iter().filter(|p| p.number == number).peekable();
            if attempts.peek().is_none() {
                return Err(
                    ProxyError::InvalidPart(format!("part {number} was not uploaded")).into(),
                );
            }
            // The newest attempt with the ETag the client names (identical bytes have one
            // ETag, so the first answer's ETag names the latest attempt with those bytes).
            let found = attempts
                .filter(|p| part.e_tag.as_ref().is_none_or(|e| e.value() == p.etag))
                .max_by_key(|p| p.meta.last_modified)
                .ok_or_else(|| {
                    ProxyError::InvalidPart(format!("part {number} has a different ETag"))
                })?;
            chosen.push(found);
        }
        // Layout 2 footers name every part's attempt. Each layout 2 part was staged with its
        // attempt id; one without cannot have been written by this upload. Checked before
        // anything is written.
        let attempts = match cipher.header().layout {
            Layout::MultipartKeyed => Some(
                chosen
                    .iter()
                    .map(|p| p.attempt.ok_or(ProxyError::Integrity))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Layout::Multipart => None,
            Layout::Single => return Err(ProxyError::Integrity.into()),
        };
        let path = Self::object_path(&tenant, &input.bucket, &input.key);
        let mut writer = self.storage.writer(&path).map_err(ProxyError::from)?;
        writer
            .write(header.get(..header_len).ok_or(ProxyError::Integrity)?)
            .await
            .map_err(ProxyError::from)?;
        let mut md5_all = md5::Md5::new();
        let mut footer_parts = Vec::with_capacity(chosen.len());
        for part in &chosen {
            let mut stream = self
                .storage
                .stream_range(&part.path, 0..part.meta.size)
                .await
                .map_err(ProxyError::from)?;
            while let Some(chunk) = stream.next().await {
                writer
                    .write(&chunk.map_err(ProxyError::from)?)
                    .await
                    .map_err(ProxyError::from)?;
            }
            md5_all.update(part.etag.as_bytes());
            footer_parts.push(format::PartInfo {
                part_number: part.number,
                plaintext_len: part.plaintext_len,
            });
        }
        let footer = match &attempts {
            Some(attempts) => cipher.footer_with_attempts(&footer_parts, attempts),
            None => cipher.footer(&footer_parts),
        }
        .map_err(ProxyError::from)?;
        writer.write(&footer).await.map_err(ProxyError::from)?;
        writer.complete().await.map_err(ProxyError::from)?;
        let etag_value = md5_hex(header.get(..header_len).ok_or(ProxyError::Integrity)?);
        // Clean up staging; a failure here only leaves garbage, never a wrong object.
        for part in &staged {
            let _ = self.storage.delete(&part.path).await;
        }
        let _ = self.storage.delete(&format!("{dir}/header")).await;
        self.forget_upload(&tenant.id, &dir);
        let output = dto::CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(etag_value)),
            server_side_encryption: self.escrow_sse(&tenant),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let tenant = self.tenant(&req)?;
        let dir = Self::upload_dir(&tenant, &req.input.bucket, &req.input.upload_id)?;
        self.staged_header(&dir, &req.input.key).await?;
        self.forget_upload(&tenant.id, &dir);
        let mut stream = self.storage.list(&dir);
        let mut paths = Vec::new();
        while let Some(item) = stream.next().await {
            paths.push(item.map_err(ProxyError::from)?.0);
        }
        for path in paths {
            self.storage.delete(&path).await.map_err(ProxyError::from)?;
        }
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let dir = Self::upload_dir(&tenant, &input.bucket, &input.upload_id)?;
        self.staged_header(&dir, &input.key).await?;
        let marker = input.part_number_marker.unwrap_or(0);
        let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(1, 1000)).unwrap_or(1000);
        let staged = self.staged_parts(&dir).await?;
        let remaining: Vec<&StagedPart> = latest_attempts(&staged)
            .into_iter()
            .filter(|p| i64::from(p.number) > i64::from(marker))
            .collect();
        let truncated = remaining.len() > max;
        let page: Vec<&StagedPart> = remaining.into_iter().take(max).collect();
        let next = page.last().map(|p| i32::try_from(p.number).unwrap_or(0));
        let parts = page
            .iter()
            .map(|p| dto::Part {
                part_number: i32::try_from(p.number).ok(),
                size: i64::try_from(p.plaintext_len).ok(),
                e_tag: Some(etag(p.etag.clone())),
                last_modified: Some(timestamp(p.meta.last_modified)),
                ..Default::default()
            })
            .collect();
        let output = dto::ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            parts: Some(parts),
            is_truncated: Some(truncated),
            max_parts: i32::try_from(max).ok(),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }
}

/// How long an in-progress upload's cipher stays in memory.
const UPLOAD_CIPHER_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The ciphers of uploads in progress, by tenant and upload directory. Each tenant has its own
/// cap, and a tenant at its cap evicts its own oldest entry: one tenant's open uploads can
/// never push out another tenant's (before, one pool of 10,000 for all tenants did).
#[derive(Default)]
struct UploadCiphers {
    by_tenant: HashMap<String, HashMap<String, (Arc<format::ObjectCipher>, Instant)>>,
}

impl UploadCiphers {
    fn insert(&mut self, tenant: &str, dir: &str, cipher: format::ObjectCipher, cap: usize) {
        if cap == 0 {
            return;
        }
        let uploads = self.by_tenant.entry(tenant.to_owned()).or_default();
        uploads.retain(|_, (_, t)| t.elapsed() < UPLOAD_CIPHER_TTL);
        while uploads.len() >= cap {
            // O(cap) per eviction; caps are in the thousands and eviction is the rare case.
            let Some(oldest) = uploads
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            uploads.remove(&oldest);
        }
        uploads.insert(dir.to_owned(), (Arc::new(cipher), Instant::now()));
    }

    fn get(&self, tenant: &str, dir: &str) -> Option<Arc<format::ObjectCipher>> {
        self.by_tenant
            .get(tenant)?
            .get(dir)
            .filter(|(_, t)| t.elapsed() < UPLOAD_CIPHER_TTL)
            .map(|(c, _)| c.clone())
    }

    fn remove(&mut self, tenant: &str, dir: &str) {
        if let Some(uploads) = self.by_tenant.get_mut(tenant) {
            uploads.remove(dir);
            if uploads.is_empty() {
                self.by_tenant.remove(tenant);
            }
        }
    }
}

impl Proxy {
    fn needs_sse_c(&self, tenant: &Tenant) -> bool {
        matches!(
            tenant.keys.customer,
            super::keys::CustomerShare::SseC { .. }
        )
    }

    fn remember_upload(&self, tenant: &str, dir: &str, cipher: format::ObjectCipher) {
        if let Ok(mut uploads) = self.uploads.lock() {
            uploads.insert(tenant, dir, cipher, self.multipart.max_uploads_per_tenant);
        }
    }

    fn cached_upload(&self, tenant: &str, dir: &str) -> Option<Arc<format::ObjectCipher>> {
        self.uploads.lock().ok()?.get(tenant, dir)
    }

    fn forget_upload(&self, tenant: &str, dir: &str) {
        if let Ok(mut uploads) = self.uploads.lock() {
            uploads.remove(tenant, dir);
        }
    }

    /// Reads a staged multipart header and checks it belongs to `key`.
    async fn staged_header(&self, dir: &str, key: &str) -> Result<Vec<u8>, ProxyError> {
        let path = format!("{dir}/header");
        let meta = match self.storage.head(&path).await {
            Ok(m) => m,
            Err(storage::Error::NotFound) => return Err(ProxyError::NoSuchUpload),
            Err(e) => return Err(e.into()),
        };
        let staged = self.storage.read_range(&path, 0..meta.size).await?;
        let (len, rest) = staged.split_at_checked(4).ok_or(ProxyError::NoSuchUpload)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (header, staged_key) = rest.split_at_checked(len).ok_or(ProxyError::NoSuchUpload)?;
        if staged_key != key.as_bytes() {
            return Err(ProxyError::NoSuchUpload);
        }
        Ok(header.to_vec())
    }
}
