//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts here; UploadPartCopy in [`copy`], ListMultipartUploads in
//! [`uploads`]; the staged header, parts and completed marker in [`staged`]; the in-memory
//! cache of the ciphers of uploads in progress in [`ciphers`].
//!
//! A staged part's name records its plaintext length, its ETag (a keyed digest of the
//! plaintext, docs/proxy.md) and its attempt id, which selects the key the run is encrypted
//! under (multipart layout 2, docs/format.md §7). Uploads begun before layout 2 stage
//! `p<part>-<len>-<etag>` and complete in layout 1. Where the staging lives: [`super::paths`].
//!
//! A completed upload leaves a marker (its ETag and key) in its staging directory, so a
//! repeated CompleteMultipartUpload answers 200 with the same ETag, as S3 does; the reaper
//! removes it after `multipart.abandon_after_secs` (src/proxy/reaper.rs).

mod ciphers;
mod copy;
mod staged;
mod uploads;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto;

use self::staged::{StagedPart, choose_parts, latest_attempts, part_number};
use super::metadata::{etag, request_metadata, timestamp};
use super::paths::UploadPaths;
use super::pipeline::{self, BodyStream, body_stream, check_complete, declared_len};
use super::request::{CustomerKey, RequestContext, customer_key, echoed, md5_hex, random_hex};
use super::{Op, Out, Proxy};
use crate::format::{self, Layout};
use crate::proxy::error::ProxyError;
use crate::proxy::listing;
use crate::storage;

pub(crate) use self::ciphers::UploadCiphers;
pub(super) use self::copy::upload_part_copy;
pub use self::staged::{CompletedMarker, StagedHeader, UploadId};
pub(super) use self::uploads::list_multipart_uploads;

/// A staged header or completed marker is a header and a key; anything larger is not one.
const MAX_STAGED_LEN: u64 = format::MAX_HEADER_LEN as u64 + 4 + 4096;

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

    /// A small staged file (a header, a completed marker) with its metadata; `None` if it
    /// does not exist.
    async fn read_small(&self, path: &str) -> Result<Option<(Bytes, storage::Meta)>, ProxyError> {
        let meta = match self.storage.head(path).await {
            Ok(m) => m,
            Err(storage::Error::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if meta.size > MAX_STAGED_LEN {
            return Err(ProxyError::Integrity);
        }
        match self.storage.read_range(path, 0..meta.size).await {
            Ok(bytes) => Ok(Some((bytes, meta))),
            Err(storage::Error::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a staged multipart header and checks it belongs to `key`.
    async fn staged_header(&self, paths: UploadPaths, key: &str) -> Result<Upload, ProxyError> {
        let (staged, _) = self
            .read_small(&paths.header())
            .await?
            .ok_or(ProxyError::NoSuchUpload)?;
        let header = StagedHeader::decode(&staged, key)?;
        Ok(Upload { paths, header })
    }

    /// The marker of an upload of `key` that completed, if it did.
    async fn completed(
        &self,
        paths: &UploadPaths,
        key: &str,
    ) -> Result<Option<CompletedMarker>, ProxyError> {
        match self.read_small(&paths.completed()).await? {
            Some((stored, _)) => CompletedMarker::decode(&stored, key).map(Some),
            None => Ok(None),
        }
    }

    /// The upload `upload_id` of `bucket`/`key`, which must exist.
    async fn upload(
        &self,
        request: &RequestContext,
        (bucket, key): (&str, &str),
        upload_id: &str,
    ) -> Result<Upload, ProxyError> {
        let found = match Self::upload_paths(request, bucket, upload_id) {
            Ok(paths) => self.staged_header(paths, key).await,
            Err(e) => Err(e),
        };
        match found {
            // S3 resolves the bucket first: an upload in a missing bucket is NoSuchBucket. The
            // marker is only looked up when the upload is missing, so a found one costs nothing.
            Err(ProxyError::NoSuchUpload) => {
                self.require_bucket(request.paths(), bucket).await?;
                Err(ProxyError::NoSuchUpload)
            }
            other => other,
        }
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

    /// Encrypts `body` as a new attempt of part `part` of `upload` and stages it, replacing
    /// the part's earlier attempts; returns the part ETag (bare hex). UploadPart and
    /// UploadPartCopy both stage through here. A body of other than the `declared` length
    /// stages nothing.
    async fn stage_part(
        &self,
        upload: &Upload,
        cipher: &format::ObjectCipher,
        part: u32,
        (body, declared): (BodyStream, Option<u64>),
    ) -> Result<String, ProxyError> {
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
        let mut writer = self.storage.writer(&tmp)?;
        let mut digest = cipher.part_etag_digest();
        let len = pipeline::encrypt_with(encryptor, body, &mut writer, |c| {
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
        let result = self.storage.copy(&tmp, &final_path).await;
        self.storage.delete(&tmp).await?;
        result?;
        // Then replace every other attempt of the same part number: the new attempt is in
        // place first, so a failure here leaves an extra attempt, never none. Not "only older
        // ones": S3 backends report Last-Modified in whole seconds, so a quick retry with other
        // bytes would keep the replaced attempt completable. Two *concurrent* uploads of one
        // part may remove each other; Complete then answers InvalidPart and the client retries.
        for old in self
            .staged_parts(&upload.paths)
            .await?
            .into_iter()
            .filter(|p| p.number == part && p.path != final_path)
        {
            self.storage.delete(&old.path).await?;
        }
        Ok(etag_value)
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
            upload_id: Some(upload_id.into_string()),
        }
    ))
}

pub(super) async fn upload_part(op: Op<'_, dto::UploadPartInput>) -> Out<dto::UploadPartOutput> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    let part = part_number(input.part_number)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let upload = proxy.upload(&request, object, &input.upload_id).await?;
    let cipher = proxy
        .upload_cipher(&request, customer.as_ref(), "UploadPart", object, &upload)
        .await?;
    let declared = declared_len(input.body.as_ref());
    let body = (body_stream(input.body), declared);
    let etag_value = proxy.stage_part(&upload, &cipher, part, body).await?;
    Ok(echoed!(
        request.echo(customer.as_ref()),
        dto::UploadPartOutput {
            e_tag: Some(etag(etag_value)),
        }
    ))
}

/// The answer to a CompleteMultipartUpload of `bucket`/`key` that produced ETag `etag_value`
/// (the first and every repeated one).
fn completed_output(
    request: &RequestContext,
    bucket: String,
    key: String,
    etag_value: String,
) -> dto::CompleteMultipartUploadOutput {
    // Path-style and relative: the proxy does not know the name clients reach it by.
    let location = format!("/{bucket}/{}", listing::url_encode(&key));
    dto::CompleteMultipartUploadOutput {
        bucket: Some(bucket),
        key: Some(key),
        location: Some(location),
        e_tag: Some(etag(etag_value)),
        server_side_encryption: request.echo(None).server_side_encryption,
        ..Default::default()
    }
}

pub(super) async fn complete_multipart_upload(
    op: Op<'_, dto::CompleteMultipartUploadInput>,
) -> Out<dto::CompleteMultipartUploadOutput> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    // The bucket may have been deleted since the upload began (DeleteBucket looks at
    // objects only); S3 answers NoSuchBucket then, and nothing may be written. Checked before
    // the upload id, as S3 resolves the bucket first.
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    let paths = Proxy::upload_paths(&request, &input.bucket, &input.upload_id)?;
    // A repeat of a Complete that succeeded (a client whose first answer was lost retries):
    // S3 answers 200 with the same ETag. The marker holds public facts only, so no key is
    // needed to answer.
    if let Some(marker) = proxy.completed(&paths, &input.key).await? {
        let etag_value = marker.etag().to_owned();
        return Ok(completed_output(
            &request,
            input.bucket,
            input.key,
            etag_value,
        ));
    }
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
    let chosen = choose_parts(&staged, &requested, proxy.multipart.min_part_size)?;
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
    let etag_value = md5_hex(header);
    proxy.forget_upload(&tenant.id, &upload.paths);
    // The marker first, then the staging goes. Without a marker the staging stays: a repeated
    // Complete then assembles the same object again (same header, same ETag), and the reaper
    // removes the staging later. Either way a failure here leaves garbage, never a wrong object.
    let marker = CompletedMarker::new(&etag_value, &input.key);
    match proxy
        .storage
        .put(&upload.paths.completed(), Bytes::from(marker.encode()))
        .await
    {
        Ok(()) => {
            for part in &staged {
                let _ = proxy.storage.delete(&part.path).await;
            }
            let _ = proxy.storage.delete(&upload.paths.header()).await;
        }
        Err(e) => tracing::warn!(error = %e, "completed marker not written; staging kept"),
    }
    Ok(completed_output(
        &request,
        input.bucket,
        input.key,
        etag_value,
    ))
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
