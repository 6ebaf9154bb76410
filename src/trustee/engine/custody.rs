//! Custody of shares: deposit (enrollment, with an optional first policy and, for a strict
//! tenant, the S3 credential this holder checks signatures with), the tenant's policy, and
//! shredding with a signed receipt.

use zeroize::Zeroizing;

use super::{Batch, Engine, Trustee, credential_aad, require_admin, share_aad};
use crate::crypto::scheme;
use crate::crypto::shamir::{self, KeyScheme, ShareEnvelope};
use crate::tls::PeerIdentity;
use crate::trustee::Error;
use crate::trustee::audit::{AuditEvent, sign_receipt};
use crate::trustee::store::{KeyRecord, Mutation};
use crate::trustee::wire::{
    EnrollRequest, EnrollResponse, Policy, RevocationKind, ShredReceipt, ShredRequest,
    validate_request_id,
};

impl Trustee {
    /// Enrolls a share (customer admin of `tenant`).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::Invalid`], [`Error::Conflict`], [`Error::AuditUnavailable`].
    pub async fn enroll(
        &self,
        caller: PeerIdentity,
        tenant: String,
        request: EnrollRequest,
    ) -> Result<EnrollResponse, Error> {
        self.submit(move |engine, batch| engine.enroll(batch, &caller, &tenant, &request))
            .await
    }

    /// Sets a tenant's policy (customer admin).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`], [`Error::Invalid`].
    pub async fn set_policy(
        &self,
        caller: PeerIdentity,
        tenant: String,
        policy: Policy,
    ) -> Result<Policy, Error> {
        self.submit(move |engine, batch| engine.set_policy(batch, &caller, &tenant, policy))
            .await
    }

    /// Reads a tenant's policy (customer admin).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`].
    pub async fn policy(&self, caller: PeerIdentity, tenant: String) -> Result<Policy, Error> {
        self.submit(move |engine, _| {
            require_admin(&caller, &tenant)?;
            engine.require_tenant(&tenant)?;
            Ok(engine.policies.get(&tenant).cloned().unwrap_or_default())
        })
        .await
    }

    /// Shreds a tenant's share for one key version and returns the signed receipt.
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`], [`Error::Shredded`] if already shredded.
    pub async fn shred(
        &self,
        caller: PeerIdentity,
        tenant: String,
        key_version: u32,
        request: ShredRequest,
    ) -> Result<ShredReceipt, Error> {
        self.submit(move |engine, batch| {
            engine.shred(batch, &caller, &tenant, key_version, &request)
        })
        .await
    }
}

impl Engine {
    pub(super) fn enroll(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        request: &EnrollRequest,
    ) -> Result<EnrollResponse, Error> {
        require_admin(caller, tenant)?;
        let metadata = &request.metadata;
        metadata
            .validate()
            .map_err(|e| Error::Invalid(format!("metadata: {e}")))?;
        if metadata.tenant != tenant {
            return Err(Error::Invalid(format!(
                "metadata.tenant is {:?} but the URL names {tenant:?}",
                metadata.tenant
            )));
        }
        let holder = metadata
            .holder(&request.holder)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "holder {:?} is not listed in metadata.holders",
                    request.holder
                ))
            })?
            .clone();
        let envelope = ShareEnvelope::parse(&request.share)
            .map_err(|e| Error::Invalid(format!("share: {e}")))?;
        let key_id = metadata
            .key_id()
            .map_err(|e| Error::Invalid(format!("metadata: {e}")))?;
        if envelope.key != key_id {
            return Err(Error::Invalid(format!(
                "the share belongs to tenant {:?} key version {}, not to tenant {:?} key version {}",
                envelope.key.tenant, envelope.key.version, key_id.tenant, key_id.version
            )));
        }
        if envelope.share.x() != holder.x {
            return Err(Error::Invalid(format!(
                "the share has x = {}, but holder {:?} is registered with x = {}",
                envelope.share.x(),
                holder.name,
                holder.x
            )));
        }
        // A legacy share is checked against its fingerprint, an OPRF share against the
        // holder's registered K_i; either way a wrong share is refused naming the holder.
        match metadata.scheme {
            KeyScheme::ShamirTmk => shamir::check_share(metadata, &envelope.share)
                .map_err(|e| Error::Invalid(format!("share: {e}")))?,
            KeyScheme::Oprf => {
                scheme::key_share(metadata, &envelope.share)
                    .map_err(|e| Error::Invalid(format!("share: {e}")))?;
            }
        }
        if let Some(credential) = &request.sigv4 {
            if !metadata.strict {
                return Err(Error::Invalid(
                    "sigv4 is deposited only for strict tenants (metadata.strict); a standard tenant's S3 secret stays with the proxy".into(),
                ));
            }
            credential.validate().map_err(Error::Invalid)?;
        }
        if let Some(policy) = &request.policy {
            policy
                .validate()
                .map_err(|e| Error::Invalid(format!("policy: {e}")))?;
        }
        let slot = (tenant.to_owned(), metadata.key_version);
        if self.keys.contains_key(&slot) {
            return Err(Error::Conflict(format!(
                "tenant {tenant:?} key version {} is already enrolled here; enroll a new key version instead",
                metadata.key_version
            )));
        }
        let sealed = self.sealing.seal(
            &share_aad(tenant, metadata.key_version, holder.x),
            envelope.share.expose_secret(),
        )?;
        let record = KeyRecord {
            tenant: tenant.to_owned(),
            key_version: metadata.key_version,
            holder: holder.name.clone(),
            metadata: metadata.clone(),
            sealed: Some(sealed),
            shredded_ms: None,
            deposited_ms: batch.now_ms,
            handed_over_ms: None,
        };
        // The S3 credential is sealed as the shares are, under its own associated data.
        let sealed_credential = match &request.sigv4 {
            Some(credential) => {
                let json =
                    Zeroizing::new(serde_json::to_vec(credential).map_err(|e| {
                        Error::Internal(format!("cannot encode the credential: {e}"))
                    })?);
                Some(self.sealing.seal(&credential_aad(tenant), &json)?)
            }
            None => None,
        };
        batch.mutations.push(Mutation::InsertKey(record.clone()));
        self.keys.insert(slot, record);
        if let Some(sealed) = sealed_credential {
            batch.mutations.push(Mutation::PutCredential {
                tenant: tenant.to_owned(),
                sealed: sealed.clone(),
            });
            self.credentials.insert(tenant.to_owned(), sealed);
        }
        let checks_signatures = self.credentials.contains_key(tenant);
        let mut entry = self.entry(
            batch,
            tenant,
            Some(metadata.key_version),
            caller.to_string(),
            AuditEvent::Deposit,
        );
        let (scheme_name, share_key) = match metadata.scheme {
            KeyScheme::ShamirTmk => (
                "shamir-tmk-v1",
                format!("fingerprint={}", holder.fingerprint),
            ),
            KeyScheme::Oprf => (
                "oprf-ristretto255-v1",
                format!("public_key={}", holder.public_key),
            ),
        };
        let signatures = match &request.sigv4 {
            Some(credential) => format!(
                "checks_signatures=true access_key_id={}",
                credential.access_key_id
            ),
            None => format!("checks_signatures={checks_signatures}"),
        };
        entry.detail = Some(format!(
            "holder={} x={} {share_key} threshold={}-of-{} scheme={scheme_name} strict={} allow_trustees_alone={} {signatures}",
            holder.name,
            holder.x,
            metadata.threshold,
            metadata.holders.len(),
            metadata.strict,
            metadata.allow_trustees_alone,
        ));
        let (audit_seq, _) = self.append(batch, entry);
        if let Some(policy) = &request.policy {
            self.put_policy(batch, caller, tenant, policy.clone());
        }
        Ok(EnrollResponse {
            tenant: tenant.to_owned(),
            key_version: metadata.key_version,
            holder: holder.name,
            x: holder.x,
            audit_seq,
        })
    }

    pub(super) fn put_policy(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        policy: Policy,
    ) {
        let mut entry = self.entry(
            batch,
            tenant,
            None,
            caller.to_string(),
            AuditEvent::PolicySet,
        );
        entry.detail = serde_json::to_string(&policy).ok();
        batch.mutations.push(Mutation::PutPolicy {
            tenant: tenant.to_owned(),
            policy: policy.clone(),
        });
        // The proxies allowed before hear of the change too (a removed proxy must drop its
        // cached keys).
        let before = self
            .policies
            .insert(tenant.to_owned(), policy)
            .map(|old| old.allowed_proxies)
            .unwrap_or_default();
        self.revoke(batch, tenant, None, RevocationKind::Policy, &before);
        // A new rate limit takes effect with a full bucket.
        self.buckets.remove(tenant);
        self.append(batch, entry);
    }

    pub(super) fn set_policy(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        policy: Policy,
    ) -> Result<Policy, Error> {
        require_admin(caller, tenant)?;
        self.require_tenant(tenant)?;
        policy
            .validate()
            .map_err(|e| Error::Invalid(format!("policy: {e}")))?;
        self.put_policy(batch, caller, tenant, policy.clone());
        Ok(policy)
    }

    pub(super) fn shred(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        key_version: u32,
        request: &ShredRequest,
    ) -> Result<ShredReceipt, Error> {
        require_admin(caller, tenant)?;
        if let Some(request_id) = &request.request_id {
            validate_request_id(request_id).map_err(Error::Invalid)?;
        }
        let now = batch.now_ms;
        let Some(record) = self.keys.get_mut(&(tenant.to_owned(), key_version)) else {
            return Err(Error::UnknownTenant);
        };
        // A handed-over share is still here until this shred: shredding it is the hand-over's
        // last step, and works like any other shred.
        if record.sealed.is_none() {
            return Err(Error::Shredded);
        }
        record.sealed = None;
        record.shredded_ms = Some(now);
        let holder = record.holder.clone();
        let fingerprint = record
            .metadata
            .holder(&holder)
            .map(|h| h.fingerprint.clone())
            .unwrap_or_default();
        batch.mutations.push(Mutation::Shred {
            tenant: tenant.to_owned(),
            key_version,
            time_ms: now,
        });
        batch.erase = true;
        let mut entry = self.entry(
            batch,
            tenant,
            Some(key_version),
            caller.to_string(),
            AuditEvent::Shred,
        );
        entry.request_id = request.request_id.clone();
        entry.detail = Some(format!("holder={holder} fingerprint={fingerprint}"));
        let (audit_seq, audit_hash) = self.append(batch, entry);
        self.revoke(batch, tenant, Some(key_version), RevocationKind::Shred, &[]);
        let mut receipt = ShredReceipt {
            kind: "treuhand-shred-receipt-v1".into(),
            tenant: tenant.to_owned(),
            key_version,
            holder,
            share_fingerprint: fingerprint,
            time_ms: now,
            audit_seq,
            audit_hash,
            signature: String::new(),
        };
        sign_receipt(&self.signing, &mut receipt);
        Ok(receipt)
    }
}
