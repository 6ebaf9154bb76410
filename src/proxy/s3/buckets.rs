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

/// ListBuckets, with S3's paging: `prefix`, `max-buckets` (1 to 10,000; all when absent) and
/// `continuation-token`, which is the name of the last bucket of the previous page (bucket
/// names are the tenant's own, so the token hides nothing from it).
pub(super) async fn list_buckets(op: Op<'_, dto::ListBucketsInput>) -> Out<dto::ListBucketsOutput> {
    let Op(proxy, request, input) = op;
    let max = match input.max_buckets {
        None => usize::MAX,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                ProxyError::InvalidArgument("max-buckets must be between 1 and 10000".into())
            })?,
    };
    let prefix = request.paths().buckets_dir();
    let mut stream = proxy.storage.list(&prefix);
    let mut buckets = Vec::new();
    while let Some(item) = stream.next().await {
        let (path, meta) = item?;
        let Some(name) = path.strip_prefix(&prefix).and_then(|p| p.strip_prefix('/')) else {
            continue;
        };
        let wanted = input.prefix.as_deref().is_none_or(|p| name.starts_with(p))
            && input
                .continuation_token
                .as_deref()
                .is_none_or(|after| name > after);
        if wanted {
            buckets.push(dto::Bucket {
                name: Some(name.to_owned()),
                creation_date: Some(timestamp(meta.last_modified)),
                bucket_region: None,
            });
        }
    }
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    let continuation_token = if buckets.len() > max {
        buckets.truncate(max);
        buckets.last().and_then(|b| b.name.clone())
    } else {
        None
    };
    let (owner, _) = acl::private_acl(&request.tenant.id);
    Ok(dto::ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(owner),
        continuation_token,
        prefix: input.prefix,
    })
}

/// Whether S3 refuses `name` as a bucket name beyond what s3s checks (length, characters,
/// `..`, IP addresses): a dot next to a dash is not a valid DNS label boundary.
fn dns_incompatible(name: &str) -> bool {
    name.contains(".-") || name.contains("-.")
}

pub(super) async fn create_bucket(
    op: Op<'_, dto::CreateBucketInput>,
) -> Out<dto::CreateBucketOutput> {
    let Op(proxy, request, input) = op;
    let bucket = &input.bucket;
    if dns_incompatible(bucket) {
        return Err(ProxyError::InvalidBucketName(
            "a bucket name may not have a dot next to a dash",
        ));
    }
    let location = Some(format!("/{bucket}"));
    match proxy.require_bucket(request.paths(), bucket).await {
        // The proxy answers us-east-1 as every bucket's region, and there S3 answers a
        // re-create of one's own bucket with 200 (BucketAlreadyOwnedByYou is for the other
        // regions). Nothing is changed: there is no ACL to reset.
        Ok(_) => return Ok(dto::CreateBucketOutput { location }),
        Err(ProxyError::NoSuchBucket) => {}
        Err(e) => return Err(e),
    }
    let marker = request.paths().bucket_marker(bucket);
    proxy.storage.put(&marker, Bytes::new()).await?;
    Ok(dto::CreateBucketOutput { location })
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
