//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts; the staged header and parts, and the in-memory cache of the
//! ciphers of uploads in progress.
//!
//! A staged part's name records its plaintext length, its ETag (a keyed digest of the
//! plaintext, docs/proxy.md) and its attempt id, which selects the key the run is encrypted
//! under (multipart layout 2, docs/format.md §7). Uploads begun before layout 2 stage
//! `p<part>-<len>-<etag>` and complete in layout 1. Where the staging lives: [`super::paths`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto;

use super::metadata::{etag, request_metadata, timestamp};
use super::paths::UploadPaths;
use super::pipeline::{self, body_stream, check_complete, declared_len};
use super::request::{CustomerKey, RequestContext, customer_key, echoed, md5_hex, random_hex};
use super::{Op, Out, Proxy};
use crate::format::{self, Layout};
use crate::proxy::error::ProxyError;
use crate::storage;

/// How long an in-progress upload's cipher stays in memory.
const UPLOAD_CIPHER_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A multipart upload id: 16 random bytes in hex. Anything else names no upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh id.
    ///
    /// # Errors
    /// [`ProxyError::Crypto`] if the system RNG fails.
    pub fn random() -> Result<Self, ProxyError> {
        Ok(Self(random_hex(16)?))
    }

    /// An id a client sent.
    ///
    /// # Errors
    /// [`ProxyError::NoSuchUpload`] for anything that is not 32 hex digits, so a client's id
    /// can never step outside its upload directory.
    pub fn parse(id: &str) -> Result<Self, ProxyError> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProxyError::NoSuchUpload);
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The staged header of an upload: the object header, and the object key, so a part can never
/// be completed into another key. Stored as `len(header) (u32 BE) ‖ header ‖ key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedHeader {
    header: Vec<u8>,
    key: String,
}

impl StagedHeader {
    /// The staged header of an upload of `key`.
    pub fn new(header: Vec<u8>, key: &str) -> Self {
        Self {
            header,
            key: key.to_owned(),
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut staged = Vec::with_capacity(self.header.len() + self.key.len() + 4);
        staged.extend_from_slice(&(self.header.len() as u32).to_be_bytes());
        staged.extend_from_slice(&self.header);
        staged.extend_from_slice(self.key.as_bytes());
        staged
    }

    /// The object header of stored bytes staged for `key`.
    ///
    /// # Errors
    /// [`ProxyError::NoSuchUpload`] if the bytes are not a staged header, or not one for `key`.
    pub fn decode(staged: &[u8], key: &str) -> Result<Self, ProxyError> {
        let (len, rest) = staged.split_at_checked(4).ok_or(ProxyError::NoSuchUpload)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (header, staged_key) = rest.split_at_checked(len).ok_or(ProxyError::NoSuchUpload)?;
        if staged_key != key.as_bytes() {
            return Err(ProxyError::NoSuchUpload);
        }
        Ok(Self::new(header.to_vec(), key))
    }

    /// The object header.
    pub fn header(&self) -> &[u8] {
        &self.header
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

/// The staged attempts CompleteMultipartUpload assembles, in the order the client lists them:
/// for each part, the newest attempt with the ETag the client names.
fn choose_parts<'a>(
    staged: &'a [StagedPart],
    requested: &[dto::CompletedPart],
) -> Result<Vec<&'a StagedPart>, ProxyError> {
    if requested.is_empty() {
        return Err(ProxyError::InvalidRequest(
            "a multipart upload needs at least one part".into(),
        ));
    }
    let mut chosen: Vec<&StagedPart> = Vec::with_capacity(requested.len());
    let mut previous = 0u32;
    for part in requested {
        let number = part
            .part_number
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        if number <= previous {
            return Err(ProxyError::InvalidPartOrder);
        }
        previous = number;
        let mut attempts = staged.iter().filter(|p| p.number == number).peekable();
        if attempts.peek().is_none() {
            return Err(ProxyError::InvalidPart(format!(
                "part {number} was not uploaded"
            )));
        }
        // Identical bytes have one ETag, so the first answer's ETag names the latest attempt
        // with those bytes.
        let found = attempts
            .filter(|p| part.e_tag.as_ref().is_none_or(|e| e.value() == p.etag))
            .max_by_key(|p| p.meta.last_modified)
            .ok_or_else(|| {
                ProxyError::InvalidPart(format!("part {number} has a different ETag"))
            })?;
        chosen.push(found);
    }
    Ok(chosen)
}

/// The ciphers of uploads in progress, by tenant and upload directory. Each tenant has its own
/// cap, and a tenant at its cap evicts its own oldest entry: one tenant's open uploads can
/// never push out another tenant's (before, one pool of 10,000 for all tenants did).
#[derive(Default)]
pub(crate) struct UploadCiphers {
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

/// An upload a request names: where it is staged and its staged header.
struct Upload {
    paths: UploadPaths,
    header: StagedHeader,
}

impl Proxy {
    fn remember_upload(&self, tenant: &str, upload: &UploadPaths, cipher: format::ObjectCipher) {
        if let Ok(mut uploads) = self.uploads.lock() {
            let cap = self.multipart.max_uploads_per_tenant;
            uploads.insert(tenant, upload.dir(), cipher, cap);
        }
    }

    fn cached_upload(
        &self,
        tenant: &str,
        upload: &UploadPaths,
    ) -> Option<Arc<format::ObjectCipher>> {
        self.uploads.lock().ok()?.get(tenant, upload.dir())
    }

    fn forget_upload(&self, tenant: &str, upload: &UploadPaths) {
        if let Ok(mut uploads) = self.uploads.lock() {
            uploads.remove(tenant, upload.dir());
        }
    }

    /// Where upload `upload_id` of `bucket` is staged, unchecked.
    fn upload_paths(
        request: &RequestContext,
        bucket: &str,
        upload_id: &str,
    ) -> Result<UploadPaths, ProxyError> {
        let id = UploadId::parse(upload_id)?;
        Ok(request.paths().upload(bucket, id.as_str()))
    }

    /// Reads a staged multipart header and checks it belongs to `key`.
    async fn staged_header(&self, paths: UploadPaths, key: &str) -> Result<Upload, ProxyError> {
        let path = paths.header();
        let meta = match self.storage.head(&path).await {
            Ok(m) => m,
            Err(storage::Error::NotFound) => return Err(ProxyError::NoSuchUpload),
            Err(e) => return Err(e.into()),
        };
        let staged = self.storage.read_range(&path, 0..meta.size).await?;
        let header = StagedHeader::decode(&staged, key)?;
        Ok(Upload { paths, header })
    }

    /// The upload `upload_id` of `bucket`/`key`, which must exist.
    async fn upload(
        &self,
        request: &RequestContext,
        (bucket, key): (&str, &str),
        upload_id: &str,
    ) -> Result<Upload, ProxyError> {
        let paths = Self::upload_paths(request, bucket, upload_id)?;
        self.staged_header(paths, key).await
    }

    /// The cipher of an upload, from its staged header and the released key.
    async fn upload_cipher(
        &self,
        request: &RequestContext,
        customer: Option<&CustomerKey>,
        reason: &str,
        object: (&str, &str),
        upload: &Upload,
    ) -> Result<format::ObjectCipher, ProxyError> {
        let stored = upload.header.header();
        Ok(request
            .open_stored(customer, reason, object, stored)
            .await?
            .0)
    }

    async fn staged_parts(&self, upload: &UploadPaths) -> Result<Vec<StagedPart>, ProxyError> {
        let mut stream = self.storage.list(upload.dir());
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

pub(super) async fn create_multipart_upload(
    op: Op<'_, dto::CreateMultipartUploadInput>,
) -> Out<dto::CreateMultipartUploadOutput> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    // S3 takes an object's metadata at CreateMultipartUpload; it is sealed into the staged
    // header, which Complete writes unchanged.
    let metadata = request_metadata!(input)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let key = request
        .write_key(customer.as_ref(), "CreateMultipartUpload", object)
        .await?;
    let (cipher, header) = request.new_object(&key, object, Layout::MultipartKeyed, &metadata)?;
    let upload_id = UploadId::random()?;
    let upload = request.paths().upload(&input.bucket, upload_id.as_str());
    proxy.remember_upload(&request.tenant.id, &upload, cipher);
    let staged = StagedHeader::new(header, &input.key);
    proxy
        .storage
        .put(&upload.header(), Bytes::from(staged.encode()))
        .await?;
    Ok(echoed!(
        request.echo(customer.as_ref()),
        dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id.0),
        }
    ))
}

pub(super) async fn upload_part(op: Op<'_, dto::UploadPartInput>) -> Out<dto::UploadPartOutput> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    let part = u32::try_from(input.part_number)
        .ok()
        .filter(|p| (1..=10_000).contains(p))
        .ok_or_else(|| ProxyError::InvalidRequest("part numbers are 1 to 10000".into()))?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let upload = proxy.upload(&request, object, &input.upload_id).await?;
    let cipher = proxy
        .upload_cipher(&request, customer.as_ref(), "UploadPart", object, &upload)
        .await?;
    // Every attempt gets a fresh attempt id and so its own key (docs/format.md §7): a part
    // uploaded again never reuses the nonces of an earlier attempt. An upload begun in
    // layout 1 (before this existed) keeps layout 1 until it completes.
    let attempt = format::PartAttempt::random()?;
    let (encryptor, attempt) = match cipher.header().layout {
        Layout::MultipartKeyed => (cipher.part_encryptor(part, &attempt)?, Some(attempt)),
        Layout::Multipart => (cipher.encryptor(part), None),
        Layout::Single => return Err(ProxyError::Integrity),
    };
    // Stage under a temporary name first; the final name carries length, ETag and attempt.
    let tmp = upload.paths.temporary(&random_hex(16)?);
    let mut writer = proxy.storage.writer(&tmp)?;
    let declared = declared_len(input.body.as_ref());
    let mut digest = cipher.part_etag_digest();
    let len = pipeline::encrypt_with(encryptor, body_stream(input.body), &mut writer, |c| {
        if let Some(d) = digest.as_mut() {
            d.update(c);
        }
    })
    .await?;
    check_complete(declared, len)?;
    writer.complete().await?;
    // The part ETag is a keyed digest of the plaintext (docs/proxy.md), so identical bytes
    // sent again get the same ETag, as on S3. Layout 1 uploads keep random ETags.
    let etag_value = match digest {
        Some(d) => hex::encode(d.finish()),
        None => random_hex(16)?,
    };
    let name = StagedPart::name(part, len, &etag_value, attempt.as_ref());
    let final_path = upload.paths.part(&name);
    let result = proxy.storage.copy(&tmp, &final_path).await;
    proxy.storage.delete(&tmp).await?;
    result?;
    // Then replace every other attempt of the same part number: the new attempt is in
    // place first, so a failure here leaves an extra attempt, never none. Not "only older
    // ones": S3 backends report Last-Modified in whole seconds, so a quick retry with other
    // bytes would keep the replaced attempt completable. Two *concurrent* uploads of one
    // part may remove each other; Complete then answers InvalidPart and the client retries.
    for old in proxy
        .staged_parts(&upload.paths)
        .await?
        .into_iter()
        .filter(|p| p.number == part && p.path != final_path)
    {
        proxy.storage.delete(&old.path).await?;
    }
    Ok(echoed!(
        request.echo(customer.as_ref()),
        dto::UploadPartOutput {
            e_tag: Some(etag(etag_value)),
        }
    ))
}

pub(super) async fn complete_multipart_upload(
    op: Op<'_, dto::CompleteMultipartUploadInput>,
) -> Out<dto::CompleteMultipartUploadOutput> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let paths = Proxy::upload_paths(&request, &input.bucket, &input.upload_id)?;
    // The bucket may have been deleted since the upload began (DeleteBucket looks at
    // objects only); S3 answers NoSuchBucket then, and nothing may be written.
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    let upload = proxy.staged_header(paths, &input.key).await?;
    // Stock clients (object_store, some SDKs) send no SSE-C headers on Complete, which S3
    // allows. Then the cipher kept in memory since CreateMultipartUpload is used; without
    // it (proxy restarted, another replica) the share is required.
    let tenant = &request.tenant;
    let cipher = if customer.is_none() && tenant.needs_sse_c() {
        proxy
            .cached_upload(&tenant.id, &upload.paths)
            .ok_or(ProxyError::MissingShare)?
    } else {
        let reason = "CompleteMultipartUpload";
        Arc::new(
            proxy
                .upload_cipher(&request, customer.as_ref(), reason, object, &upload)
                .await?,
        )
    };
    let header = upload
        .header
        .header()
        .get(..cipher.header_len())
        .ok_or(ProxyError::Integrity)?;
    let staged = proxy.staged_parts(&upload.paths).await?;
    let requested = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    let chosen = choose_parts(&staged, &requested)?;
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
        Layout::Single => return Err(ProxyError::Integrity),
    };
    let mut writer = proxy
        .storage
        .writer(&request.paths().object(object.0, object.1))?;
    writer.write(header).await?;
    let mut footer_parts = Vec::with_capacity(chosen.len());
    for part in &chosen {
        let mut stream = proxy
            .storage
            .stream_range(&part.path, 0..part.meta.size)
            .await?;
        while let Some(chunk) = stream.next().await {
            writer.write(&chunk?).await?;
        }
        footer_parts.push(format::PartInfo {
            part_number: part.number,
            plaintext_len: part.plaintext_len,
        });
    }
    let footer = match &attempts {
        Some(attempts) => cipher.footer_with_attempts(&footer_parts, attempts),
        None => cipher.footer(&footer_parts),
    }?;
    writer.write(&footer).await?;
    writer.complete().await?;
    // Clean up staging; a failure here only leaves garbage, never a wrong object.
    for part in &staged {
        let _ = proxy.storage.delete(&part.path).await;
    }
    let _ = proxy.storage.delete(&upload.paths.header()).await;
    proxy.forget_upload(&tenant.id, &upload.paths);
    Ok(dto::CompleteMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(etag(md5_hex(header))),
        server_side_encryption: request.echo(None).server_side_encryption,
        ..Default::default()
    })
}

pub(super) async fn abort_multipart_upload(
    op: Op<'_, dto::AbortMultipartUploadInput>,
) -> Out<dto::AbortMultipartUploadOutput> {
    let Op(proxy, request, input) = op;
    let object = (input.bucket.as_str(), input.key.as_str());
    let upload = proxy.upload(&request, object, &input.upload_id).await?;
    proxy.forget_upload(&request.tenant.id, &upload.paths);
    let mut stream = proxy.storage.list(upload.paths.dir());
    let mut paths = Vec::new();
    while let Some(item) = stream.next().await {
        paths.push(item?.0);
    }
    for path in paths {
        proxy.storage.delete(&path).await?;
    }
    Ok(dto::AbortMultipartUploadOutput::default())
}

pub(super) async fn list_parts(op: Op<'_, dto::ListPartsInput>) -> Out<dto::ListPartsOutput> {
    let Op(proxy, request, input) = op;
    let object = (input.bucket.as_str(), input.key.as_str());
    let upload = proxy.upload(&request, object, &input.upload_id).await?;
    let marker = input.part_number_marker.unwrap_or(0);
    let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(1, 1000)).unwrap_or(1000);
    let staged = proxy.staged_parts(&upload.paths).await?;
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
    Ok(dto::ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        parts: Some(parts),
        is_truncated: Some(truncated),
        max_parts: i32::try_from(max).ok(),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        ..Default::default()
    })
}

pub(super) async fn upload_part_copy(
    op: Op<'_, dto::UploadPartCopyInput>,
) -> Out<dto::UploadPartCopyOutput> {
    let Op(_proxy, _request, _input) = op;
    Err(ProxyError::NotImplemented(
        "UploadPartCopy (contract stub, issue 14)",
    ))
}

pub(super) async fn list_multipart_uploads(
    op: Op<'_, dto::ListMultipartUploadsInput>,
) -> Out<dto::ListMultipartUploadsOutput> {
    let Op(_proxy, _request, _input) = op;
    Err(ProxyError::NotImplemented(
        "ListMultipartUploads (contract stub, issue 14)",
    ))
}
