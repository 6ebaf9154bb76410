//! GetObjectAcl and PutObjectAcl: every treuhand object is private to its tenant.
//!
//! There is nothing to store: the only ACL an object can have is the canned `private` (the
//! owner, the tenant, has FULL_CONTROL). GetObjectAcl answers it; PutObjectAcl accepts it in
//! either form (the `x-amz-acl` header or an AccessControlPolicy body) and refuses any other
//! with 501 `NotImplemented`, saying what is not supported.

use s3s::dto;

use super::super::{Op, Out};
use crate::proxy::error::ProxyError;

/// The owner of every object of `tenant`: the tenant id, as ListBuckets names it.
fn owner(tenant: &str) -> dto::Owner {
    dto::Owner {
        display_name: Some(tenant.to_owned()),
        id: Some(tenant.to_owned()),
    }
}

/// The owner's FULL_CONTROL grant, the whole of the canned ACL `private`.
fn owner_full_control(tenant: &str) -> dto::Grant {
    dto::Grant {
        grantee: Some(dto::Grantee {
            display_name: Some(tenant.to_owned()),
            email_address: None,
            id: Some(tenant.to_owned()),
            type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(dto::Permission::from_static(dto::Permission::FULL_CONTROL)),
    }
}

pub(crate) async fn get_object_acl(
    op: Op<'_, dto::GetObjectAclInput>,
) -> Out<dto::GetObjectAclOutput> {
    let Op(proxy, request, input) = op;
    if input.version_id.is_some() {
        return Err(ProxyError::NotImplemented(
            "versionId: treuhand buckets are never versioned",
        ));
    }
    let paths = request.paths();
    let path = paths.object(&input.bucket, &input.key);
    proxy.stat_object(paths, &input.bucket, &path).await?;
    let tenant = &request.tenant.id;
    Ok(dto::GetObjectAclOutput {
        grants: Some(vec![owner_full_control(tenant)]),
        owner: Some(owner(tenant)),
        ..Default::default()
    })
}

pub(crate) async fn put_object_acl(
    op: Op<'_, dto::PutObjectAclInput>,
) -> Out<dto::PutObjectAclOutput> {
    let Op(proxy, request, input) = op;
    if input.version_id.is_some() {
        return Err(ProxyError::NotImplemented(
            "versionId: treuhand buckets are never versioned",
        ));
    }
    check_private(&request.tenant.id, &input)?;
    let paths = request.paths();
    let path = paths.object(&input.bucket, &input.key);
    proxy.stat_object(paths, &input.bucket, &path).await?;
    Ok(dto::PutObjectAclOutput::default())
}

/// Accepts exactly the canned ACL `private`: `x-amz-acl: private`, or a policy whose every
/// grant is FULL_CONTROL for the owner (`tenant`).
fn check_private(tenant: &str, input: &dto::PutObjectAclInput) -> Result<(), ProxyError> {
    if input.grant_full_control.is_some()
        || input.grant_read.is_some()
        || input.grant_read_acp.is_some()
        || input.grant_write.is_some()
        || input.grant_write_acp.is_some()
    {
        return Err(ProxyError::NotImplemented(
            "x-amz-grant-* headers: objects only take the canned ACL private",
        ));
    }
    match (&input.acl, &input.access_control_policy) {
        (Some(_), Some(_)) => Err(ProxyError::InvalidRequest(
            "send either x-amz-acl or an AccessControlPolicy body, not both".into(),
        )),
        (Some(acl), None) if acl.as_str() == dto::ObjectCannedACL::PRIVATE => Ok(()),
        (Some(_), None) => Err(ProxyError::NotImplemented(
            "canned ACLs other than private: every object is private to its tenant",
        )),
        (None, Some(policy)) => check_policy(tenant, policy),
        (None, None) => Err(ProxyError::InvalidRequest(
            "PutObjectAcl needs x-amz-acl or an AccessControlPolicy body".into(),
        )),
    }
}

fn check_policy(tenant: &str, policy: &dto::AccessControlPolicy) -> Result<(), ProxyError> {
    if let Some(owner) = &policy.owner
        && owner.id.as_deref().is_some_and(|id| id != tenant)
    {
        return Err(ProxyError::NotImplemented(
            "an owner other than the tenant: objects belong to the tenant that wrote them",
        ));
    }
    let grants = policy.grants.as_deref().unwrap_or_default();
    let owner_only = |g: &dto::Grant| {
        let full = g
            .permission
            .as_ref()
            .is_some_and(|p| p.as_str() == dto::Permission::FULL_CONTROL);
        let to_owner = g.grantee.as_ref().is_some_and(|who| {
            who.type_.as_str() == dto::Type::CANONICAL_USER && who.id.as_deref() == Some(tenant)
        });
        full && to_owner
    };
    if grants.is_empty() || !grants.iter().all(owner_only) {
        return Err(ProxyError::NotImplemented(
            "grants other than the owner's FULL_CONTROL: only the canned ACL private is supported",
        ));
    }
    Ok(())
}
