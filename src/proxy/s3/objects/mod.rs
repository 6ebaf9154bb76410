//! Object operations: PutObject, GetObject, HeadObject (here), DeleteObject(s), CopyObject
//! and the object ACLs (one file each).

mod acl;
mod copy;
mod delete;

use std::time::SystemTime;

use bytes::Bytes;
use s3s::dto::{self, StreamingBlob};

pub(crate) use self::acl::{get_object_acl, put_object_acl};
pub(crate) use self::copy::copy_object;
pub(crate) use self::delete::{delete_object, delete_objects};
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
    /// Pass-through baseline: the stored object's size and time, and its bytes if it was small
    /// enough to be read whole.
    Passthrough(storage::Meta, Bytes),
    /// The opened object, its conditions checked (boxed: a cipher is large).
    Opened(Box<Opened>),
}

/// The headers GetObject and HeadObject share.
struct ObjectHeaders {
    stored: ResponseMetadata,
    etag: String,
    last_modified: SystemTime,
    bytes: ByteRange,
    /// `x-amz-mp-parts-count`: a multipart object's part count, sent with `partNumber` only.
    parts_count: Option<i32>,
    echo: SseEcho,
}

impl ObjectHeaders {
    fn of(opened: &Opened, selection: Selection<'_>, echo: SseEcho) -> Result<Self, ProxyError> {
        let (bytes, parts_count) = selection.resolve(opened)?;
        Ok(Self {
            stored: ResponseMetadata::of(opened.cipher.metadata()),
            etag: opened.etag.clone(),
            last_modified: opened.meta.last_modified,
            bytes,
            parts_count,
            echo,
        })
    }
}

/// What a GET or HEAD asks for: a Range, a part (`partNumber`), or the whole object.
#[derive(Clone, Copy)]
enum Selection<'a> {
    Range(Option<&'a dto::Range>),
    Part(u32),
}

impl<'a> Selection<'a> {
    /// Checks the request before anything is opened: `partNumber` is 1 to 10,000 and never
    /// comes with a Range (both as S3 answers).
    fn of(range: Option<&'a dto::Range>, part_number: Option<i32>) -> Result<Self, ProxyError> {
        let Some(part) = part_number else {
            return Ok(Self::Range(range));
        };
        if range.is_some() {
            return Err(ProxyError::InvalidRequest(
                "Cannot specify both Range header and partNumber query parameter".into(),
            ));
        }
        match u32::try_from(part) {
            Ok(part @ 1..=10_000) => Ok(Self::Part(part)),
            _ => Err(ProxyError::InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive".into(),
            )),
        }
    }

    /// The bytes to serve and the parts count to report. Part N of a multipart object is its
    /// N-th part in the footer (S3 numbers the parts of a completed object 1..count); a
    /// single-run object has one part, the whole object.
    fn resolve(self, opened: &Opened) -> Result<(ByteRange, Option<i32>), ProxyError> {
        let part = match self {
            Self::Range(range) => {
                return Ok((ByteRange::resolve(range, opened.plaintext_len)?, None));
            }
            Self::Part(part) => part,
        };
        let parts = opened.part_ranges()?;
        let count = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let range = part
            .checked_sub(1)
            .and_then(|i| parts.get(i as usize))
            .cloned()
            .ok_or(ProxyError::InvalidPartNumber {
                requested: i32::try_from(part).unwrap_or(i32::MAX),
                parts: count,
            })?;
        let parts_count = opened
            .is_multipart()
            .then(|| i32::try_from(count).unwrap_or(i32::MAX));
        Ok((ByteRange::part(range, opened.plaintext_len), parts_count))
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
            expires: h.stored.expires,
            parts_count: h.parts_count,
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
        // One backend call for the size, the time and the header (or the whole small object):
        // the pass-through baseline takes the same path, minus the header.
        let want = storage::ReadStart {
            whole_up_to: read_ahead,
            prefix: if self.passthrough {
                0
            } else {
                crate::format::MAX_HEADER_LEN as u64
            },
        };
        let (meta, prefix) = self
            .read_start(read.request.paths(), read.bucket, &read.path, want)
            .await?;
        if self.passthrough {
            return Ok(Stat::Passthrough(meta, prefix));
        }
        let opened = pipeline::open_read(
            &self.storage,
            (read.request, read.customer, read.operation),
            (read.bucket, read.key, &read.path),
            (meta, prefix),
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
    let conditions = (input.if_match.as_ref(), input.if_none_match.as_ref());
    check_put_conditions(proxy, &path, conditions).await?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let key = request
        .write_key(customer.as_ref(), "PutObject", object)
        .await?;
    let (cipher, header) = request.new_object(&key, object, Layout::Single, &metadata)?;
    let declared = declared_len(input.body.as_ref());
    let body = body_stream(input.body);
    let len =
        pipeline::store_single(&proxy.storage, &path, (&cipher, &header), body, declared).await?;
    tracing::debug!(plaintext_len = len, "object stored");
    Ok(echoed!(
        request.echo(customer.as_ref()),
        dto::PutObjectOutput {
            e_tag: Some(etag(md5_hex(&header))),
        }
    ))
}

/// PutObject's conditional write (`If-None-Match: *`, `If-Match: <etag>`), checked against the
/// stored object before any key is released. The stored ETag is the MD5 of its header, whose
/// length the header states (read as listings read it: no key needed, unauthenticated, which is
/// enough to decide a precondition). Not atomic with the write that follows: a writer racing
/// between the check and the write wins as with a plain PUT.
async fn check_put_conditions(
    proxy: &Proxy,
    path: &str,
    (if_match, if_none_match): (Option<&dto::ETagCondition>, Option<&dto::ETagCondition>),
) -> Result<(), ProxyError> {
    if if_match.is_none() && if_none_match.is_none() {
        return Ok(());
    }
    if matches!(if_none_match, Some(dto::ETagCondition::ETag(_))) {
        return Err(ProxyError::NotImplemented(
            "If-None-Match on a write takes only *",
        ));
    }
    let meta = match proxy.storage.head(path).await {
        Ok(meta) => Some(meta),
        Err(storage::Error::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(meta) = meta else {
        // If-Match needs an object to match; If-None-Match: * is satisfied.
        return match if_match {
            Some(_) => Err(ProxyError::NoSuchKey),
            None => Ok(()),
        };
    };
    if if_none_match.is_some() {
        return Err(ProxyError::PreconditionFailed);
    }
    match if_match {
        Some(dto::ETagCondition::ETag(expected)) => {
            let probe = meta.size.min(crate::format::MAX_HEADER_LEN as u64);
            let prefix = proxy.storage.read_range(path, 0..probe).await?;
            let stored = crate::format::header_len_hint(&prefix)
                .and_then(|len| prefix.get(..len))
                .map(md5_hex);
            if stored.as_deref() != Some(expected.value()) {
                return Err(ProxyError::PreconditionFailed);
            }
            Ok(())
        }
        // `*`: any object matches.
        _ => Ok(()),
    }
}

pub(super) async fn get_object(
    op: Op<'_, dto::GetObjectInput>,
) -> Out<WithHeaders<dto::GetObjectOutput>> {
    let Op(proxy, request, input) = op;
    let customer = customer_key!(input)?;
    let selection = Selection::of(input.range.as_ref(), input.part_number)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let read = Read::new(&request, customer.as_ref(), "GetObject", object);
    let opened = match proxy
        .read_object(&read, conditions!(input), READ_AHEAD)
        .await?
    {
        Stat::Passthrough(meta, read_ahead) => {
            let range = input.range.as_ref();
            let output = passthrough::get(&proxy.storage, read.path, (&meta, read_ahead), range)?;
            return Ok(WithHeaders::key_version(output, None));
        }
        Stat::Opened(opened) => *opened,
    };
    let echo = request.echo(customer.as_ref());
    let headers = ObjectHeaders::of(&opened, selection, echo)?;
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
    let selection = Selection::of(input.range.as_ref(), input.part_number)?;
    let object = (input.bucket.as_str(), input.key.as_str());
    let read = Read::new(&request, customer.as_ref(), "HeadObject", object);
    // HEAD needs the header only: no read-ahead.
    let opened = match proxy.read_object(&read, conditions!(input), 0).await? {
        Stat::Passthrough(meta, _) => {
            return Ok(WithHeaders::key_version(passthrough::head(&meta), None));
        }
        Stat::Opened(opened) => *opened,
    };
    let echo = request.echo(customer.as_ref());
    let headers = ObjectHeaders::of(&opened, selection, echo)?;
    let version = Some(opened.key_version());
    let output = object_output!(dto::HeadObjectOutput, headers, {});
    Ok(WithHeaders::key_version(output, version))
}
