//! Object operations: PutObject, GetObject, HeadObject, DeleteObject(s), CopyObject.

use std::time::SystemTime;

use bytes::Bytes;
use s3s::dto::{self, StreamingBlob};

use super::conditions::{ByteRange, Conditions, conditions};
use super::metadata::{ResponseMetadata, etag, request_metadata, timestamp};
use super::passthrough;
use super::pipeline::{self, Opened, body_stream, declared_len};
use super::request::{CustomerKey, RequestContext, SseEcho, customer_key, echoed, md5_hex};
use super::{Op, Out, Proxy, WithHeaders};
use crate::format::Layout;
use crate::proxy::error::ProxyError;
use crate::storage;

/// GET responses up to this size are decrypted before the response starts.
const BUFFERED_GET_LIMIT: u64 = 1024 * 1024;

/// A GET of a stored object up to this size reads it whole in the same backend call that reads
/// the header, so a small GET costs two backend calls (existence, read) instead of four. Each
/// call is an HTTP request on S3 and a blocking-pool hand-off on the filesystem; profiling the
/// TTL-0 open-loop cell showed those hand-offs as the proxy's main cost (docs/benchmarks.md).
const READ_AHEAD: u64 = 256 * 1024;

/// What GetObject and HeadObject both need to open an object.
struct Read<'a> {
    request: &'a RequestContext,
    customer: Option<&'a CustomerKey>,
    operation: &'static str,
    bucket: &'a str,
    key: &'a str,
    path: String,
}

impl<'a> Read<'a> {
    /// A read of `bucket`/`key` for `operation`, with the customer's key if it sent one.
    fn new(
        request: &'a RequestContext,
        customer: Option<&'a CustomerKey>,
        operation: &'static str,
        (bucket, key): (&'a str, &'a str),
    ) -> Self {
        Self {
            request,
            customer,
            operation,
            bucket,
            key,
            path: request.paths().object(bucket, key),
        }
    }
}

/// A stat of the object to read, then (unless pass-through) the object opened.
enum Stat {
    /// Pass-through baseline: the stored object's size and time only.
    Passthrough(storage::Meta),
    /// The opened object, its conditions checked (boxed: a cipher is large).
    Opened(Box<Opened>),
}

/// The headers GetObject and HeadObject share.
struct ObjectHeaders {
    stored: ResponseMetadata,
    etag: String,
    last_modified: SystemTime,
    bytes: ByteRange,
    echo: SseEcho,
}

impl ObjectHeaders {
    fn of(opened: &Opened, range: Option<&dto::Range>, echo: SseEcho) -> Result<Self, ProxyError> {
        Ok(Self {
            stored: ResponseMetadata::of(opened.cipher.metadata()),
            etag: opened.etag.clone(),
            last_modified: opened.meta.last_modified,
            bytes: ByteRange::resolve(range, opened.plaintext_len)?,
            echo,
        })
    }
}

/// A GetObject or HeadObject output with the [`ObjectHeaders`] `$headers` and the given
/// fields (the two types name their shared fields alike).
macro_rules! object_output {
    ($($output:ident)::+, $headers:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let h: ObjectHeaders = $headers;
        echoed!(h.echo, $($output)::+ {
            $($field: $value,)*
            accept_ranges: Some("bytes".to_owned()),
            content_length: h.bytes.content_length(),
            content_range: h.bytes.content_range(),
            content_type: Some(h.stored.content_type),
            cache_control: h.stored.cache_control,
            content_disposition: h.stored.content_disposition,
            content_encoding: h.stored.content_encoding,
            content_language: h.stored.content_language,
            metadata: h.stored.metadata,
            e_tag: Some(etag(h.etag)),
            last_modified: Some(timestamp(h.last_modified)),
        })
    }};
}

impl Proxy {
    /// The shared preamble of GetObject and HeadObject: existence first (so a missing key is a
    /// 404 without bothering the trustee), then read the header, derive its key, open the
    /// object and apply the conditional headers.
    async fn read_object(
        &self,
        read: &Read<'_>,
        conditions: Conditions<'_>,
        read_ahead: u64,
    ) -> Result<Stat, ProxyError> {
        let meta = self
            .stat_object(read.request.paths(), read.bucket, &read.path)
            .await?;
        if self.passthrough {
            return Ok(Stat::Passthrough(meta));
        }
        let opened = pipeline::open(
            &self.storage,
            (read.request, read.customer, read.operation),
            (read.bucket, read.key, &read.path),
            meta,
            read_ahead,
        )
        .await?;
        conditions.check(&opened.etag, opened.meta.last_modified)?;
        Ok(Stat::Opened(Box::new(opened)))
    }
}

pub(super) async fn put_object(op: Op<'_, dto::PutObjectInput>) -> Out<dto::PutObjectOutput> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    let paths = request.paths();
    proxy.require_bucket(paths, &input.bucket).await?;
    let path = paths.object(&input.bucket, &input.key);
    if proxy.passthrough {
        return passthrough::put(&proxy.storage, &path, body_stream(input.body)).await;
    }
    let metadata = request_metadata!(input)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let key = request
        .write_key(customer.as_ref(), "PutObject", object)
        .await?;
    let (cipher, header) = request.new_object(&key, object, Layout::Single, &metadata)?;
    let declared = declared_len(input.body.as_ref());
    let body = body_stream(input.body);
    let len =
        pipeline::store_single(&proxy.storage, &path, (&cipher, &header), body, declared).await?;
    tracing::info!(plaintext_len = len, "object stored");
    Ok(echoed!(
        request.echo(customer.as_ref()),
        dto::PutObjectOutput {
            e_tag: Some(etag(md5_hex(&header))),
        }
    ))
}

pub(super) async fn get_object(
    op: Op<'_, dto::GetObjectInput>,
) -> Out<WithHeaders<dto::GetObjectOutput>> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let read = Read::new(&request, customer.as_ref(), "GetObject", object);
    let opened = match proxy
        .read_object(&read, conditions!(input), READ_AHEAD)
        .await?
    {
        Stat::Passthrough(meta) => {
            let range = input.range.as_ref();
            let output = passthrough::get(&proxy.storage, read.path, &meta, range)?;
            return Ok(WithHeaders::key_version(output, None));
        }
        Stat::Opened(opened) => *opened,
    };
    let echo = request.echo(customer.as_ref());
    let headers = ObjectHeaders::of(&opened, input.range.as_ref(), echo)?;
    let version = Some(opened.key_version());
    // Small responses are decrypted completely before the status line goes out, so any
    // tampering is a clean 502. Larger ones stream; a bad segment then aborts the body.
    let range = headers.bytes.range.clone();
    let body = if headers.bytes.len() <= BUFFERED_GET_LIMIT {
        let plaintext =
            pipeline::decrypt_buffered(&proxy.storage, &read.path, &opened, range).await?;
        StreamingBlob::from(s3s::Body::from(Bytes::from(plaintext)))
    } else {
        pipeline::decrypt_stream(&proxy.storage, read.path.clone(), opened, range)
    };
    let output = object_output!(dto::GetObjectOutput, headers, { body: Some(body) });
    Ok(WithHeaders::key_version(output, version))
}

pub(super) async fn head_object(
    op: Op<'_, dto::HeadObjectInput>,
) -> Out<WithHeaders<dto::HeadObjectOutput>> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let read = Read::new(&request, customer.as_ref(), "HeadObject", object);
    // HEAD needs the header only: no read-ahead.
    let opened = match proxy.read_object(&read, conditions!(input), 0).await? {
        Stat::Passthrough(meta) => {
            return Ok(WithHeaders::key_version(passthrough::head(&meta), None));
        }
        Stat::Opened(opened) => *opened,
    };
    let echo = request.echo(customer.as_ref());
    let headers = ObjectHeaders::of(&opened, input.range.as_ref(), echo)?;
    let version = Some(opened.key_version());
    let output = object_output!(dto::HeadObjectOutput, headers, {});
    Ok(WithHeaders::key_version(output, version))
}

pub(super) async fn delete_object(
    op: Op<'_, dto::DeleteObjectInput>,
) -> Out<dto::DeleteObjectOutput> {
    let Op(proxy, request, input) = op;
    let (paths, input) = (request.paths(), &input);
    proxy.require_bucket(paths, &input.bucket).await?;
    proxy
        .storage
        .delete(&paths.object(&input.bucket, &input.key))
        .await?;
    Ok(dto::DeleteObjectOutput::default())
}

pub(super) async fn delete_objects(
    op: Op<'_, dto::DeleteObjectsInput>,
) -> Out<dto::DeleteObjectsOutput> {
    let Op(proxy, request, input) = op;
    let paths = request.paths();
    proxy.require_bucket(paths, &input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in input.delete.objects {
        match proxy
            .storage
            .delete(&paths.object(&input.bucket, &object.key))
            .await
        {
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
    Ok(dto::DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    })
}

pub(super) async fn copy_object(op: Op<'_, dto::CopyObjectInput>) -> Out<dto::CopyObjectOutput> {
    let Op(proxy, request, input) = op;
    let paths = request.paths();
    let (src_bucket, src_key) = match &input.copy_source {
        dto::CopySource::Bucket {
            bucket,
            key,
            version_id: None,
        } => (bucket.to_string(), key.to_string()),
        _ => {
            return Err(ProxyError::NotImplemented(
                "copy sources other than bucket/key",
            ));
        }
    };
    let dest_customer = customer_key!(input)?;
    let src_customer = CustomerKey::parse(
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
            ));
        }
    };
    let replacement = if replace {
        Some(request_metadata!(input)?)
    } else {
        None
    };
    // Source existence first (NoSuchKey / NoSuchBucket), before bothering the trustee.
    let src_path = paths.object(&src_bucket, &src_key);
    let src_meta = proxy.stat_object(paths, &src_bucket, &src_path).await?;
    proxy.require_bucket(paths, &input.bucket).await?;
    let dest = (input.bucket.as_str(), input.key.as_str());
    // An in-place copy keeping the metadata of an object under an older key version is a
    // rewrap: a new header, the same body (docs/rewrap.md).
    let in_place = (src_bucket.as_str(), src_key.as_str()) == dest;
    if in_place && !replace && under_older_version(proxy, &request, &src_path, &src_meta).await {
        let customers = (src_customer.as_ref(), dest_customer.as_ref());
        return rewrap_in_place(proxy, &request, &input, customers, (dest, src_meta)).await;
    }
    // Both sides belong to the same tenant key, so both shares must be the customer's
    // share; each is checked by the key service.
    let opened = pipeline::open(
        &proxy.storage,
        (&request, src_customer.as_ref(), "CopyObject source"),
        (&src_bucket, &src_key, &src_path),
        src_meta,
        0,
    )
    .await?;
    check_copy_conditions(&input, &opened)?;
    let total = opened.plaintext_len;
    let metadata = match replacement {
        Some(m) => m,
        None => opened.cipher.metadata().clone(),
    };
    let plaintext = pipeline::decrypt_stream(&proxy.storage, src_path, opened, 0..total);
    let dest_key = request
        .write_key(dest_customer.as_ref(), "CopyObject", dest)
        .await?;
    let (cipher, header) = request.new_object(&dest_key, dest, Layout::Single, &metadata)?;
    let dest_path = paths.object(&input.bucket, &input.key);
    pipeline::store_single(
        &proxy.storage,
        &dest_path,
        (&cipher, &header),
        body_stream(Some(plaintext)),
        None,
    )
    .await
    // The "body" is the decrypted source: failing to read it means the source failed
    // authentication part way.
    .map_err(|e| match e {
        ProxyError::BodyRead(_) => ProxyError::Integrity,
        other => other,
    })?;
    let result = dto::CopyObjectResult {
        e_tag: Some(etag(md5_hex(&header))),
        last_modified: Some(timestamp(SystemTime::now())),
        ..Default::default()
    };
    Ok(echoed!(
        request.echo(dest_customer.as_ref()),
        dto::CopyObjectOutput {
            copy_object_result: Some(result),
        }
    ))
}

/// Whether the stored object at `path` names a registered key version other than the
/// tenant's current one, from its header's public fields (authenticated when it is opened). An
/// unreadable header is not: the ordinary copy reports it.
async fn under_older_version(
    proxy: &Proxy,
    request: &RequestContext,
    path: &str,
    meta: &storage::Meta,
) -> bool {
    let probe = meta.size.min(crate::format::HEADER_PROBE_LEN as u64);
    let Ok(prefix) = proxy.storage.read_range(path, 0..probe).await else {
        return false;
    };
    let Ok(info) = crate::format::peek_header(&prefix) else {
        return false;
    };
    let tenant = &request.tenant;
    info.key_version != tenant.current_version() && tenant.keys_for(info.key_version).is_some()
}

/// The rewrap: opens the object's header with its (older) key version, wraps the same DEK
/// under the current version's key for the same bucket/key, and replaces the stored header,
/// keeping every body byte. On the filesystem with a header of the same length that is one
/// small in-place write; otherwise the object is rewritten with the new header (docs/rewrap.md).
/// The ETag is the MD5 of the header, as for every object, so it is the new header's.
async fn rewrap_in_place(
    proxy: &Proxy,
    request: &RequestContext,
    input: &dto::CopyObjectInput,
    (source, dest): (Option<&CustomerKey>, Option<&CustomerKey>),
    (object, meta): ((&str, &str), storage::Meta),
) -> Out<dto::CopyObjectOutput> {
    let path = request.paths().object(object.0, object.1);
    let opened = pipeline::open(
        &proxy.storage,
        (request, source, "rewrap (old key version)"),
        (object.0, object.1, &path),
        meta,
        0,
    )
    .await?;
    check_copy_conditions(input, &opened)?;
    let key = request
        .write_key(dest, "rewrap (current key version)", object)
        .await?;
    let rewrapped = request.rewrap(&key, object, &opened.cipher)?;
    let how = proxy
        .storage
        .replace_prefix(&path, opened.header_bytes()?, &rewrapped.header)
        .await
        .map_err(|e| match e {
            // Another write replaced the object since it was opened: that write stands.
            storage::Error::Changed => ProxyError::PreconditionFailed,
            other => other.into(),
        })?;
    tracing::info!(
        from = opened.key_version(),
        to = request.tenant.current_version(),
        in_place = how == storage::Replaced::InPlace,
        "object rewrapped"
    );
    let result = dto::CopyObjectResult {
        e_tag: Some(etag(md5_hex(&rewrapped.header))),
        last_modified: Some(timestamp(SystemTime::now())),
        ..Default::default()
    };
    Ok(echoed!(
        request.echo(dest),
        dto::CopyObjectOutput {
            copy_object_result: Some(result),
        }
    ))
}

/// The copy-source conditions; a "not modified" source fails the copy's precondition.
fn check_copy_conditions(input: &dto::CopyObjectInput, opened: &Opened) -> Result<(), ProxyError> {
    let conditions = Conditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    };
    conditions
        .check(&opened.etag, opened.meta.last_modified)
        .map_err(|e| match e {
            ProxyError::NotModified => ProxyError::PreconditionFailed,
            other => other,
        })
}

pub(super) async fn get_object_acl(
    op: Op<'_, dto::GetObjectAclInput>,
) -> Out<dto::GetObjectAclOutput> {
    let Op(_proxy, _request, _input) = op;
    Err(ProxyError::NotImplemented(
        "GetObjectAcl (contract stub, issue 14)",
    ))
}

pub(super) async fn put_object_acl(
    op: Op<'_, dto::PutObjectAclInput>,
) -> Out<dto::PutObjectAclOutput> {
    let Op(_proxy, _request, _input) = op;
    Err(ProxyError::NotImplemented(
        "PutObjectAcl (contract stub, issue 14)",
    ))
}
