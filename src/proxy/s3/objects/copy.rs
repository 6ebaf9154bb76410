//! CopyObject, and the in-place copy that rewraps an object under the current key version.

use std::time::SystemTime;

use s3s::dto;

use super::super::metadata::{etag, request_metadata, timestamp};
use super::super::pipeline::{self, body_stream};
use super::super::request::{CustomerKey, RequestContext, customer_key, echoed, md5_hex};
use super::super::{Op, Out, Proxy};
use crate::format::Layout;
use crate::proxy::error::ProxyError;
use crate::proxy::s3::conditions::check_copy_source;
use crate::storage;

pub(crate) async fn copy_object(op: Op<'_, dto::CopyObjectInput>) -> Out<dto::CopyObjectOutput> {
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
    if in_place && !replace {
        if under_older_version(proxy, &request, &src_path, &src_meta).await {
            let customers = (src_customer.as_ref(), dest_customer.as_ref());
            return rewrap_in_place(proxy, &request, &input, customers, (dest, src_meta)).await;
        }
        // S3 refuses a copy onto itself that changes nothing. SSE-C headers on the destination
        // are a change of encryption attributes there (re-encrypting under a fresh DEK), so an
        // SSE-C tenant's self-copy stays allowed, as on S3.
        if dest_customer.is_none() {
            return Err(ProxyError::InvalidRequest(SELF_COPY_REFUSED.into()));
        }
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
    check_copy_source!(&input, &opened)?;
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

/// S3's message for a copy of an object onto itself that changes nothing.
const SELF_COPY_REFUSED: &str = "This copy request is illegal because it is trying to copy an \
     object to itself without changing the object's metadata, storage class, website redirect \
     location or encryption attributes.";

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
    check_copy_source!(input, &opened)?;
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
