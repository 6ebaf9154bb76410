//! ListObjects and ListObjectsV2: one page of a bucket, with the plaintext sizes and ETags
//! GET and HEAD report, read without a key through [`format::inspect`](fn@crate::format::inspect).

use futures::StreamExt;
use s3s::dto;

use super::metadata::{etag, timestamp};
use super::paths::TenantPaths;
use super::request::{md5_hex, timed};
use super::{Op, Out, Proxy};
use crate::format::{self, PlaintextLen};
use crate::proxy::error::ProxyError;
use crate::proxy::listing;
use crate::storage::{self, Storage};

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

/// [`ListParams`] of ListObjects or ListObjectsV2 (`input`), resuming after `after`.
macro_rules! list_params {
    ($input:expr, $after:expr) => {
        ListParams {
            prefix: $input.prefix.as_deref(),
            delimiter: $input.delimiter.as_deref(),
            after: $after,
            max_keys: $input.max_keys,
            encoding_type: $input.encoding_type.as_ref(),
        }
    };
}

/// Plaintext size shown for an object whose structure cannot be read: a single run under the
/// default segment size (what every object the proxy writes uses), 0 if no run is that long.
fn fallback_size(stored: u64, header_len: usize) -> u64 {
    format::inspect::single_plaintext_len(stored, header_len, format::DEFAULT_SEGMENT_SIZE)
        .unwrap_or(0)
}

/// ETag and plaintext size shown in listings, without a key. The ETag is the one GET and HEAD
/// report (MD5 of the header bytes, including a v2 header's sealed metadata). Single objects:
/// size from the stored size. Multipart objects: the sum of the part lengths in the footer.
/// All are unauthenticated display values; GET and HEAD authenticate what they serve.
async fn listing_view(
    storage: &Storage,
    path: &str,
    stored: u64,
    tenant_len: usize,
) -> (Option<String>, u64) {
    // If the header cannot be read or parsed, assume v1 for the displayed size.
    let v1_len = format::header::HEADER_V1_BASE_LEN + tenant_len;
    let probe = (format::HEADER_PROBE_LEN as u64).min(stored);
    let Ok(mut head) = storage.read_range(path, 0..probe).await else {
        return (None, fallback_size(stored, v1_len));
    };
    let Some(header_len) = format::header_len_hint(&head) else {
        return (None, fallback_size(stored, v1_len));
    };
    if header_len > head.len() && header_len as u64 <= stored {
        // A v2 header is longer than the probe: one more read for the whole header.
        match storage.read_range(path, 0..header_len as u64).await {
            Ok(whole) => head = whole,
            Err(_) => return (None, fallback_size(stored, header_len)),
        }
    }
    let etag = head.get(..header_len).map(md5_hex);
    let size = plaintext_size(storage, path, &head, stored)
        .await
        .unwrap_or_else(|| fallback_size(stored, header_len));
    (etag, size)
}

/// The plaintext size [`format::inspect`] finds, reading the footer of a multipart object.
async fn plaintext_size(storage: &Storage, path: &str, head: &[u8], stored: u64) -> Option<u64> {
    let inspection = format::inspect(head, stored).ok()?;
    match inspection.plaintext_len().ok()? {
        PlaintextLen::Known(len) => Some(len),
        PlaintextLen::NeedsFooter { tail } => {
            let tail = storage.read_range(path, tail).await.ok()?;
            let range = inspection.footer_range(&tail).ok()?;
            let footer = storage.read_range(path, range).await.ok()?;
            inspection.with_footer(&footer).ok()
        }
    }
}

/// One page of the decoded keys (with stored metadata) of a bucket, streamed from the
/// storage's listing of the prefix's directory into a [`listing::PageBuilder`], which keeps
/// only a page's worth of entries and stops early when the listing is in key order.
async fn list_keys(
    storage: &Storage,
    paths: TenantPaths<'_>,
    bucket: &str,
    req: &listing::PageRequest<'_>,
) -> Result<listing::Page<storage::Meta>, ProxyError> {
    let base = paths.objects_dir(bucket);
    let found = storage.list_keys(&base, req.prefix, req.delimiter, req.after);
    Ok(listing::page_from_stream(found.keys, found.ordered, req).await?)
}

impl Proxy {
    /// One listing page as S3 objects and common prefixes, from the parameters ListObjects
    /// and ListObjectsV2 share; names are URL-encoded if the request asks for it.
    async fn list_page(
        &self,
        paths: TenantPaths<'_>,
        tenant_len: usize,
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
        self.require_bucket(paths, bucket).await?;
        let page = if req.max_keys == 0 {
            // Nothing can be on the page: the storage is not listed.
            listing::page(std::iter::empty(), &req)
        } else {
            timed("backend_io", list_keys(&self.storage, paths, bucket, &req)).await?
        };
        // Sizes: arithmetic for single objects, the footer's part lengths for multipart ones
        // (a few small range reads per listed object, 16 at a time).
        let objects = futures::stream::iter(page.contents)
            .map(|(key, meta)| {
                let path = paths.object(bucket, &key);
                async move {
                    let (etag_value, size) =
                        listing_view(&self.storage, &path, meta.size, tenant_len).await;
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
            .collect();
        let objects: Vec<dto::Object> = timed("backend_io", objects).await;
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
}

pub(super) async fn list_objects(op: Op<'_, dto::ListObjectsInput>) -> Out<dto::ListObjectsOutput> {
    let Op(proxy, request, input) = op;
    let params = list_params!(input, input.marker.as_deref());
    let tenant_len = request.tenant.id.len();
    let mut page = proxy
        .list_page(request.paths(), tenant_len, &input.bucket, params)
        .await?;
    // S3 sends NextMarker only with a delimiter: without one, clients resume after the last
    // key of the page (botocore's paginator does), and the last common prefix is what they
    // could not know.
    let next_marker = if page.truncated && has_delimiter(input.delimiter.as_deref()) {
        page.echo(page.last.clone())
    } else {
        None
    };
    // ListObjects (v1) always names each object's owner.
    let contents = with_owner(std::mem::take(&mut page.objects), &request.tenant.id);
    Ok(dto::ListObjectsOutput {
        name: Some(input.bucket),
        // S3 always sends Prefix and Marker (empty when not given) and Delimiter only when
        // one is in effect (an empty one is none).
        prefix: page.echo(Some(input.prefix.unwrap_or_default())),
        delimiter: page.echo(input.delimiter.filter(|d| !d.is_empty())),
        marker: page.echo(Some(input.marker.unwrap_or_default())),
        max_keys: Some(page.max_keys),
        is_truncated: Some(page.truncated),
        next_marker,
        contents: Some(contents),
        common_prefixes: Some(page.common_prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}

/// Whether a request's delimiter is in effect (S3 ignores an empty one).
fn has_delimiter(delimiter: Option<&str>) -> bool {
    delimiter.is_some_and(|d| !d.is_empty())
}

/// `objects` naming their owner: the tenant, as ListBuckets and the ACLs name it.
fn with_owner(objects: Vec<dto::Object>, tenant: &str) -> Vec<dto::Object> {
    let owner = dto::Owner {
        display_name: Some(tenant.to_owned()),
        id: Some(tenant.to_owned()),
    };
    objects
        .into_iter()
        .map(|object| dto::Object {
            owner: Some(owner.clone()),
            ..object
        })
        .collect()
}

pub(super) async fn list_objects_v2(
    op: Op<'_, dto::ListObjectsV2Input>,
) -> Out<dto::ListObjectsV2Output> {
    let Op(proxy, request, input) = op;
    // The continuation token is the hex of the last key (or common prefix) returned.
    let after = match &input.continuation_token {
        Some(token) => Some(
            hex::decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ProxyError::InvalidArgument("invalid continuation token".into()))?,
        ),
        None => input.start_after.clone(),
    };
    let params = list_params!(input, after.as_deref());
    let tenant_len = request.tenant.id.len();
    let mut page = proxy
        .list_page(request.paths(), tenant_len, &input.bucket, params)
        .await?;
    let key_count =
        i32::try_from(page.objects.len() + page.common_prefixes.len()).unwrap_or(i32::MAX);
    // ListObjectsV2 names owners only when asked (`fetch-owner=true`).
    let mut contents = std::mem::take(&mut page.objects);
    if input.fetch_owner == Some(true) {
        contents = with_owner(contents, &request.tenant.id);
    }
    Ok(dto::ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: page.echo(Some(input.prefix.unwrap_or_default())),
        delimiter: page.echo(input.delimiter.filter(|d| !d.is_empty())),
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
        contents: Some(contents),
        common_prefixes: Some(page.common_prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}
