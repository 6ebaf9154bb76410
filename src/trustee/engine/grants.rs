//! Emergency grants: an operator files one, the tenant's customer admin approves or denies
//! it, and it expires by itself unless the customer admin revokes it first; releases under
//! `operator_maintenance` need a live (approved, unexpired) one.

use super::{Batch, Engine, Trustee, require_admin};
use crate::tls::{PeerIdentity, Role};
use crate::trustee::Error;
use crate::trustee::audit::AuditEvent;
use crate::trustee::policy::Denial;
use crate::trustee::store::Mutation;
use crate::trustee::wire::{
    Grant, GrantRequest, GrantState, MAX_REASON_BYTES, RevocationKind, validate_request_id,
};

/// A grant state's wire name, for messages.
fn state_name(state: GrantState) -> &'static str {
    match state {
        GrantState::Pending => "pending",
        GrantState::Approved => "approved",
        GrantState::Expired => "expired",
        GrantState::Denied => "denied",
        GrantState::Revoked => "revoked",
    }
}

impl Trustee {
    /// Files an emergency grant request (operator).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`], [`Error::Invalid`].
    pub async fn request_grant(
        &self,
        caller: PeerIdentity,
        tenant: String,
        request: GrantRequest,
    ) -> Result<Grant, Error> {
        self.submit(move |engine, batch| engine.request_grant(batch, &caller, &tenant, request))
            .await
    }

    /// Approves a pending grant (customer admin).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::NotFound`], [`Error::Conflict`].
    pub async fn approve_grant(
        &self,
        caller: PeerIdentity,
        tenant: String,
        grant_id: String,
    ) -> Result<Grant, Error> {
        self.submit(move |engine, batch| engine.approve_grant(batch, &caller, &tenant, &grant_id))
            .await
    }

    /// Denies a pending grant (customer admin).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::NotFound`], [`Error::Conflict`].
    pub async fn deny_grant(
        &self,
        caller: PeerIdentity,
        tenant: String,
        grant_id: String,
    ) -> Result<Grant, Error> {
        self.submit(move |engine, batch| {
            engine.end_grant(batch, &caller, &tenant, &grant_id, GrantState::Denied)
        })
        .await
    }

    /// Revokes an approved grant (customer admin): releases under it stop at once.
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::NotFound`], [`Error::Conflict`].
    pub async fn revoke_grant(
        &self,
        caller: PeerIdentity,
        tenant: String,
        grant_id: String,
    ) -> Result<Grant, Error> {
        self.submit(move |engine, batch| {
            engine.end_grant(batch, &caller, &tenant, &grant_id, GrantState::Revoked)
        })
        .await
    }

    /// Lists a tenant's grants (customer admin or operator).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`].
    pub async fn grants(&self, caller: PeerIdentity, tenant: String) -> Result<Vec<Grant>, Error> {
        self.submit(move |engine, _| {
            if caller.role != Role::Operator {
                require_admin(&caller, &tenant)?;
            }
            engine.require_tenant(&tenant)?;
            let mut grants: Vec<Grant> = engine
                .grants
                .values()
                .filter(|g| g.tenant == tenant)
                .cloned()
                .collect();
            grants.sort_by_key(|g| g.requested_ms);
            Ok(grants)
        })
        .await
    }
}

impl Engine {
    pub(super) fn request_grant(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        request: GrantRequest,
    ) -> Result<Grant, Error> {
        if caller.role != Role::Operator {
            return Err(Error::Denied(Denial::WrongRole));
        }
        self.require_tenant(tenant)?;
        validate_request_id(&request.ticket)
            .map_err(|e| Error::Invalid(e.replace("request_id", "ticket")))?;
        if request.duration_secs == 0 || request.duration_secs > self.options.max_grant_secs {
            return Err(Error::Invalid(format!(
                "duration_secs must be 1..={} (the configured max_grant_secs)",
                self.options.max_grant_secs
            )));
        }
        if request.reason.len() > MAX_REASON_BYTES {
            return Err(Error::Invalid("reason must be at most 1024 bytes".into()));
        }
        let mut id_bytes = [0u8; 8];
        crate::crypto::envelope::fill_random(&mut id_bytes)?;
        let grant = Grant {
            id: format!("g-{}", hex::encode(id_bytes)),
            tenant: tenant.to_owned(),
            ticket: request.ticket,
            scope: request.scope,
            duration_secs: request.duration_secs,
            reason: request.reason,
            requested_by: caller.to_string(),
            requested_ms: batch.now_ms,
            state: GrantState::Pending,
            approved_by: None,
            approved_ms: None,
            expires_ms: None,
        };
        batch.mutations.push(Mutation::PutGrant(grant.clone()));
        self.grants.insert(grant.id.clone(), grant.clone());
        let mut entry = self.entry(
            batch,
            tenant,
            grant.scope.key_version,
            caller.to_string(),
            AuditEvent::GrantRequested,
        );
        entry.grant = Some(grant.id.clone());
        entry.reason = Some(grant.reason.clone()).filter(|r| !r.is_empty());
        entry.detail = Some(format!(
            "ticket={} duration_secs={}",
            grant.ticket, grant.duration_secs
        ));
        self.append(batch, entry);
        Ok(grant)
    }

    pub(super) fn approve_grant(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        grant_id: &str,
    ) -> Result<Grant, Error> {
        require_admin(caller, tenant)?;
        let now = batch.now_ms;
        let grant = match self.grants.get_mut(grant_id) {
            Some(grant) if grant.tenant == tenant => grant,
            _ => {
                return Err(Error::NotFound(format!(
                    "no grant {grant_id:?} for tenant {tenant:?}"
                )));
            }
        };
        if grant.state != GrantState::Pending {
            return Err(Error::Conflict(format!(
                "grant {grant_id} is {}; only a pending grant can be approved",
                state_name(grant.state)
            )));
        }
        grant.state = GrantState::Approved;
        grant.approved_by = Some(caller.to_string());
        grant.approved_ms = Some(now);
        grant.expires_ms = Some(now.saturating_add(grant.duration_secs.saturating_mul(1000)));
        let grant = grant.clone();
        batch.mutations.push(Mutation::PutGrant(grant.clone()));
        let mut entry = self.entry(
            batch,
            tenant,
            grant.scope.key_version,
            caller.to_string(),
            AuditEvent::GrantApproved,
        );
        entry.grant = Some(grant.id.clone());
        entry.detail = Some(format!(
            "ticket={} expires_ms={}",
            grant.ticket,
            grant.expires_ms.unwrap_or(0)
        ));
        self.append(batch, entry);
        Ok(grant)
    }

    /// Ends a grant at the customer admin's word: `Denied` from pending, `Revoked` from
    /// approved. A revoked grant ends now: its `expires_ms` becomes the revocation time, and
    /// [`crate::trustee::policy::grant_covers`] no longer admits anything under it.
    pub(super) fn end_grant(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        grant_id: &str,
        to: GrantState,
    ) -> Result<Grant, Error> {
        require_admin(caller, tenant)?;
        let now = batch.now_ms;
        let grant = match self.grants.get_mut(grant_id) {
            Some(grant) if grant.tenant == tenant => grant,
            _ => {
                return Err(Error::NotFound(format!(
                    "no grant {grant_id:?} for tenant {tenant:?}"
                )));
            }
        };
        let (from, event, verb) = match to {
            GrantState::Denied => (GrantState::Pending, AuditEvent::GrantDenied, "denied"),
            _ => (GrantState::Approved, AuditEvent::GrantRevoked, "revoked"),
        };
        if grant.state != from {
            let hint = match (to, grant.state) {
                (GrantState::Denied, GrantState::Approved) => "; revoke an approved grant instead",
                (GrantState::Revoked, GrantState::Pending) => "; deny a pending grant instead",
                _ => "; it has already ended",
            };
            return Err(Error::Conflict(format!(
                "grant {grant_id} is {}; only a{} {} grant can be {verb}{hint}",
                state_name(grant.state),
                if from == GrantState::Approved {
                    "n"
                } else {
                    ""
                },
                state_name(from),
            )));
        }
        grant.state = to;
        if to == GrantState::Revoked {
            grant.expires_ms = Some(grant.expires_ms.map_or(now, |e| e.min(now)));
        }
        let grant = grant.clone();
        batch.mutations.push(Mutation::PutGrant(grant.clone()));
        let mut entry = self.entry(
            batch,
            tenant,
            grant.scope.key_version,
            caller.to_string(),
            event,
        );
        entry.grant = Some(grant.id.clone());
        entry.detail = Some(format!("ticket={}", grant.ticket));
        self.append(batch, entry);
        self.revoke(
            batch,
            tenant,
            grant.scope.key_version,
            RevocationKind::Grant,
            &[],
        );
        Ok(grant)
    }

    pub(super) fn expire_grants(&mut self, batch: &mut Batch) {
        let now = batch.now_ms;
        let expired: Vec<String> = self
            .grants
            .values()
            .filter(|g| g.state == GrantState::Approved && g.expires_ms.is_some_and(|e| now >= e))
            .map(|g| g.id.clone())
            .collect();
        for id in expired {
            let Some(grant) = self.grants.get_mut(&id) else {
                continue;
            };
            grant.state = GrantState::Expired;
            let grant = grant.clone();
            batch.mutations.push(Mutation::PutGrant(grant.clone()));
            let mut entry = self.entry(
                batch,
                &grant.tenant,
                grant.scope.key_version,
                "trustee".into(),
                AuditEvent::GrantExpired,
            );
            entry.grant = Some(grant.id.clone());
            entry.detail = Some(format!("ticket={}", grant.ticket));
            self.append(batch, entry);
        }
    }
}
