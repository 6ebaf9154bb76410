//! The key lifecycle at this holder: listing the key versions it knows, handing its share to
//! the customer admin for a re-deal to another holder (the 2018 exit), and replacing a
//! version's public metadata after such a re-deal.
//!
//! The hand-over is the one call besides enrollment through which share material crosses the
//! API, and it goes to the tenant's own customer admin only, never to a proxy or the operator.
//! Its audit entry is committed before the share is answered (fail closed, as a release). From
//! then on the holder refuses every use of the version ([`Engine::admit`]) until it is shredded.

use super::{Batch, Engine, Trustee, require_admin, share_aad};
use crate::crypto::shamir::{KeyMetadata, KeyScheme, ShareEnvelope};
use crate::secret::{Share, ShareValue};
use crate::tls::{PeerIdentity, Role};
use crate::trustee::Error;
use crate::trustee::audit::AuditEvent;
use crate::trustee::store::{KeyRecord, Mutation};
use crate::trustee::wire::{
    HandoverRequest, HandoverResponse, KeyState, KeyStatus, KeysResponse, MetadataUpdate,
    MetadataUpdated, RevocationKind, validate_request_id,
};

/// Longest name of the holder taking over, in bytes.
const MAX_HOLDER_NAME_BYTES: usize = 128;

impl Trustee {
    /// Every key version this holder knows for `tenant`, with its state (customer admin of
    /// the tenant, or operator).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`].
    pub async fn keys(&self, caller: PeerIdentity, tenant: String) -> Result<KeysResponse, Error> {
        self.submit(move |engine, _| {
            if caller.role != Role::Operator {
                require_admin(&caller, &tenant)?;
            }
            engine.require_tenant(&tenant)?;
            let mut keys: Vec<KeyStatus> = engine
                .keys
                .values()
                .filter(|record| record.tenant == tenant)
                .map(key_status)
                .collect();
            keys.sort_by_key(|k| k.key_version);
            Ok(KeysResponse { tenant, keys })
        })
        .await
    }

    /// Hands this holder's share of `key_version` to the tenant's customer admin (only), logs
    /// it before answering, and stops serving the version.
    ///
    /// # Errors
    /// [`Error::Denied`] (`wrong_role`, `not_tenant_admin`), [`Error::Invalid`],
    /// [`Error::UnknownTenant`], [`Error::Shredded`], [`Error::Conflict`] for a legacy key,
    /// [`Error::AuditUnavailable`].
    pub async fn handover(
        &self,
        caller: PeerIdentity,
        tenant: String,
        key_version: u32,
        request: HandoverRequest,
    ) -> Result<HandoverResponse, Error> {
        self.submit(move |engine, batch| {
            engine.handover(batch, &caller, &tenant, key_version, &request)
        })
        .await
    }

    /// Replaces the public metadata of `key_version` after a re-deal (customer admin).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`], [`Error::Invalid`] naming what the new
    /// metadata changes that it must keep.
    pub async fn update_metadata(
        &self,
        caller: PeerIdentity,
        tenant: String,
        key_version: u32,
        update: MetadataUpdate,
    ) -> Result<MetadataUpdated, Error> {
        self.submit(move |engine, batch| {
            engine.update_metadata(batch, &caller, &tenant, key_version, update.metadata)
        })
        .await
    }
}

fn key_status(record: &KeyRecord) -> KeyStatus {
    let state = if record.sealed.is_none() {
        KeyState::Shredded
    } else if record.handed_over_ms.is_some() {
        KeyState::HandedOver
    } else {
        KeyState::Active
    };
    KeyStatus {
        key_version: record.key_version,
        holder: record.holder.clone(),
        x: record
            .metadata
            .holder(&record.holder)
            .map_or(0, |holder| holder.x),
        state,
        deposited_ms: record.deposited_ms,
        metadata: record.metadata.clone(),
    }
}

/// `holder_name(x)` pairs of a metadata's holders, for audit details.
fn describe_holders(metadata: &KeyMetadata) -> String {
    metadata
        .holders
        .iter()
        .map(|h| format!("{}(x={})", h.name, h.x))
        .collect::<Vec<_>>()
        .join(",")
}

impl Engine {
    fn handover(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        key_version: u32,
        request: &HandoverRequest,
    ) -> Result<HandoverResponse, Error> {
        require_admin(caller, tenant)?;
        let to = request.to.as_str();
        if to.is_empty() || to.len() > MAX_HOLDER_NAME_BYTES || to.chars().any(char::is_control) {
            return Err(Error::Invalid(format!(
                "to must name the holder taking over in 1-{MAX_HOLDER_NAME_BYTES} bytes without control characters"
            )));
        }
        if let Some(request_id) = &request.request_id {
            validate_request_id(request_id).map_err(Error::Invalid)?;
        }
        let now = batch.now_ms;
        let Some(record) = self.keys.get(&(tenant.to_owned(), key_version)) else {
            return Err(Error::UnknownTenant);
        };
        let Some(sealed) = record.sealed.as_ref() else {
            return Err(Error::Shredded);
        };
        if record.metadata.scheme != KeyScheme::Oprf {
            return Err(Error::Conflict(format!(
                "tenant {tenant:?} key version {key_version} is a legacy (shamir-tmk-v1) key: a hand-over re-deals OPRF keys only; rotate to a new (OPRF) key version first (`treuhand tenant rotate`), rewrap the objects of version {key_version} and shred it"
            )));
        }
        let holder = record.holder.clone();
        let x = record
            .metadata
            .holder(&holder)
            .map(|h| h.x)
            .ok_or_else(|| Error::Internal("enrolled holder missing from metadata".into()))?;
        let key = record
            .metadata
            .key_id()
            .map_err(|e| Error::Internal(format!("stored metadata: {e}")))?;
        let again = record.handed_over_ms.is_some();
        let opened = self
            .sealing
            .open(&share_aad(tenant, key_version, x), sealed)
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
        let value = ShareValue::from_slice(opened.as_slice())
            .ok_or_else(|| Error::Internal("a stored share is not 32 bytes".into()))?;
        let envelope = ShareEnvelope {
            key,
            share: Share::new(x, value),
        }
        .encode();
        if !again {
            batch.mutations.push(Mutation::HandOver {
                tenant: tenant.to_owned(),
                key_version,
                time_ms: now,
            });
            if let Some(record) = self.keys.get_mut(&(tenant.to_owned(), key_version)) {
                record.handed_over_ms = Some(now);
            }
        }
        let mut entry = self.entry(
            batch,
            tenant,
            Some(key_version),
            caller.to_string(),
            AuditEvent::Handover,
        );
        entry.request_id = request.request_id.clone();
        entry.detail = Some(format!(
            "holder={holder} x={x} to={to}{}",
            if again { " repeated=true" } else { "" }
        ));
        let (audit_seq, _) = self.append(batch, entry);
        self.revoke(
            batch,
            tenant,
            Some(key_version),
            RevocationKind::Handover,
            &[],
        );
        Ok(HandoverResponse {
            tenant: tenant.to_owned(),
            key_version,
            holder,
            x,
            share: envelope.to_string(),
            audit_seq,
        })
    }

    fn update_metadata(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        key_version: u32,
        metadata: KeyMetadata,
    ) -> Result<MetadataUpdated, Error> {
        require_admin(caller, tenant)?;
        let slot = (tenant.to_owned(), key_version);
        let Some(record) = self.keys.get(&slot) else {
            return Err(Error::UnknownTenant);
        };
        check_successor(&record.metadata, &record.holder, &metadata)
            .map_err(|e| Error::Invalid(format!("metadata: {e}")))?;
        let detail = format!(
            "holders={} threshold={}-of-{}",
            describe_holders(&metadata),
            metadata.threshold,
            metadata.holders.len()
        );
        batch.mutations.push(Mutation::PutMetadata {
            tenant: tenant.to_owned(),
            key_version,
            metadata: metadata.clone(),
        });
        if let Some(record) = self.keys.get_mut(&slot) {
            record.metadata = metadata;
        }
        let mut entry = self.entry(
            batch,
            tenant,
            Some(key_version),
            caller.to_string(),
            AuditEvent::MetadataUpdated,
        );
        entry.detail = Some(detail);
        let (audit_seq, _) = self.append(batch, entry);
        Ok(MetadataUpdated {
            tenant: tenant.to_owned(),
            key_version,
            audit_seq,
        })
    }
}

/// Whether `new` may replace `old` at the holder `holder`: consistent by itself, for the same
/// tenant key (tenant, version, scheme, threshold, `K` or the commitment, the customer's
/// strict and trustees-alone choices), and still naming this holder with its x and its public
/// key (or fingerprint). Only the other holders may change: that is what a re-deal does.
fn check_successor(old: &KeyMetadata, holder: &str, new: &KeyMetadata) -> Result<(), String> {
    new.validate().map_err(|e| e.to_string())?;
    let same = |what: &str, same: bool| {
        if same {
            Ok(())
        } else {
            Err(format!(
                "{what} differs from the stored metadata; an update after a hand-over may change only the other holders"
            ))
        }
    };
    if new.tenant != old.tenant {
        return Err(format!(
            "tenant is {:?} but this key belongs to {:?}",
            new.tenant, old.tenant
        ));
    }
    if new.key_version != old.key_version {
        return Err(format!(
            "key_version is {} but the URL names version {}",
            new.key_version, old.key_version
        ));
    }
    same("scheme", new.scheme == old.scheme)?;
    same("threshold", new.threshold == old.threshold)?;
    same(
        "the tenant public key (public_key)",
        new.public_key == old.public_key,
    )?;
    same("the key commitment", new.commitment == old.commitment)?;
    same("strict", new.strict == old.strict)?;
    same(
        "allow_trustees_alone",
        new.allow_trustees_alone == old.allow_trustees_alone,
    )?;
    let (Some(mine), Some(kept)) = (old.holder(holder), new.holder(holder)) else {
        return Err(format!(
            "holder {holder:?} (this holder) is not listed; the new metadata must keep it"
        ));
    };
    if kept.x != mine.x {
        return Err(format!(
            "holder {holder:?} (this holder) has x = {} but its share has x = {}",
            kept.x, mine.x
        ));
    }
    if kept.public_key != mine.public_key || kept.fingerprint != mine.fingerprint {
        return Err(format!(
            "holder {holder:?} (this holder) is listed with another public key than its share's"
        ));
    }
    Ok(())
}
