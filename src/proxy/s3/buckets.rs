//! Bucket operations: ListBuckets, CreateBucket, HeadBucket, GetBucketLocation, DeleteBucket.
//!
//! A bucket is an empty marker object (see [`super::paths`]); its objects live apart from it.

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto;

use super::Proxy;
use super::metadata::timestamp;
use super::request::RequestContext;
use crate::proxy::error::ProxyError;

impl Proxy {
    pub(super) async fn handle_list_buckets(
        &self,
        request: RequestContext,
        _input: dto::ListBucketsInput,
    ) -> Result<dto::ListBucketsOutput, ProxyError> {
        let prefix = request.paths().buckets_dir();
        let mut stream = self.storage.list(&prefix);
        let mut buckets = Vec::new();
        while let Some(item) = stream.next().await {
            let (path, meta) = item?;
            if let Some(name) = path.strip_prefix(&prefix).and_then(|p| p.strip_prefix('/')) {
                buckets.push(dto::Bucket {
                    name: Some(name.to_owned()),
                    creation_date: Some(timestamp(meta.last_modified)),
                    bucket_region: None,
                });
            }
        }
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        let tenant = &request.tenant.id;
        Ok(dto::ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(dto::Owner {
                display_name: Some(tenant.clone()),
                id: Some(tenant.clone()),
            }),
            ..Default::default()
        })
    }

    pub(super) async fn handle_create_bucket(
        &self,
        request: RequestContext,
        input: dto::CreateBucketInput,
    ) -> Result<dto::CreateBucketOutput, ProxyError> {
        let bucket = &input.bucket;
        match self.require_bucket(request.paths(), bucket).await {
            Ok(_) => return Err(ProxyError::BucketExists),
            Err(ProxyError::NoSuchBucket) => {}
            Err(e) => return Err(e),
        }
        let marker = request.paths().bucket_marker(bucket);
        self.storage.put(&marker, Bytes::new()).await?;
        Ok(dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        })
    }

    pub(super) async fn handle_head_bucket(
        &self,
        request: RequestContext,
        input: dto::HeadBucketInput,
    ) -> Result<dto::HeadBucketOutput, ProxyError> {
        self.require_bucket(request.paths(), &input.bucket).await?;
        Ok(dto::HeadBucketOutput::default())
    }

    pub(super) async fn handle_get_bucket_location(
        &self,
        request: RequestContext,
        input: dto::GetBucketLocationInput,
    ) -> Result<dto::GetBucketLocationOutput, ProxyError> {
        self.require_bucket(request.paths(), &input.bucket).await?;
        // An empty location constraint means us-east-1, which is what clients sign with by
        // default; the proxy accepts any region in signatures.
        Ok(dto::GetBucketLocationOutput {
            location_constraint: None,
        })
    }

    pub(super) async fn handle_delete_bucket(
        &self,
        request: RequestContext,
        input: dto::DeleteBucketInput,
    ) -> Result<dto::DeleteBucketOutput, ProxyError> {
        let (paths, bucket) = (request.paths(), &input.bucket);
        self.require_bucket(paths, bucket).await?;
        let mut objects = self.storage.list(&paths.objects_dir(bucket));
        if objects.next().await.is_some() {
            return Err(ProxyError::BucketNotEmpty);
        }
        self.storage.delete(&paths.bucket_marker(bucket)).await?;
        Ok(dto::DeleteBucketOutput::default())
    }
}
