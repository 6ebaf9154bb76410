//! Bucket operations: ListBuckets, CreateBucket, HeadBucket, GetBucketLocation, DeleteBucket,
//! and the answers SDKs ask for about a bucket: GetBucketVersioning (never enabled),
//! Get/PutBucketAcl (the canned ACL `private` only) and GetBucketPolicy (none).
//!
//! A bucket is an empty marker object (see [`super::paths`]); its objects live apart from it.

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto;

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
    let (owner, grants) = private_acl(&request.tenant.id);
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
    let owner = &request.tenant.id;
    let grant_headers = [
        &input.grant_read,
        &input.grant_read_acp,
        &input.grant_write,
        &input.grant_write_acp,
    ];
    if grant_headers.iter().any(|h| h.is_some()) {
        return Err(ProxyError::NotImplemented(GRANT_REFUSED));
    }
    let full_control = input.grant_full_control.as_deref();
    match (
        input.acl.as_ref().map(|a| a.as_str()),
        &input.access_control_policy,
        full_control,
    ) {
        (Some(canned), None, None) => canned_acl_is_private(canned),
        (None, Some(policy), None) => policy_is_private(policy, owner),
        (None, None, Some(grantees)) => grantees_are_owner(grantees, owner),
        (None, None, None) => Err(ProxyError::InvalidRequest(
            "PutBucketAcl needs x-amz-acl, an x-amz-grant-* header or an AccessControlPolicy body"
                .into(),
        )),
        // S3 refuses a request that sets the ACL in more than one way.
        _ => Err(ProxyError::InvalidRequest(
            "PutBucketAcl takes one of x-amz-acl, x-amz-grant-* headers or an AccessControlPolicy body"
                .into(),
        )),
    }?;
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

const GRANT_REFUSED: &str = "ACL grants other than FULL_CONTROL to the owner: a treuhand bucket \
     or object is private to its tenant, the only ACL supported is the canned ACL private";

/// The owner and grants of the canned ACL `private` for `tenant` (bucket and object ACLs
/// alike): the owner's id and display name are the tenant id, as in ListBuckets.
pub(crate) fn private_acl(tenant: &str) -> (dto::Owner, dto::Grants) {
    let owner = dto::Owner {
        display_name: Some(tenant.to_owned()),
        id: Some(tenant.to_owned()),
    };
    let grant = dto::Grant {
        grantee: Some(dto::Grantee {
            display_name: Some(tenant.to_owned()),
            email_address: None,
            id: Some(tenant.to_owned()),
            type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(dto::Permission::from_static(dto::Permission::FULL_CONTROL)),
    };
    (owner, vec![grant])
}

/// `Ok` for the canned ACL `private`, `NotImplemented` naming why for the others.
pub(crate) fn canned_acl_is_private(canned: &str) -> Result<(), ProxyError> {
    match canned {
        "private" => Ok(()),
        "public-read" | "public-read-write" => Err(ProxyError::NotImplemented(
            "canned ACL public-read/public-read-write: treuhand refuses anonymous requests, \
             the only ACL supported is the canned ACL private",
        )),
        "authenticated-read" => Err(ProxyError::NotImplemented(
            "canned ACL authenticated-read: a tenant's buckets and objects are reachable with \
             its own keys only, the only ACL supported is the canned ACL private",
        )),
        _ => Err(ProxyError::NotImplemented(
            "this canned ACL: the only ACL supported is the canned ACL private",
        )),
    }
}

/// `Ok` for an `AccessControlPolicy` that grants the owner `FULL_CONTROL` and nothing else
/// (what GetBucketAcl answers, so a client's read-modify-write of the ACL round-trips).
pub(crate) fn policy_is_private(
    policy: &dto::AccessControlPolicy,
    tenant: &str,
) -> Result<(), ProxyError> {
    if let Some(id) = policy.owner.as_ref().and_then(|o| o.id.as_deref())
        && id != tenant
    {
        return Err(ProxyError::NotImplemented(
            "an ACL owner other than the tenant: a treuhand bucket or object always belongs \
             to its tenant",
        ));
    }
    let grants = policy.grants.as_deref().unwrap_or_default();
    let only_owner = !grants.is_empty()
        && grants.iter().all(|grant| {
            let full_control = grant
                .permission
                .as_ref()
                .is_some_and(|p| p.as_str() == dto::Permission::FULL_CONTROL);
            let to_owner = grant.grantee.as_ref().is_some_and(|g| {
                g.type_.as_str() == dto::Type::CANONICAL_USER && g.id.as_deref() == Some(tenant)
            });
            full_control && to_owner
        });
    if only_owner {
        Ok(())
    } else {
        Err(ProxyError::NotImplemented(GRANT_REFUSED))
    }
}

/// `Ok` for an `x-amz-grant-full-control` value naming only the owner (`id="<tenant>"`,
/// comma-separated, quotes optional).
pub(crate) fn grantees_are_owner(grantees: &str, tenant: &str) -> Result<(), ProxyError> {
    let only_owner = grantees.split(',').all(|grantee| {
        grantee
            .trim()
            .strip_prefix("id=")
            .map(|id| id.trim_matches('"'))
            == Some(tenant)
    });
    if only_owner {
        Ok(())
    } else {
        Err(ProxyError::NotImplemented(GRANT_REFUSED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(grants: Vec<(&str, &str, &str)>) -> dto::AccessControlPolicy {
        dto::AccessControlPolicy {
            owner: None,
            grants: Some(
                grants
                    .into_iter()
                    .map(|(kind, id, permission)| dto::Grant {
                        grantee: Some(dto::Grantee {
                            display_name: None,
                            email_address: None,
                            id: Some(id.to_owned()),
                            type_: dto::Type::from(kind.to_owned()),
                            uri: None,
                        }),
                        permission: Some(dto::Permission::from(permission.to_owned())),
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn the_private_acl_round_trips_through_put() {
        let (owner, grants) = private_acl("demo");
        let acl = dto::AccessControlPolicy {
            owner: Some(owner),
            grants: Some(grants),
        };
        assert!(policy_is_private(&acl, "demo").is_ok());
        assert!(policy_is_private(&acl, "other").is_err());
    }

    #[test]
    fn only_full_control_to_the_owner_is_accepted() {
        let ok = policy(vec![("CanonicalUser", "demo", "FULL_CONTROL")]);
        assert!(policy_is_private(&ok, "demo").is_ok());
        for refused in [
            policy(vec![]),
            policy(vec![("CanonicalUser", "demo", "READ")]),
            policy(vec![("CanonicalUser", "other", "FULL_CONTROL")]),
            policy(vec![
                ("CanonicalUser", "demo", "FULL_CONTROL"),
                ("Group", "x", "READ"),
            ]),
        ] {
            assert!(matches!(
                policy_is_private(&refused, "demo"),
                Err(ProxyError::NotImplemented(_))
            ));
        }
    }

    #[test]
    fn only_the_canned_acl_private_is_accepted() {
        assert!(canned_acl_is_private("private").is_ok());
        for other in [
            "public-read",
            "public-read-write",
            "authenticated-read",
            "bucket-owner-read",
            "log-delivery-write",
        ] {
            assert!(matches!(
                canned_acl_is_private(other),
                Err(ProxyError::NotImplemented(_))
            ));
        }
    }

    #[test]
    fn grant_full_control_may_name_only_the_owner() {
        assert!(grantees_are_owner("id=\"demo\"", "demo").is_ok());
        assert!(grantees_are_owner("id=demo, id=\"demo\"", "demo").is_ok());
        assert!(grantees_are_owner("id=\"demo\", id=\"x\"", "demo").is_err());
        assert!(
            grantees_are_owner(
                "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
                "demo"
            )
            .is_err()
        );
    }
}
