//! The S3 operations: an `s3s::S3` implementation that encrypts on the way in and decrypts on
//! the way out.
//!
//! Layers, bottom up (a file imports only from files above it in this list):
//!
//! | file | job |
//! |---|---|
//! | [`paths`] | where a tenant's buckets, objects and uploads live in storage |
//! | [`metadata`] | object metadata between S3 headers and the sealed object header |
//! | [`conditions`] | If-Match and friends, byte ranges ([`conditions::ByteRange`]) |
//! | [`request`] | one request's context: tenant, request id, SSE-C key, echo headers, timers |
//! | [`pipeline`] | the encrypt and decrypt streams between bodies and storage |
//! | [`passthrough`] | the unencrypted benchmark baseline |
//! | [`buckets`], [`objects`], [`list`], [`multipart`] | the handlers, grouped as S3 groups them |
//! | this file | [`Proxy`], the `impl S3` that hands each operation to its group |
//!
//! Every response shows the plaintext view: Content-Length, ranges and listing sizes are
//! plaintext sizes.

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

use std::sync::Arc;

use s3s::dto;
use s3s::{S3, S3Request, S3Response, S3Result};

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
        request::RequestContext::of(&self.tenants, req)
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

/// Each operation is handled in the file of its group; errors become S3 errors (and are
/// logged) in [`crate::proxy::error`].
#[async_trait::async_trait]
impl S3 for Proxy {
    #[tracing::instrument(skip_all)]
    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        Ok(S3Response::new(self.handle_list_buckets(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        Ok(S3Response::new(self.handle_create_bucket(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        Ok(S3Response::new(self.handle_head_bucket(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        Ok(S3Response::new(self.handle_get_bucket_location(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        Ok(S3Response::new(self.handle_delete_bucket(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        Ok(S3Response::new(self.handle_put_object(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        Ok(S3Response::new(self.handle_get_object(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        Ok(S3Response::new(self.handle_head_object(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        Ok(S3Response::new(self.handle_delete_object(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        Ok(S3Response::new(self.handle_delete_objects(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        Ok(S3Response::new(self.handle_list_objects(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket))]
    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        Ok(S3Response::new(self.handle_list_objects_v2(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        Ok(S3Response::new(self.handle_copy_object(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        Ok(S3Response::new(
            self.handle_create_multipart_upload(req).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key, part = req.input.part_number))]
    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        Ok(S3Response::new(self.handle_upload_part(req).await?))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        Ok(S3Response::new(
            self.handle_complete_multipart_upload(req).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        Ok(S3Response::new(
            self.handle_abort_multipart_upload(req).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        Ok(S3Response::new(self.handle_list_parts(req).await?))
    }
}
