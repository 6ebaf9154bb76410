//! Bucket operations: ListBuckets, CreateBucket, HeadBucket, GetBucketLocation, DeleteBucket,
//! and the answers SDKs ask for about a bucket: GetBucketVersioning (never enabled),
//! Get/PutBucketAcl (the canned ACL `private` only) and GetBucketPolicy (none).
//!
//! A bucket is an empty marker object (see [`super::paths`]); its objects live apart from it.

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto;

use super::acl;
use super::metadata::timestamp;
use super::{Op, Out};
use crate::proxy::error::ProxyError;

pub(super) async fn list_buckets(op: Op<'_, dto::ListBucketsInput>) -> Out<dto::ListBucketsOutput> {
    let Op(proxy, request, _) = op;
    let prefix = request.paths().buckets_dir();
    let mut stream = proxy.storage.list(&prefix);
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

pub(super) async fn create_bucket(
    op: Op<'_, dto::CreateBucketInput>,
) -> Out<dto::CreateBucketOutput> {
    let Op(proxy, request, input) = op;
    let bucket = &input.bucket;
    match proxy.require_bucket(request.paths(), bucket).await {
        Ok(_) => return Err(ProxyError::BucketExists),
        Err(ProxyError::NoSuchBucket) => {}
        Err(e) => return Err(e),
    }
    let marker = request.paths().bucket_marker(bucket);
    proxy.storage.put(&marker, Bytes::new()).await?;
    Ok(dto::CreateBucketOutput {
        location: Some(format!("/{bucket}")),
    })
}

pub(super) async fn head_bucket(op: Op<'_, dto::HeadBucketInput>) -> Out<dto::HeadBucketOutput> {
    let Op(proxy, request, input) = op;
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    Ok(dto::HeadBucketOutput::default())
}

pub(super) async fn get_bucket_location(
    op: Op<'_, dto::GetBucketLocationInput>,
) -> Out<dto::GetBucketLocationOutput> {
    let Op(proxy, request, input) = op;
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    // An empty location constraint means us-east-1, which is what clients sign with by
    // default; the proxy accepts any region in signatures.
    Ok(dto::GetBucketLocationOutput {
        location_constraint: None,
    })
}

pub(super) async fn delete_bucket(
    op: Op<'_, dto::DeleteBucketInput>,
) -> Out<dto::DeleteBucketOutput> {
    let Op(proxy, request, input) = op;
    let (paths, bucket) = (request.paths(), &input.bucket);
    proxy.require_bucket(paths, bucket).await?;
    let mut objects = proxy.storage.list(&paths.objects_dir(bucket));
    if objects.next().await.is_some() {
        return Err(ProxyError::BucketNotEmpty);
    }
    proxy.storage.delete(&paths.bucket_marker(bucket)).await?;
    Ok(dto::DeleteBucketOutput::default())
}

/// Versioning is never enabled on a treuhand bucket: the empty `VersioningConfiguration` S3
/// answers for a bucket whose versioning was never turned on (neither `Status` nor
/// `MfaDelete`).
pub(super) async fn get_bucket_versioning(
    op: Op<'_, dto::GetBucketVersioningInput>,
) -> Out<dto::GetBucketVersioningOutput> {
    let Op(proxy, request, input) = op;
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    Ok(dto::GetBucketVersioningOutput::default())
}

/// The ACL of every bucket: the canned ACL `private`, the tenant (as ListBuckets names it)
/// with `FULL_CONTROL` and nobody else. A tenant's buckets are reachable with its own keys
/// only, so no other grant could be honoured.
pub(super) async fn get_bucket_acl(
    op: Op<'_, dto::GetBucketAclInput>,
) -> Out<dto::GetBucketAclOutput> {
    let Op(proxy, request, input) = op;
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    let (owner, grants) = acl::private_acl(&request.tenant.id);
    Ok(dto::GetBucketAclOutput {
        owner: Some(owner),
        grants: Some(grants),
    })
}

/// Accepts what leaves the bucket `private` (the only ACL it has): `x-amz-acl: private`, an
/// `AccessControlPolicy` granting only the owner `FULL_CONTROL`, or `x-amz-grant-full-control`
/// naming only the owner. Anything else is refused as `NotImplemented`, with the reason.
pub(super) async fn put_bucket_acl(
    op: Op<'_, dto::PutBucketAclInput>,
) -> Out<dto::PutBucketAclOutput> {
    let Op(proxy, request, input) = op;
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    acl::PutAcl {
        canned: input.acl.as_ref().map(|a| a.as_str()),
        policy: input.access_control_policy.as_ref(),
        grant_full_control: input.grant_full_control.as_deref(),
        other_grants: input.grant_read.is_some()
            || input.grant_read_acp.is_some()
            || input.grant_write.is_some()
            || input.grant_write_acp.is_some(),
    }
    .check_private(&request.tenant.id, "PutBucketAcl")?;
    Ok(dto::PutBucketAclOutput::default())
}

/// A bucket has no policy (treuhand keeps none): `NoSuchBucketPolicy`, as S3 answers for a
/// bucket without one.
pub(super) async fn get_bucket_policy(
    op: Op<'_, dto::GetBucketPolicyInput>,
) -> Out<dto::GetBucketPolicyOutput> {
    let Op(proxy, request, input) = op;
    proxy.require_bucket(request.paths(), &input.bucket).await?;
    Err(ProxyError::NoSuchBucketPolicy)
}
