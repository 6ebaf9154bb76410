//! The S3 operations: an `s3s::S3` implementation that encrypts on the way in and decrypts on
//! the way out.
//!
//! Layers, bottom up (a file imports only from files above it in this list):
//!
//! | file | job |
//! |---|---|
//! | [`paths`] | where a tenant's buckets, objects and uploads live in storage |
//! | [`metadata`] | object metadata between S3 headers and the sealed object header |
//! | [`acl`] | the one ACL there is (`private`): what Get*Acl answers, what Put*Acl accepts |
//! | [`conditions`] | If-Match and friends, byte ranges (`ByteRange`) |
//! | [`request`] | one request's context: tenant, request id, SSE-C key, echo headers, timers |
//! | [`pipeline`] | the encrypt and decrypt streams between bodies and storage |
//! | [`passthrough`] | the unencrypted benchmark baseline |
//! | [`buckets`], [`objects`], [`list`], [`multipart`] | the handlers, grouped as S3 groups them |
//! | this file | [`Proxy`], the `impl S3` that hands each operation to its group |
//!
//! Every response shows the plaintext view: Content-Length, ranges and listing sizes are
//! plaintext sizes.

pub mod acl;
pub mod buckets;
pub mod conditions;
pub mod list;
pub mod metadata;
pub mod multipart;
pub mod objects;
pub mod passthrough;
pub mod paths;
pub mod pipeline;
pub mod request;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use s3s::dto;
use s3s::{S3, S3Request, S3Response, S3Result};
use tracing::Instrument as _;

pub(crate) use self::conditions::{check_conditions, resolve_range};
pub use self::paths::bucket_marker_path;
pub(crate) use self::request::sse_c;
pub use crate::proxy::registry::Tenant;

use self::multipart::UploadCiphers;
use self::paths::TenantPaths;
use self::request::timed;
use crate::proxy::config::MultipartConfig;
use crate::proxy::error::ProxyError;
use crate::proxy::keys::KeyService;
use crate::proxy::registry::Registry;
use crate::proxy::server::RequestId;
use crate::storage::{self, Storage};

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

    /// The context of a request: its tenant and request id.
    fn request<T>(&self, req: &S3Request<T>) -> Result<request::RequestContext, ProxyError> {
        request::RequestContext::of(&self.tenants, &self.keys, req)
    }

    /// Size and time of a stored object, or `NoSuchKey` / `NoSuchBucket`. The bucket marker is
    /// only looked up when the object is missing: an object can only exist in an existing
    /// bucket (DeleteBucket refuses non-empty buckets), and skipping that lookup saves a
    /// backend call on every GET and HEAD.
    async fn stat_object(
        &self,
        paths: TenantPaths<'_>,
        bucket: &str,
        path: &str,
    ) -> Result<storage::Meta, ProxyError> {
        match timed("backend_io", self.storage.head(path)).await {
            Ok(meta) => Ok(meta),
            Err(storage::Error::NotFound) => {
                self.require_bucket(paths, bucket).await?;
                Err(ProxyError::NoSuchKey)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The object's size, time and first bytes in one backend call
    /// ([`storage::Storage::read_start`]), or `NoSuchKey` / `NoSuchBucket` as
    /// [`Proxy::stat_object`] answers.
    async fn read_start(
        &self,
        paths: TenantPaths<'_>,
        bucket: &str,
        path: &str,
        want: storage::ReadStart,
    ) -> Result<(storage::Meta, bytes::Bytes), ProxyError> {
        match timed("backend_io", self.storage.read_start(path, want)).await {
            Ok(read) => Ok(read),
            Err(storage::Error::NotFound) => {
                self.require_bucket(paths, bucket).await?;
                Err(ProxyError::NoSuchKey)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The bucket's marker, or `NoSuchBucket`.
    async fn require_bucket(
        &self,
        paths: TenantPaths<'_>,
        bucket: &str,
    ) -> Result<storage::Meta, ProxyError> {
        let marker = paths.bucket_marker(bucket);
        match timed("backend_io", self.storage.head(&marker)).await {
            Ok(meta) => Ok(meta),
            Err(storage::Error::NotFound) => Err(ProxyError::NoSuchBucket),
            Err(e) => Err(e.into()),
        }
    }
}

/// One S3 operation as its handler gets it: the service, the request's context (tenant,
/// request id) and the operation's input.
pub(crate) struct Op<'a, I>(
    /// The service.
    pub(crate) &'a Proxy,
    /// Who is asking, under which request id.
    pub(crate) request::RequestContext,
    /// The operation's input.
    pub(crate) I,
);

/// What a handler returns: the operation's output, or the error [`crate::proxy::error`] maps.
pub(crate) type Out<T> = Result<T, ProxyError>;

/// The response header naming the tenant key version of an object's header, on GET and HEAD
/// (public information: it is in the stored header). The rewrap driver reads it to find the
/// objects of an older version (docs/rewrap.md).
pub const KEY_VERSION_HEADER: &str = "x-treuhand-key-version";

/// A handler's output with response headers of treuhand's own beside the S3 ones.
pub(crate) struct WithHeaders<T>(pub(crate) T, pub(crate) http::HeaderMap);

impl<T> WithHeaders<T> {
    /// `output` with `x-treuhand-key-version: version`, or with no extra header.
    pub(crate) fn key_version(output: T, version: Option<u32>) -> Self {
        let mut headers = http::HeaderMap::new();
        if let Some(version) = version {
            headers.insert(KEY_VERSION_HEADER, http::HeaderValue::from(version));
        }
        Self(output, headers)
    }
}

/// What the `impl S3` methods make of a handler's output: a response, with the extra headers
/// of a [`WithHeaders`].
pub(crate) trait IntoResponse<T> {
    /// The response.
    fn into_response(self) -> S3Response<T>;
}

impl<T> IntoResponse<T> for T {
    fn into_response(self) -> S3Response<T> {
        S3Response::new(self)
    }
}

impl<T> IntoResponse<T> for WithHeaders<T> {
    fn into_response(self) -> S3Response<T> {
        let mut response = S3Response::new(self.0);
        response.headers = self.1;
        response
    }
}

/// The `impl S3` methods, one per operation, from a table: each names its input and output
/// types, the handler in its group's file, and the fields of its log span. Written out as
/// `async_trait` would expand them (a macro inside an `#[async_trait]` impl is not expanded
/// before the attribute runs).
macro_rules! operations {
    ($req:ident => $(
        $op:ident($input:ident -> $output:ident) = $handler:path { $($field:tt)* };
    )*) => {$(
        fn $op<'life0, 'async_trait>(
            &'life0 self,
            $req: S3Request<dto::$input>,
        ) -> Pin<Box<dyn Future<Output = S3Result<S3Response<dto::$output>>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            let span = tracing::info_span!(stringify!($op), $($field)*);
            Box::pin(
                async move {
                    // The error document names the request id the header carries, as S3's
                    // does (clients and support tickets quote it).
                    let id = $req.extensions.get::<RequestId>().map(|id| id.0.clone());
                    let with_id = |e: ProxyError| {
                        let mut s3 = s3s::S3Error::from(e);
                        if let Some(id) = &id {
                            s3.set_request_id(id.clone());
                        }
                        s3
                    };
                    let request = self.request(&$req).map_err(with_id)?;
                    let op = Op(self, request, $req.input);
                    let output = $handler(op).await.map_err(with_id)?;
                    Ok(IntoResponse::<dto::$output>::into_response(output))
                }
                .instrument(span),
            )
        }
    )*};
}

/// Each operation is handled in the file of its group; errors become S3 errors (and are
/// logged) in [`crate::proxy::error`].
impl S3 for Proxy {
    operations! { req =>
        list_buckets(ListBucketsInput -> ListBucketsOutput) = buckets::list_buckets {};
        create_bucket(CreateBucketInput -> CreateBucketOutput) = buckets::create_bucket {
            bucket = %req.input.bucket
        };
        head_bucket(HeadBucketInput -> HeadBucketOutput) = buckets::head_bucket {
            bucket = %req.input.bucket
        };
        get_bucket_location(GetBucketLocationInput -> GetBucketLocationOutput) = buckets::get_bucket_location { bucket = %req.input.bucket };
        delete_bucket(DeleteBucketInput -> DeleteBucketOutput) = buckets::delete_bucket {
            bucket = %req.input.bucket
        };
        put_object(PutObjectInput -> PutObjectOutput) = objects::put_object {
            bucket = %req.input.bucket, key = %req.input.key
        };
        get_object(GetObjectInput -> GetObjectOutput) = objects::get_object {
            bucket = %req.input.bucket, key = %req.input.key
        };
        head_object(HeadObjectInput -> HeadObjectOutput) = objects::head_object {
            bucket = %req.input.bucket, key = %req.input.key
        };
        delete_object(DeleteObjectInput -> DeleteObjectOutput) = objects::delete_object {
            bucket = %req.input.bucket, key = %req.input.key
        };
        delete_objects(DeleteObjectsInput -> DeleteObjectsOutput) = objects::delete_objects {
            bucket = %req.input.bucket
        };
        list_objects(ListObjectsInput -> ListObjectsOutput) = list::list_objects {
            bucket = %req.input.bucket
        };
        list_objects_v2(ListObjectsV2Input -> ListObjectsV2Output) = list::list_objects_v2 {
            bucket = %req.input.bucket
        };
        copy_object(CopyObjectInput -> CopyObjectOutput) = objects::copy_object {
            bucket = %req.input.bucket, key = %req.input.key
        };
        create_multipart_upload(CreateMultipartUploadInput -> CreateMultipartUploadOutput) = multipart::create_multipart_upload { bucket = %req.input.bucket, key = %req.input.key };
        upload_part(UploadPartInput -> UploadPartOutput) = multipart::upload_part {
            bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number
        };
        complete_multipart_upload(CompleteMultipartUploadInput -> CompleteMultipartUploadOutput) = multipart::complete_multipart_upload { bucket = %req.input.bucket, key = %req.input.key };
        abort_multipart_upload(AbortMultipartUploadInput -> AbortMultipartUploadOutput) = multipart::abort_multipart_upload { bucket = %req.input.bucket, key = %req.input.key };
        list_parts(ListPartsInput -> ListPartsOutput) = multipart::list_parts {
            bucket = %req.input.bucket, key = %req.input.key
        };
        upload_part_copy(UploadPartCopyInput -> UploadPartCopyOutput) = multipart::upload_part_copy {
            bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number
        };
        list_multipart_uploads(ListMultipartUploadsInput -> ListMultipartUploadsOutput) = multipart::list_multipart_uploads { bucket = %req.input.bucket };
        get_bucket_versioning(GetBucketVersioningInput -> GetBucketVersioningOutput) = buckets::get_bucket_versioning { bucket = %req.input.bucket };
        get_bucket_acl(GetBucketAclInput -> GetBucketAclOutput) = buckets::get_bucket_acl {
            bucket = %req.input.bucket
        };
        put_bucket_acl(PutBucketAclInput -> PutBucketAclOutput) = buckets::put_bucket_acl {
            bucket = %req.input.bucket
        };
        get_bucket_policy(GetBucketPolicyInput -> GetBucketPolicyOutput) = buckets::get_bucket_policy { bucket = %req.input.bucket };
        get_object_acl(GetObjectAclInput -> GetObjectAclOutput) = objects::get_object_acl {
            bucket = %req.input.bucket, key = %req.input.key
        };
        put_object_acl(PutObjectAclInput -> PutObjectAclOutput) = objects::put_object_acl {
            bucket = %req.input.bucket, key = %req.input.key
        };
    }
}
