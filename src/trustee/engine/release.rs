//! Share release: the authorization of the caller, the policy decision
//! ([`crate::trustee::policy::decide`]), opening the sealed share, and the chained (or
//! budgeted) denials.

use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Batch, Engine, Trustee, share_aad};
use crate::tls::PeerIdentity;
use crate::trustee::Error;
use crate::trustee::audit::AuditEvent;
use crate::trustee::policy::{Denial, Policy, RateBucket, authorize, decide};
use crate::trustee::wire::{Justification, ReleaseRequest, ReleaseResponse};

impl Trustee {
    /// Decides a release, logs it durably, and returns the share if allowed.
    ///
    /// # Errors
    /// [`Error::UnknownTenant`], [`Error::Shredded`], [`Error::Denied`],
    /// [`Error::AuditUnavailable`].
    pub async fn release(
        &self,
        caller: PeerIdentity,
        tenant: String,
        key_version: u32,
        request: ReleaseRequest,
    ) -> Result<ReleaseResponse, Error> {
        self.submit(move |engine, batch| {
            engine.release(batch, &caller, &tenant, key_version, request)
        })
        .await
    }
}

impl Engine {
    /// The release decision for an authorized caller ([`crate::trustee::policy::decide`]) against the
    /// tenant's policy, grants and token bucket.
    pub(super) fn decide(
        &mut self,
        tenant: &str,
        key_version: u32,
        justification: Justification,
        now: u64,
    ) -> Result<Option<String>, Denial> {
        let default_policy = Policy::default();
        let policy = self.policies.get(tenant).unwrap_or(&default_policy);
        let bucket = self
            .buckets
            .entry(tenant.to_owned())
            .or_insert_with(|| RateBucket::full(policy.rate_limit, now));
        let grants = self.grants.values().filter(|grant| grant.tenant == tenant);
        let grant = decide(policy, justification, key_version, grants, bucket, now)?;
        Ok(grant.map(|grant| grant.id.clone()))
    }

    pub(super) fn release(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        key_version: u32,
        request: ReleaseRequest,
    ) -> Result<ReleaseResponse, Error> {
        let Some(record) = self.keys.get(&(tenant.to_owned(), key_version)) else {
            // No chain exists for an unknown tenant, so this goes to the service log only,
            // within the same per-caller budget as other unchained refusals.
            if self
                .strangers
                .admit(&caller.to_string(), batch.now_ms)
                .is_some()
            {
                tracing::info!(tenant, key_version, caller = %caller, "release for an unknown tenant or key version");
            }
            return Err(Error::UnknownTenant);
        };
        let sealed = record.sealed.clone();
        let holder = record.holder.clone();
        let x = record.metadata.holder(&holder).map(|h| h.x);
        // Authorize before any entry exists: otherwise any certificate holder could append
        // denials, with free text of its choosing, to any tenant's chain.
        if let Err(denial) = authorize(self.policies.get(tenant), caller) {
            self.note_unauthorized(caller, tenant, key_version, &denial, batch.now_ms);
            return Err(Error::Denied(denial));
        }
        let mut entry = self.entry(
            batch,
            tenant,
            Some(key_version),
            caller.to_string(),
            AuditEvent::Release,
        );
        entry.justification = Some(request.justification);
        entry.request_id = Some(request.request_id);
        entry.reason = Some(request.reason.clone()).filter(|r| !r.is_empty());
        entry.object = request.object;
        let Some(sealed) = sealed else {
            self.append_denial(batch, entry, "shredded");
            return Err(Error::Shredded);
        };
        let x = x.ok_or_else(|| Error::Internal("enrolled holder missing from metadata".into()))?;
        match self.decide(tenant, key_version, request.justification, batch.now_ms) {
            Err(denial) => {
                self.append_denial(batch, entry, denial.code());
                Err(Error::Denied(denial))
            }
            Ok(grant) => {
                let share = self
                    .sealing
                    .open(&share_aad(tenant, key_version, x), &sealed)
                    .map_err(|_| {
                        tracing::error!(
                            tenant,
                            key_version,
                            "a stored share does not open with the sealing key"
                        );
                        Error::Internal(
                            "the stored share does not open with the configured sealing key".into(),
                        )
                    })?;
                let encoded = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(share.as_slice()),
                );
                entry.grant = grant;
                self.append(batch, entry);
                Ok(ReleaseResponse {
                    tenant: tenant.to_owned(),
                    key_version,
                    holder,
                    x,
                    share: encoded.to_string(),
                })
            }
        }
    }

    /// A release refused to a caller that may not ask: nothing goes into any chain. A service
    /// log line (within a per-caller budget, without the caller's free text) and a counter.
    pub(super) fn note_unauthorized(
        &mut self,
        caller: &PeerIdentity,
        tenant: &str,
        key_version: u32,
        denial: &Denial,
        now_ms: u64,
    ) {
        metrics::counter!("trustee_denials_not_chained_total", "why" => "not_authorized")
            .increment(1);
        if self.strangers.admit(&caller.to_string(), now_ms).is_some() {
            tracing::warn!(
                tenant,
                key_version,
                caller = %caller,
                reason = denial.code(),
                "release refused to a caller the tenant's policy does not allow; not chained"
            );
        }
    }
}
