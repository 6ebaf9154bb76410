//! Object operations: PutObject, GetObject, HeadObject, DeleteObject(s), CopyObject.

use std::time::SystemTime;

use bytes::Bytes;
use s3s::S3Request;
use s3s::dto::{self, StreamingBlob};

use super::Proxy;
use super::conditions::{ByteRange, Conditions, conditions};
use super::metadata::{ResponseMetadata, etag, request_metadata, timestamp};
use super::passthrough;
use super::pipeline::{self, Opened, body_stream, declared_len};
use super::request::{CustomerKey, RequestContext, customer_key, md5_hex};
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
    path: &'a str,
}

impl Proxy {
    /// The shared preamble of GetObject and HeadObject: release the key, open the object and
    /// apply the conditional headers.
    async fn open_for_read(
        &self,
        read: &Read<'_>,
        conditions: Conditions<'_>,
        (meta, read_ahead): (storage::Meta, u64),
    ) -> Result<Opened, ProxyError> {
        let object = (read.bucket, read.key);
        let kek = read
            .request
            .kek(&self.keys, read.customer, read.operation, object)
            .await?;
        let opened = pipeline::open(
            &self.storage,
            read.request,
            &kek,
            (read.bucket, read.key, read.path),
            meta,
            read_ahead,
        )
        .await?;
        conditions.check(&opened.etag, opened.meta.last_modified)?;
        Ok(opened)
    }

    pub(super) async fn handle_put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> Result<dto::PutObjectOutput, ProxyError> {
        let request = self.request(&req)?;
        let input = req.input;
        let customer = customer_key!(input)?;
        let paths = request.paths();
        self.require_bucket(paths, &input.bucket).await?;
        let path = paths.object(&input.bucket, &input.key);
        if self.passthrough {
            return passthrough::put(&self.storage, &path, body_stream(input.body)).await;
        }
        let metadata = request_metadata!(input)?;
        let object = (input.bucket.as_str(), input.key.as_str());
        let kek = request
            .kek(&self.keys, customer.as_ref(), "PutObject", object)
            .await?;
        let (cipher, header) = request.new_object(&kek, object, Layout::Single, &metadata)?;
        let declared = declared_len(input.body.as_ref());
        let body = body_stream(input.body);
        let len = pipeline::store_single(&self.storage, &path, (&cipher, &header), body, declared)
            .await?;
        tracing::info!(plaintext_len = len, "object stored");
        let echo = request.echo(customer.as_ref());
        Ok(dto::PutObjectOutput {
            e_tag: Some(etag(md5_hex(&header))),
            sse_customer_algorithm: echo.algorithm,
            sse_customer_key_md5: echo.key_md5,
            server_side_encryption: echo.server_side_encryption,
            ..Default::default()
        })
    }

    pub(super) async fn handle_get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> Result<dto::GetObjectOutput, ProxyError> {
        let request = self.request(&req)?;
        let input = req.input;
        let customer = customer_key!(input)?;
        let path = request.paths().object(&input.bucket, &input.key);
        // Existence first, so a missing key is a 404 without bothering the trustee.
        let meta = self
            .stat_object(request.paths(), &input.bucket, &path)
            .await?;
        if self.passthrough {
            return passthrough::get(&self.storage, path, &meta, input.range.as_ref());
        }
        let read = Read {
            request: &request,
            customer: customer.as_ref(),
            operation: "GetObject",
            bucket: &input.bucket,
            key: &input.key,
            path: &path,
        };
        let opened = self
            .open_for_read(&read, conditions!(input), (meta, READ_AHEAD))
            .await?;
        let bytes = ByteRange::resolve(input.range.as_ref(), opened.plaintext_len)?;
        // Small responses are decrypted completely before the status line goes out, so any
        // tampering is a clean 502. Larger ones stream; a bad segment then aborts the body.
        let etag_value = opened.etag.clone();
        let last_modified = opened.meta.last_modified;
        let stored = ResponseMetadata::of(opened.cipher.metadata());
        let range = bytes.range.clone();
        let body = if bytes.len() <= BUFFERED_GET_LIMIT {
            let plaintext =
                pipeline::decrypt_buffered(&self.storage, &path, &opened, range).await?;
            StreamingBlob::from(s3s::Body::from(Bytes::from(plaintext)))
        } else {
            pipeline::decrypt_stream(&self.storage, path.clone(), opened, range)
        };
        let echo = request.echo(customer.as_ref());
        Ok(dto::GetObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: bytes.content_length(),
            content_range: bytes.content_range(),
            content_type: Some(stored.content_type),
            cache_control: stored.cache_control,
            content_disposition: stored.content_disposition,
            content_encoding: stored.content_encoding,
            content_language: stored.content_language,
            metadata: stored.metadata,
            e_tag: Some(etag(etag_value)),
            last_modified: Some(timestamp(last_modified)),
            sse_customer_algorithm: echo.algorithm,
            sse_customer_key_md5: echo.key_md5,
            server_side_encryption: echo.server_side_encryption,
            body: Some(body),
            ..Default::default()
        })
    }

    pub(super) async fn handle_head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> Result<dto::HeadObjectOutput, ProxyError> {
        let request = self.request(&req)?;
        let input = req.input;
        let customer = customer_key!(input)?;
        let path = request.paths().object(&input.bucket, &input.key);
        let meta = self
            .stat_object(request.paths(), &input.bucket, &path)
            .await?;
        if self.passthrough {
            return Ok(passthrough::head(&meta));
        }
        let read = Read {
            request: &request,
            customer: customer.as_ref(),
            operation: "HeadObject",
            bucket: &input.bucket,
            key: &input.key,
            path: &path,
        };
        // HEAD needs the header only.
        let opened = self
            .open_for_read(&read, conditions!(input), (meta, 0))
            .await?;
        let bytes = ByteRange::resolve(input.range.as_ref(), opened.plaintext_len)?;
        let stored = ResponseMetadata::of(opened.cipher.metadata());
        let echo = request.echo(customer.as_ref());
        Ok(dto::HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: bytes.content_length(),
            content_range: bytes.content_range(),
            content_type: Some(stored.content_type),
            cache_control: stored.cache_control,
            content_disposition: stored.content_disposition,
            content_encoding: stored.content_encoding,
            content_language: stored.content_language,
            metadata: stored.metadata,
            e_tag: Some(etag(opened.etag)),
            last_modified: Some(timestamp(opened.meta.last_modified)),
            sse_customer_algorithm: echo.algorithm,
            sse_customer_key_md5: echo.key_md5,
            server_side_encryption: echo.server_side_encryption,
            ..Default::default()
        })
    }

    pub(super) async fn handle_delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> Result<dto::DeleteObjectOutput, ProxyError> {
        let request = self.request(&req)?;
        let (paths, input) = (request.paths(), &req.input);
        self.require_bucket(paths, &input.bucket).await?;
        self.storage
            .delete(&paths.object(&input.bucket, &input.key))
            .await?;
        Ok(dto::DeleteObjectOutput::default())
    }

    pub(super) async fn handle_delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> Result<dto::DeleteObjectsOutput, ProxyError> {
        let request = self.request(&req)?;
        let paths = request.paths();
        let input = req.input;
        self.require_bucket(paths, &input.bucket).await?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            match self
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

    pub(super) async fn handle_copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> Result<dto::CopyObjectOutput, ProxyError> {
        let request = self.request(&req)?;
        let paths = request.paths();
        let input = req.input;
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
        let src_meta = self.stat_object(paths, &src_bucket, &src_path).await?;
        self.require_bucket(paths, &input.bucket).await?;
        // Both sides belong to the same tenant key, so both shares must be the customer's
        // share; each is checked by the key service.
        let source = (src_bucket.as_str(), src_key.as_str());
        let dest = (input.bucket.as_str(), input.key.as_str());
        let src_kek = request
            .kek(
                &self.keys,
                src_customer.as_ref(),
                "CopyObject source",
                source,
            )
            .await?;
        let dest_kek = request
            .kek(&self.keys, dest_customer.as_ref(), "CopyObject", dest)
            .await?;
        let opened = pipeline::open(
            &self.storage,
            &request,
            &src_kek,
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
        let plaintext = pipeline::decrypt_stream(&self.storage, src_path, opened, 0..total);
        let (cipher, header) = request.new_object(&dest_kek, dest, Layout::Single, &metadata)?;
        let dest_path = paths.object(&input.bucket, &input.key);
        pipeline::store_single(
            &self.storage,
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
        let echo = request.echo(dest_customer.as_ref());
        Ok(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(etag(md5_hex(&header))),
                last_modified: Some(timestamp(SystemTime::now())),
                ..Default::default()
            }),
            sse_customer_algorithm: echo.algorithm,
            sse_customer_key_md5: echo.key_md5,
            server_side_encryption: echo.server_side_encryption,
            ..Default::default()
        })
    }
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
