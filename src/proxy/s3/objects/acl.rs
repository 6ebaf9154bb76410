//! GetObjectAcl and PutObjectAcl: every treuhand object is private to its tenant.
//!
//! There is nothing to store: the only ACL an object can have is the canned `private` (the
//! owner, the tenant, has FULL_CONTROL). GetObjectAcl answers it; PutObjectAcl accepts it in
//! either form (the `x-amz-acl` header or an AccessControlPolicy body) and refuses any other
//! with 501 `NotImplemented`, saying what is not supported.

use s3s::dto;

use super::super::{Op, Out, acl};
use crate::proxy::error::ProxyError;

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
    let (owner, grants) = acl::private_acl(&request.tenant.id);
    Ok(dto::GetObjectAclOutput {
        grants: Some(grants),
        owner: Some(owner),
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
    acl::PutAcl {
        canned: input.acl.as_ref().map(|a| a.as_str()),
        policy: input.access_control_policy.as_ref(),
        grant_full_control: input.grant_full_control.as_deref(),
        other_grants: input.grant_read.is_some()
            || input.grant_read_acp.is_some()
            || input.grant_write.is_some()
            || input.grant_write_acp.is_some(),
    }
    .check_private(&request.tenant.id, "PutObjectAcl")?;
    let paths = request.paths();
    let path = paths.object(&input.bucket, &input.key);
    proxy.stat_object(paths, &input.bucket, &path).await?;
    Ok(dto::PutObjectAclOutput::default())
}
