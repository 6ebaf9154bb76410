//! ACLs: every treuhand bucket and object has the canned ACL `private` and no other.
//!
//! A tenant's buckets and objects are reachable with its own keys only (anonymous requests are
//! refused), so no other grant could be honoured. Get*Acl answers `private`; Put*Acl accepts
//! what leaves it `private` (`x-amz-acl: private`, a policy granting only the owner
//! FULL_CONTROL, `x-amz-grant-full-control` naming only the owner) and refuses anything else
//! with 501 `NotImplemented`, saying why. Pure: no I/O.

use s3s::dto;

use crate::proxy::error::ProxyError;

/// The ACL a PutBucketAcl or PutObjectAcl request asks for, in the forms S3 accepts.
pub(crate) struct PutAcl<'a> {
    /// `x-amz-acl`.
    pub(crate) canned: Option<&'a str>,
    /// The AccessControlPolicy body.
    pub(crate) policy: Option<&'a dto::AccessControlPolicy>,
    /// `x-amz-grant-full-control`.
    pub(crate) grant_full_control: Option<&'a str>,
    /// Any of `x-amz-grant-read`, `-read-acp`, `-write`, `-write-acp`.
    pub(crate) other_grants: bool,
}

impl PutAcl<'_> {
    /// `Ok` when the request leaves the ACL `private` for `tenant`; `operation` names the
    /// request in the messages.
    pub(crate) fn check_private(&self, tenant: &str, operation: &str) -> Result<(), ProxyError> {
        if self.other_grants {
            return Err(ProxyError::NotImplemented(GRANT_REFUSED));
        }
        match (self.canned, self.policy, self.grant_full_control) {
            (Some(canned), None, None) => canned_acl_is_private(canned),
            (None, Some(policy), None) => policy_is_private(policy, tenant),
            (None, None, Some(grantees)) => grantees_are_owner(grantees, tenant),
            (None, None, None) => Err(ProxyError::InvalidRequest(format!(
                "{operation} needs x-amz-acl, an x-amz-grant-* header or an AccessControlPolicy body"
            ))),
            // S3 refuses a request that sets the ACL in more than one way.
            _ => Err(ProxyError::InvalidRequest(format!(
                "{operation} takes one of x-amz-acl, x-amz-grant-* headers or an AccessControlPolicy body"
            ))),
        }
    }
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
