//! Share release, and the gates every use of a share passes ([`Engine::admit`]): the
//! authorization of the caller, the policy decision ([`crate::trustee::policy::decide`]),
//! opening the sealed share, and the chained (or budgeted) denials. An OPRF tenant key is
//! never released: `/v1` release refuses it (`oprf_key_not_releasable`, chained).

use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Admitted, Batch, Engine, Gate, Trustee, share_aad};
use crate::crypto::shamir::KeyScheme;
use crate::tls::{PeerIdentity, Role};
use crate::trustee::Error;
use crate::trustee::audit::{AuditEntry, AuditEvent};
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
        let gate = Gate {
            caller,
            tenant,
            key_version,
            justification: request.justification,
            chain_refused_proxies: false,
        };
        // An OPRF share never leaves its holder: it is only evaluated per object (/v2).
        let admitted = self.admit(batch, &gate, entry, |_, scheme, _, _| match scheme {
            KeyScheme::ShamirTmk => Ok(()),
            KeyScheme::Oprf => Err(Error::Denied(Denial::OprfKeyNotReleasable)),
        })?;
        let encoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(admitted.share.as_slice()),
        );
        self.append(batch, admitted.entry);
        Ok(ReleaseResponse {
            tenant: tenant.to_owned(),
            key_version,
            holder: admitted.holder,
            x: admitted.x,
            share: encoded.to_string(),
        })
    }

    /// The gates every use of a share passes, release or evaluation, in this order: a known
    /// tenant key version; an authorized caller ([`authorize`]; a refused caller is not
    /// chained unless `chain_refused_proxies` and it is a proxy); not shredded; not handed
    /// over; `check` (the
    /// use's own conditions: the key's scheme, the customer's signature); the policy decision
    /// ([`Engine::decide`]). Every refusal after authorization is chained with `entry` (the
    /// use's event and the request's fields). On success the share is open and `entry`
    /// carries the grant; the caller appends it and answers only after the commit.
    pub(super) fn admit(
        &mut self,
        batch: &mut Batch,
        gate: &Gate<'_>,
        mut entry: AuditEntry,
        check: impl FnOnce(&Engine, KeyScheme, &mut AuditEntry, u64) -> Result<(), Error>,
    ) -> Result<Admitted, Error> {
        let Gate {
            caller,
            tenant,
            key_version,
            justification,
            chain_refused_proxies,
        } = *gate;
        let Some(record) = self.keys.get(&(tenant.to_owned(), key_version)) else {
            // No chain exists for an unknown tenant, so this goes to the service log only,
            // within the same per-caller budget as other unchained refusals.
            if self
                .strangers
                .admit(&caller.to_string(), batch.now_ms)
                .is_some()
            {
                tracing::info!(tenant, key_version, caller = %caller, "request for an unknown tenant or key version");
            }
            return Err(Error::UnknownTenant);
        };
        let sealed = record.sealed.clone();
        let handed_over = record.handed_over_ms.is_some();
        let holder = record.holder.clone();
        let scheme = record.metadata.scheme;
        let x = record.metadata.holder(&holder).map(|h| h.x);
        // Authorize before any entry is chained: otherwise any certificate holder could append
        // denials, with free text of its choosing, to any tenant's chain.
        if let Err(denial) = authorize(self.policies.get(tenant), caller) {
            if chain_refused_proxies && caller.role == Role::Proxy {
                // A per-object evaluation asked by a proxy the tenant does not allow is what
                // the customer wants to see; its free text stays out, and the caller's denial
                // budget bounds what it can add.
                entry.reason = None;
                self.append_denial(batch, entry, denial.code());
            } else {
                self.note_unauthorized(caller, tenant, key_version, &denial, batch.now_ms);
            }
            return Err(Error::Denied(denial));
        }
        let Some(sealed) = sealed else {
            self.append_denial(batch, entry, "shredded");
            return Err(Error::Shredded);
        };
        // Handed to the customer admin for a re-deal: the new holder serves the version now.
        if handed_over {
            self.append_denial(batch, entry, "handed_over");
            return Err(Error::HandedOver);
        }
        let x = x.ok_or_else(|| Error::Internal("enrolled holder missing from metadata".into()))?;
        if let Err(error) = check(self, scheme, &mut entry, batch.now_ms) {
            let outcome = match &error {
                Error::Denied(denial) => denial.code().to_owned(),
                Error::NotOprfKey => "not_an_oprf_key".to_owned(),
                _ => "refused".to_owned(),
            };
            self.append_denial(batch, entry, &outcome);
            return Err(error);
        }
        match self.decide(tenant, key_version, justification, batch.now_ms) {
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
                entry.grant = grant;
                Ok(Admitted {
                    share,
                    x,
                    holder,
                    entry,
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
