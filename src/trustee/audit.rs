//! The hash-chained, append-only audit log, its signed checkpoints and its verifier.
//!
//! Each tenant has its own chain, so a customer can download and verify exactly its entries.
//! Entry `n` carries `prev` = the hash of entry `n - 1` (64 zeros for the first) and
//! `hash` = SHA-256(`treuhand-audit-v1\0` ‖ the entry's JSON with `hash` set to ""). serde_json
//! writes struct fields in declaration order and `None` as `null`, so the JSON is canonical.
//!
//! A checkpoint is an Ed25519 signature by the trustee over (tenant, seq, head hash, time). A
//! downloaded log verifies when every link holds and the checkpoint signs its last entry.
//! No secret material ever goes into an entry.

use ring::digest;
use serde::{Deserialize, Serialize};

use super::wire::{Justification, ObjectRef, ShredReceipt};
use crate::crypto::sign::{self, PUBLIC_KEY_LEN, SigningKey};

const ENTRY_LABEL: &[u8] = b"treuhand-audit-v1\0";
const CHECKPOINT_LABEL: &[u8] = b"treuhand-audit-checkpoint-v1\0";
const RECEIPT_LABEL: &[u8] = b"treuhand-shred-receipt-v1\0";
/// `prev` of the first entry of every chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// A share was deposited (enrollment).
    Deposit,
    /// The policy was set.
    PolicySet,
    /// A share was released.
    Release,
    /// A release was denied.
    Denial,
    /// The operator filed an emergency grant request.
    GrantRequested,
    /// The customer admin approved a grant.
    GrantApproved,
    /// A grant expired by itself.
    GrantExpired,
    /// A share was shredded.
    Shred,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position in the tenant's chain, from 1.
    pub seq: u64,
    /// When (Unix ms).
    pub time_ms: u64,
    /// Tenant id.
    pub tenant: String,
    /// Key version, where one applies.
    pub key_version: Option<u32>,
    /// Caller identity (`proxy:<name>`, `customer:<tenant>`, `operator:<name>`, `trustee`).
    pub actor: String,
    /// What happened.
    pub event: AuditEvent,
    /// Justification of a release or denial.
    pub justification: Option<Justification>,
    /// The caller's request id.
    pub request_id: Option<String>,
    /// `ok`, or the denial code.
    pub outcome: String,
    /// The emergency grant id, for grant events and for releases under a grant.
    pub grant: Option<String>,
    /// Free-text reason given by the caller (≤ 1 KiB).
    pub reason: Option<String>,
    /// The object concerned.
    pub object: Option<ObjectRef>,
    /// Event details (policy JSON, ticket id); never secret.
    pub detail: Option<String>,
    /// Hash of the previous entry (hex).
    pub prev: String,
    /// Hash of this entry (hex).
    pub hash: String,
}

impl AuditEntry {
    /// Computes this entry's hash from its other fields.
    pub fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = String::new();
        // Serializing a plain struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&unhashed).unwrap_or_default();
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(ENTRY_LABEL);
        ctx.update(&json);
        hex::encode(ctx.finish().as_ref())
    }
}

/// A signed checkpoint over the head of a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Tenant id.
    pub tenant: String,
    /// Sequence number of the head entry.
    pub seq: u64,
    /// Hash of the head entry.
    pub head: String,
    /// When it was signed (Unix ms).
    pub time_ms: u64,
    /// Hex Ed25519 signature over the checkpoint with `signature` set to "".
    pub signature: String,
}

fn signed_message<T: Serialize>(label: &[u8], value: &T) -> Vec<u8> {
    let mut message = label.to_vec();
    // Serializing plain structs of strings and integers cannot fail.
    message.extend_from_slice(&serde_json::to_vec(value).unwrap_or_default());
    message
}

impl Checkpoint {
    /// Signs the head (`seq`, `head`) of a tenant's chain.
    pub fn sign(key: &SigningKey, tenant: &str, seq: u64, head: &str, time_ms: u64) -> Self {
        let mut checkpoint = Self {
            tenant: tenant.to_owned(),
            seq,
            head: head.to_owned(),
            time_ms,
            signature: String::new(),
        };
        checkpoint.signature =
            hex::encode(key.sign(&signed_message(CHECKPOINT_LABEL, &checkpoint)));
        checkpoint
    }

    /// Verifies the signature.
    pub fn verify_signature(&self, public_key: &[u8; PUBLIC_KEY_LEN]) -> bool {
        let Ok(signature) = hex::decode(&self.signature) else {
            return false;
        };
        let mut unsigned = self.clone();
        unsigned.signature = String::new();
        sign::verify(
            public_key,
            &signed_message(CHECKPOINT_LABEL, &unsigned),
            &signature,
        )
        .is_ok()
    }
}

/// Signs a shred receipt in place.
pub fn sign_receipt(key: &SigningKey, receipt: &mut ShredReceipt) {
    receipt.signature = String::new();
    receipt.signature = hex::encode(key.sign(&signed_message(RECEIPT_LABEL, receipt)));
}

/// Verifies a shred receipt's signature.
pub fn verify_receipt(public_key: &[u8; PUBLIC_KEY_LEN], receipt: &ShredReceipt) -> bool {
    let Ok(signature) = hex::decode(&receipt.signature) else {
        return false;
    };
    let mut unsigned = receipt.clone();
    unsigned.signature = String::new();
    sign::verify(
        public_key,
        &signed_message(RECEIPT_LABEL, &unsigned),
        &signature,
    )
    .is_ok()
}

/// What `GET /v1/tenants/{tenant}/audit` returns, and what `treuhand audit verify` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLog {
    /// Tenant id.
    pub tenant: String,
    /// Hex Ed25519 public key of the trustee that served the log (informational: verify with a
    /// key obtained out of band).
    pub trustee_key: String,
    /// All entries of the tenant's chain, in order.
    pub entries: Vec<AuditEntry>,
    /// The latest signed checkpoint (absent only for an empty log).
    pub checkpoint: Option<Checkpoint>,
}

/// The first broken link a verification found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct BrokenLink {
    /// Index of the offending entry in the file (0-based), or `None` for the checkpoint.
    pub index: Option<usize>,
    /// Human description naming the entry.
    pub what: String,
}

/// Summary of a verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Number of entries.
    pub entries: usize,
    /// Head hash covered by the checkpoint.
    pub head: String,
    /// Number of releases, denials, and releases under an emergency grant.
    pub releases: usize,
    /// Number of denials.
    pub denials: usize,
    /// Number of releases under an emergency grant.
    pub grant_releases: usize,
}

/// Verifies a downloaded log: every entry's hash, every `prev` link, the sequence numbers, the
/// tenant, and that the checkpoint is signed by `public_key` and covers the last entry.
///
/// # Errors
/// [`BrokenLink`] naming the first entry (or the checkpoint) that does not verify.
pub fn verify_log(
    log: &AuditLog,
    public_key: &[u8; PUBLIC_KEY_LEN],
) -> Result<Verified, BrokenLink> {
    let mut prev = GENESIS.to_owned();
    let mut summary = Verified {
        entries: 0,
        head: GENESIS.to_owned(),
        releases: 0,
        denials: 0,
        grant_releases: 0,
    };
    for (index, entry) in log.entries.iter().enumerate() {
        let broken = |what: String| BrokenLink {
            index: Some(index),
            what: format!(
                "entry #{} (seq {}, {:?}): {what}",
                index + 1,
                entry.seq,
                entry.event
            ),
        };
        let expected_seq = index as u64 + 1;
        if entry.seq != expected_seq {
            return Err(broken(format!(
                "sequence number is {} but {expected_seq} was expected: an entry before it was deleted, or entries were reordered",
                entry.seq
            )));
        }
        if entry.tenant != log.tenant {
            return Err(broken(format!(
                "belongs to tenant {:?}, not {:?}",
                entry.tenant, log.tenant
            )));
        }
        if entry.prev != prev {
            return Err(broken(
                "its prev hash does not match the previous entry: the chain is broken here".into(),
            ));
        }
        if entry.compute_hash() != entry.hash {
            return Err(broken(
                "its contents do not match its hash: the entry was edited".into(),
            ));
        }
        match entry.event {
            AuditEvent::Release => {
                summary.releases += 1;
                if entry.grant.is_some() {
                    summary.grant_releases += 1;
                }
            }
            AuditEvent::Denial => summary.denials += 1,
            _ => {}
        }
        prev = entry.hash.clone();
    }
    summary.entries = log.entries.len();
    summary.head = prev.clone();
    let checkpoint_broken = |what: String| BrokenLink {
        index: None,
        what: format!("checkpoint: {what}"),
    };
    match &log.checkpoint {
        None if log.entries.is_empty() => Ok(summary),
        None => Err(checkpoint_broken(
            "missing: nothing vouches for the end of the log, entries may have been cut off".into(),
        )),
        Some(checkpoint) => {
            if !checkpoint.verify_signature(public_key) {
                return Err(checkpoint_broken(
                    "the signature does not verify with the given trustee key: forged or altered"
                        .into(),
                ));
            }
            if checkpoint.tenant != log.tenant {
                return Err(checkpoint_broken(format!(
                    "signed for tenant {:?}, not {:?}",
                    checkpoint.tenant, log.tenant
                )));
            }
            if checkpoint.seq != log.entries.len() as u64 || checkpoint.head != prev {
                return Err(checkpoint_broken(format!(
                    "it covers seq {} but the log ends at seq {} (or the head hash differs): entries were added, removed or changed at the end",
                    checkpoint.seq,
                    log.entries.len()
                )));
            }
            Ok(summary)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose
    use super::*;

    fn entry(seq: u64, prev: &str) -> AuditEntry {
        let mut e = AuditEntry {
            seq,
            time_ms: 1000 + seq,
            tenant: "acme".into(),
            key_version: Some(1),
            actor: "proxy:p1".into(),
            event: AuditEvent::Release,
            justification: Some(Justification::CustomerAccess),
            request_id: Some(format!("r{seq}")),
            outcome: "ok".into(),
            grant: None,
            reason: None,
            object: None,
            detail: None,
            prev: prev.into(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }

    fn log(n: u64) -> (AuditLog, SigningKey) {
        let key = SigningKey::from_seed(&[5; 32]).unwrap();
        let mut entries = Vec::new();
        let mut prev = GENESIS.to_owned();
        for seq in 1..=n {
            let e = entry(seq, &prev);
            prev = e.hash.clone();
            entries.push(e);
        }
        let checkpoint = Checkpoint::sign(&key, "acme", n, &prev, 5000);
        let log = AuditLog {
            tenant: "acme".into(),
            trustee_key: hex::encode(key.public_key()),
            entries,
            checkpoint: Some(checkpoint),
        };
        (log, key)
    }

    #[test]
    fn intact_log_verifies() {
        let (log, key) = log(5);
        let v = verify_log(&log, &key.public_key()).unwrap();
        assert_eq!(v.entries, 5);
        assert_eq!(v.releases, 5);
    }

    #[test]
    fn edited_entry_is_named() {
        let (mut log, key) = log(5);
        log.entries[2].request_id = Some("forged".into());
        let err = verify_log(&log, &key.public_key()).unwrap_err();
        assert_eq!(err.index, Some(2));
        assert!(err.what.contains("edited"), "{err}");
    }

    #[test]
    fn receipt_signature_round_trips() {
        let key = SigningKey::from_seed(&[5; 32]).unwrap();
        let mut receipt = ShredReceipt {
            kind: "treuhand-shred-receipt-v1".into(),
            tenant: "acme".into(),
            key_version: 1,
            holder: "trustee".into(),
            share_fingerprint: "00".into(),
            time_ms: 1,
            audit_seq: 2,
            audit_hash: "ab".into(),
            signature: String::new(),
        };
        sign_receipt(&key, &mut receipt);
        assert!(verify_receipt(&key.public_key(), &receipt));
        receipt.key_version = 2;
        assert!(!verify_receipt(&key.public_key(), &receipt));
    }
}
