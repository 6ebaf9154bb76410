//! Per-object OPRF evaluation (`POST /v2/tenants/{t}/keys/{v}/evaluate`) and the strict
//! tenants' signature checks (evaluate, and `POST /v2/tenants/{t}/authorize`).
//!
//! An evaluation passes the same gates as a release ([`Engine::admit`]), then the key must be
//! an OPRF key and, where this holder keeps the tenant's S3 credential, the customer's own
//! signature must verify and cover the object. The entry (with the object: bucket, key, id)
//! is committed before the answer, as for a release. The writer hands the opened share to the
//! caller's task as soon as the decision is made and the entry appended
//! ([`Trustee::submit_early`]), and `Y_i = k_i·P` with its proof is computed there while the
//! batch is being committed (the writer does no group arithmetic); the answer waits for the
//! commit and is dropped, unsent, if the commit fails.

use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Batch, Engine, Gate, Trustee, credential_aad};
use crate::crypto::oprf::{self, KeyShare, ObjectId, ObjectIdentity};
use crate::crypto::shamir::KeyScheme;
use crate::tls::{PeerIdentity, Role};
use crate::trustee::Error;
use crate::trustee::audit::{AuditEntry, AuditEvent};
use crate::trustee::policy::{Denial, authorize};
use crate::trustee::signature::{self, Covered};
use crate::trustee::wire::{
    AuthorizeRequest, AuthorizeResponse, EvaluateRequest, EvaluateResponse, ObjectRef,
    SigV4Credential, SignedRequest,
};

/// Longest request description (method and path as forwarded) kept in a denial's entry.
const MAX_DESCRIBED_BYTES: usize = 512;

/// What the writer hands the caller's task for an admitted evaluation.
struct Evaluating {
    /// The opened share.
    share: Zeroizing<Vec<u8>>,
    /// Its x.
    x: u8,
    /// Hex of the holder's registered `K_i`.
    public_key: String,
    /// The sequence number of the evaluation's entry.
    audit_seq: u64,
}

impl Trustee {
    /// Decides a per-object evaluation, logs it (with the object) durably, and answers
    /// `Y_i = k_i·P` with its DLEQ proof.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a malformed request, [`Error::UnknownTenant`],
    /// [`Error::Shredded`], [`Error::NotOprfKey`], [`Error::Denied`] (policy, or the
    /// customer's signature), [`Error::AuditUnavailable`].
    pub async fn evaluate(
        &self,
        caller: PeerIdentity,
        tenant: String,
        key_version: u32,
        request: EvaluateRequest,
    ) -> Result<EvaluateResponse, Error> {
        request.validate().map_err(Error::Invalid)?;
        let id = request.object.object_id().map_err(Error::Invalid)?;
        let identity = ObjectIdentity {
            tenant: tenant.clone(),
            key_version,
            bucket: request.object.bucket.clone(),
            key: request.object.key.clone(),
            id: ObjectId(id),
        };
        // The decision is made and the entry appended when the share comes back; the answer is
        // computed while the batch is being committed and sent only once it is durable.
        let (admitted, committed) = self
            .submit_early(move |engine, batch| {
                engine.evaluate(batch, &caller, &tenant, key_version, request, &id)
            })
            .await?;
        let answer = answer(&admitted, &identity);
        drop(admitted);
        committed.wait().await?;
        answer
    }

    /// Checks and logs a strict tenant's request that needs no key (LIST, DELETE, bucket
    /// calls), at the holder that keeps the tenant's S3 credential.
    ///
    /// # Errors
    /// [`Error::Invalid`], [`Error::UnknownTenant`], [`Error::SignaturesNotCheckedHere`],
    /// [`Error::Denied`], [`Error::AuditUnavailable`].
    pub async fn authorize(
        &self,
        caller: PeerIdentity,
        tenant: String,
        request: AuthorizeRequest,
    ) -> Result<AuthorizeResponse, Error> {
        request.validate().map_err(Error::Invalid)?;
        self.submit(move |engine, batch| engine.authorize_signed(batch, &caller, &tenant, request))
            .await
    }
}

impl Engine {
    /// The writer's part of an evaluation: the gates, the entry, and the opened share for the
    /// caller's task (with its x, registered public key and the entry's sequence number).
    fn evaluate(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        key_version: u32,
        request: EvaluateRequest,
        id: &[u8; 32],
    ) -> Result<Evaluating, Error> {
        let mut entry = self.entry(
            batch,
            tenant,
            Some(key_version),
            caller.to_string(),
            AuditEvent::Evaluate,
        );
        entry.justification = Some(request.justification);
        entry.request_id = Some(request.request_id);
        entry.reason = Some(request.reason).filter(|r| !r.is_empty());
        entry.object = Some(ObjectRef {
            bucket: request.object.bucket.clone(),
            key: request.object.key.clone(),
        });
        entry.object_id = Some(hex::encode(id));
        let gate = Gate {
            caller,
            tenant,
            key_version,
            justification: request.justification,
            chain_refused_proxies: true,
        };
        let object = request.object;
        let signed = request.signed;
        let admitted = self.admit(batch, &gate, entry, |engine, scheme, entry, now_ms| {
            if scheme != KeyScheme::Oprf {
                return Err(Error::NotOprfKey);
            }
            let covered = engine.check_signature(tenant, signed.as_ref(), now_ms, entry)?;
            if let Some(covered) = covered
                && !covered.covers_object(&object.bucket, &object.key)
            {
                return Err(Error::Denied(Denial::SignatureScope));
            }
            Ok(())
        })?;
        let public_key = self
            .keys
            .get(&(tenant.to_owned(), key_version))
            .and_then(|record| record.metadata.holder(&admitted.holder))
            .map(|holder| holder.public_key.clone())
            .ok_or_else(|| Error::Internal("enrolled holder missing from metadata".into()))?;
        let (audit_seq, _) = self.append(batch, admitted.entry);
        Ok(Evaluating {
            share: admitted.share,
            x: admitted.x,
            public_key,
            audit_seq,
        })
    }

    /// Where this holder keeps `tenant`'s S3 credential: requires `signed`, verifies it at
    /// `now_ms`, and notes what it covers in `entry`. `Ok(None)`: this holder does not check
    /// the tenant's signatures.
    fn check_signature(
        &self,
        tenant: &str,
        signed: Option<&SignedRequest>,
        now_ms: u64,
        entry: &mut AuditEntry,
    ) -> Result<Option<Covered>, Error> {
        let Some(credential) = self.credential(tenant)? else {
            return Ok(None);
        };
        let Some(signed) = signed else {
            return Err(Error::Denied(Denial::SignatureRequired));
        };
        match signature::verify(signed, &credential, now_ms / 1000) {
            Ok(covered) => {
                entry.detail = Some(describe_covered(&covered));
                Ok(Some(covered))
            }
            Err(refused) => {
                entry.detail = Some(describe_claimed(signed));
                Err(Error::Denied(Denial::from_code(refused.reason())))
            }
        }
    }

    /// The tenant's S3 credential, opened; `None` when none was deposited here.
    fn credential(&self, tenant: &str) -> Result<Option<SigV4Credential>, Error> {
        let Some(sealed) = self.credentials.get(tenant) else {
            return Ok(None);
        };
        let opened = self
            .sealing
            .open(&credential_aad(tenant), sealed)
            .map_err(|_| {
                tracing::error!(
                    tenant,
                    "a stored S3 credential does not open with the sealing key"
                );
                Error::Internal(
                    "the stored S3 credential does not open with the configured sealing key".into(),
                )
            })?;
        serde_json::from_slice(opened.as_slice())
            .map(Some)
            .map_err(|_| Error::Internal("a stored S3 credential does not parse".into()))
    }

    fn authorize_signed(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        request: AuthorizeRequest,
    ) -> Result<AuthorizeResponse, Error> {
        if !self.keys.keys().any(|(t, _)| t == tenant) {
            if self
                .strangers
                .admit(&caller.to_string(), batch.now_ms)
                .is_some()
            {
                tracing::info!(tenant, caller = %caller, "authorize for an unknown tenant");
            }
            return Err(Error::UnknownTenant);
        }
        let mut entry = self.entry(
            batch,
            tenant,
            None,
            caller.to_string(),
            AuditEvent::Authorize,
        );
        entry.request_id = Some(request.request_id);
        entry.detail = Some(describe_claimed(&request.signed));
        if let Err(denial) = authorize(self.policies.get(tenant), caller) {
            if caller.role == Role::Proxy {
                self.append_denial(batch, entry, denial.code());
            } else {
                self.note_unauthorized(caller, tenant, 0, &denial, batch.now_ms);
            }
            return Err(Error::Denied(denial));
        }
        if !self.credentials.contains_key(tenant) {
            return Err(Error::SignaturesNotCheckedHere);
        }
        if self.policies.get(tenant).is_some_and(|p| p.suspended) {
            self.append_denial(batch, entry, Denial::TenantSuspended.code());
            return Err(Error::Denied(Denial::TenantSuspended));
        }
        let covered =
            match self.check_signature(tenant, Some(&request.signed), batch.now_ms, &mut entry) {
                Ok(Some(covered)) => covered,
                Ok(None) => return Err(Error::SignaturesNotCheckedHere),
                Err(error) => {
                    let outcome = match &error {
                        Error::Denied(denial) => denial.code().to_owned(),
                        _ => "refused".to_owned(),
                    };
                    self.append_denial(batch, entry, &outcome);
                    return Err(error);
                }
            };
        if let (Some(bucket), Some(key)) = (&covered.bucket, &covered.key) {
            entry.object = Some(ObjectRef {
                bucket: bucket.clone(),
                key: key.clone(),
            });
        }
        let (audit_seq, _) = self.append(batch, entry);
        Ok(AuthorizeResponse {
            access_key_id: covered.access_key_id,
            audit_seq,
        })
    }
}

/// The answer to an admitted evaluation: `Y_i = k_i·P` with its proof, encoded.
fn answer(admitted: &Evaluating, identity: &ObjectIdentity) -> Result<EvaluateResponse, Error> {
    let share = KeyShare::from_bytes(admitted.x, admitted.share.as_slice())
        .map_err(|_| Error::Internal("the stored OPRF share is not a canonical scalar".into()))?;
    // K_i as registered: the deposit checked it against this share (and a metadata update
    // keeps it), so the proof needs no k_i·G per request.
    let mut public = [0u8; oprf::ELEMENT_LEN];
    hex::decode_to_slice(&admitted.public_key, &mut public).map_err(|_| {
        Error::Internal("the registered public key of this holder is not 32 bytes of hex".into())
    })?;
    let (_, wire) = oprf::evaluate_registered(&share, &public, identity)
        .map_err(|e| Error::Internal(format!("evaluation failed: {e}")))?;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(EvaluateResponse {
        element: encode(&wire.element),
        proof: encode(&wire.proof),
        x: admitted.x,
        audit_seq: admitted.audit_seq,
    })
}

/// What a verified signature covers, for the entry (no signature, no secret).
fn describe_covered(covered: &Covered) -> String {
    let mut text = format!(
        "signed by {} for {} bucket={} key={}",
        covered.access_key_id,
        covered.method,
        covered.bucket.as_deref().unwrap_or("-"),
        covered.key.as_deref().unwrap_or("-"),
    );
    if let Some((bucket, key)) = &covered.copy_source {
        text.push_str(&format!(" copy_source={bucket}/{key}"));
    }
    text
}

/// What an unverified forwarded request claims to be (method and path, bounded), for a
/// denial's entry. The query and headers stay out: they carry the signature.
fn describe_claimed(signed: &SignedRequest) -> String {
    let mut text = format!("request {} {}", signed.method, signed.path);
    if text.len() > MAX_DESCRIBED_BYTES {
        let mut end = MAX_DESCRIBED_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trustee::signature::SignatureError;

    #[test]
    fn every_signature_refusal_is_a_known_denial_with_its_own_code() {
        for refused in [
            SignatureError::WrongAccessKey,
            SignatureError::Expired,
            SignatureError::Mismatch,
            SignatureError::Malformed("x".into()),
        ] {
            let denial = Denial::from_code(refused.reason());
            assert!(!matches!(denial, Denial::Other(_)), "{denial:?}");
            assert_eq!(denial.code(), refused.reason());
        }
    }

    #[test]
    fn a_claimed_request_is_described_without_its_signature_and_bounded() {
        let signed = SignedRequest {
            method: "GET".into(),
            path: format!("/photos/{}", "é".repeat(600)),
            query: "X-Amz-Signature=abcdef".into(),
            headers: vec![("host".into(), "h".into())],
            authorization: Some("AWS4-HMAC-SHA256 Signature=abcdef".into()),
        };
        let text = describe_claimed(&signed);
        assert!(text.starts_with("request GET /photos/"), "{text}");
        assert!(!text.contains("abcdef"), "{text}");
        assert!(text.len() <= MAX_DESCRIBED_BYTES + 3, "{}", text.len());
    }
}
