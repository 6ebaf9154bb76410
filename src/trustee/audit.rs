//! The hash-chained, append-only audit log, its signed checkpoints and its verifier.
//!
//! Each tenant has its own chain, so a customer can download and verify exactly its entries.
//! Entry `n` carries `prev` = the hash of entry `n - 1` (64 zeros for the first) and
//! `hash` = SHA-256(`treuhand-audit-v1\0` ‖ the entry's JSON with `hash` set to ""). serde_json
//! writes struct fields in declaration order and `None` as `null`, so the JSON is canonical.
//!
//! Every head is signed as it is appended: when a group commit appends entries to a chain, the
//! trustee signs the last of them (Ed25519 over tenant, seq and hash, [`sign_head`]) and stores
//! the signature in the entry (`signature`, which `hash` does not cover). Entries inside one
//! group commit are covered by the signed head after them through the hash links. So someone
//! who can edit the store but does not hold the signing key cannot remove, insert or rewrite an
//! entry and recompute the hashes: the next signed head no longer verifies.
//!
//! A checkpoint is an Ed25519 signature by the trustee over (tenant, seq, head hash, time). A
//! downloaded log verifies when every link holds, every stored head signature verifies, the
//! last entry is signed, and the checkpoint signs the last entry.
//! No secret material ever goes into an entry.

use ring::digest;
use serde::{Deserialize, Serialize};

use super::wire::{Justification, ObjectRef, ShredReceipt};
use crate::crypto::sign::{self, PUBLIC_KEY_LEN, SigningKey};

const ENTRY_LABEL: &[u8] = b"treuhand-audit-v1\0";
const CHECKPOINT_LABEL: &[u8] = b"treuhand-audit-checkpoint-v1\0";
const RECEIPT_LABEL: &[u8] = b"treuhand-shred-receipt-v1\0";
const HEAD_LABEL: &[u8] = b"treuhand-audit-head-v1\0";
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
    /// A per-object OPRF evaluation was answered (`/v2/.../evaluate`); the entry names the
    /// object (bucket, key in `object`, the object id in `object_id`).
    Evaluate,
    /// A strict tenant's request was authorized by checking the customer's own signature
    /// (`/v2/tenants/{t}/authorize`); `detail` says what the signature covers.
    Authorize,
    /// The customer admin denied a pending grant.
    GrantDenied,
    /// The customer admin revoked an approved grant.
    GrantRevoked,
    /// The share was handed to the customer admin for a re-deal to another holder
    /// (`detail` names it).
    Handover,
    /// The version's public metadata was replaced after a hand-over.
    MetadataUpdated,
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
    /// Hex of the 32-byte object id of an evaluation (format v3). Absent from entries that
    /// name no object id, so their JSON, and hash, are those of entries written before it
    /// existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// Event details (policy JSON, ticket id); never secret.
    pub detail: Option<String>,
    /// Hash of the previous entry (hex).
    pub prev: String,
    /// Hash of this entry (hex).
    pub hash: String,
    /// Hex Ed25519 head signature by the trustee over (tenant, seq, hash), see [`sign_head`].
    /// Present on the last entry of each group commit (the head the commit left); `hash` does
    /// not cover it. Absent from stores written before heads were signed until
    /// `treuhand trustee migrate-audit` signs their heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl AuditEntry {
    /// Computes this entry's hash from its other fields.
    pub fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = String::new();
        // Skipped when `None`, so the hashed JSON is exactly that of entries written before
        // head signatures existed, and their hashes still hold.
        unhashed.signature = None;
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

/// Whether `signature` (hex) is a signature by `public_key` over `message`.
fn verify_hex(public_key: &[u8; PUBLIC_KEY_LEN], message: &[u8], signature: &str) -> bool {
    hex::decode(signature)
        .is_ok_and(|signature| sign::verify(public_key, message, &signature).is_ok())
}

/// A statement that carries its own signature in a hex `signature` field and is signed (and
/// verified) with that field empty: checkpoints and shred receipts.
trait SelfSigned: Serialize + Clone {
    /// The domain label the signed message starts with.
    const LABEL: &'static [u8];

    fn signature(&mut self) -> &mut String;

    fn sign_in_place(&mut self, key: &SigningKey) {
        self.signature().clear();
        let signature = hex::encode(key.sign(&signed_message(Self::LABEL, self)));
        *self.signature() = signature;
    }

    fn verify_with(&self, public_key: &[u8; PUBLIC_KEY_LEN]) -> bool {
        let mut unsigned = self.clone();
        let signature = std::mem::take(unsigned.signature());
        verify_hex(
            public_key,
            &signed_message(Self::LABEL, &unsigned),
            &signature,
        )
    }
}

impl SelfSigned for Checkpoint {
    const LABEL: &'static [u8] = CHECKPOINT_LABEL;

    fn signature(&mut self) -> &mut String {
        &mut self.signature
    }
}

impl SelfSigned for ShredReceipt {
    const LABEL: &'static [u8] = RECEIPT_LABEL;

    fn signature(&mut self) -> &mut String {
        &mut self.signature
    }
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
        checkpoint.sign_in_place(key);
        checkpoint
    }

    /// Verifies the signature.
    pub fn verify_signature(&self, public_key: &[u8; PUBLIC_KEY_LEN]) -> bool {
        self.verify_with(public_key)
    }
}

/// What a head signature signs: the position and hash of a chain's head. The hash covers the
/// entry and, through `prev`, every entry before it.
#[derive(Serialize)]
struct HeadStatement<'a> {
    tenant: &'a str,
    seq: u64,
    head: &'a str,
}

fn head_message(entry: &AuditEntry) -> Vec<u8> {
    signed_message(
        HEAD_LABEL,
        &HeadStatement {
            tenant: &entry.tenant,
            seq: entry.seq,
            head: &entry.hash,
        },
    )
}

/// Signs `entry` as the head of its chain, in place. Call it after `hash` is final.
pub fn sign_head(key: &SigningKey, entry: &mut AuditEntry) {
    entry.signature = Some(hex::encode(key.sign(&head_message(entry))));
}

/// Whether `entry` carries a head signature by `public_key` over its tenant, seq and hash.
/// It does not recompute the hash: [`check_chain`] checks that first, [`is_signed_head`] too.
pub fn verify_head(public_key: &[u8; PUBLIC_KEY_LEN], entry: &AuditEntry) -> bool {
    entry
        .signature
        .as_deref()
        .is_some_and(|signature| verify_hex(public_key, &head_message(entry), signature))
}

/// Whether a stored chain head is intact and signed by `public_key`: its contents match its
/// hash and its head signature verifies. The engine checks every head it loads with this,
/// before it extends a chain; [`check_chain`] applies the same two checks to every entry.
pub fn is_signed_head(public_key: &[u8; PUBLIC_KEY_LEN], entry: &AuditEntry) -> bool {
    entry.compute_hash() == entry.hash && verify_head(public_key, entry)
}

/// Signs a shred receipt in place.
pub fn sign_receipt(key: &SigningKey, receipt: &mut ShredReceipt) {
    receipt.sign_in_place(key);
}

/// Verifies a shred receipt's signature.
pub fn verify_receipt(public_key: &[u8; PUBLIC_KEY_LEN], receipt: &ShredReceipt) -> bool {
    receipt.verify_with(public_key)
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
    /// Number of per-object evaluations.
    pub evaluations: usize,
}

/// The one check of a tenant's chain: every entry's sequence number, tenant, `prev` link and
/// hash, and, given `public_key`, every stored head signature and that the last entry is
/// signed. Without a key only the links are checked: for chains written before heads were
/// signed, which `treuhand trustee migrate-audit` checks before it signs their heads.
///
/// Every walk over a chain goes through here: the engine before it signs a checkpoint and
/// when it migrates a store, and `treuhand audit verify` through [`verify_log`], which adds
/// the checkpoint.
///
/// # Errors
/// [`BrokenLink`] naming the first entry that does not verify.
pub fn check_chain(
    tenant: &str,
    entries: &[AuditEntry],
    public_key: Option<&[u8; PUBLIC_KEY_LEN]>,
) -> Result<Verified, BrokenLink> {
    check_segment(tenant, 1, GENESIS, entries, public_key)
}

/// [`check_chain`] for a segment of a chain: `entries` must start at sequence number
/// `first_seq` and link to `prev` (the hash of entry `first_seq - 1`, already verified by the
/// caller: `treuhand audit pull` keeps it). With `first_seq` 1 and [`GENESIS`] this is
/// [`check_chain`]. A missing sequence number is reported as a removed entry.
///
/// # Errors
/// [`BrokenLink`] naming the first entry that does not verify (its `index` is into `entries`).
pub fn check_segment(
    tenant: &str,
    first_seq: u64,
    prev: &str,
    entries: &[AuditEntry],
    public_key: Option<&[u8; PUBLIC_KEY_LEN]>,
) -> Result<Verified, BrokenLink> {
    let mut prev = prev.to_owned();
    let mut summary = Verified {
        entries: 0,
        head: GENESIS.to_owned(),
        releases: 0,
        denials: 0,
        grant_releases: 0,
        evaluations: 0,
    };
    // Index of the last entry whose head signature verified.
    let mut last_signed: Option<usize> = None;
    for (index, entry) in entries.iter().enumerate() {
        let broken = |what: String| BrokenLink {
            index: Some(index),
            what: format!(
                "entry #{} (seq {}, {:?}): {what}",
                first_seq + index as u64,
                entry.seq,
                entry.event
            ),
        };
        let expected_seq = first_seq + index as u64;
        if entry.seq > expected_seq {
            return Err(broken(format!(
                "sequence number is {} but {expected_seq} was expected: entry seq {expected_seq} (the first missing) was deleted",
                entry.seq
            )));
        }
        if entry.seq != expected_seq {
            return Err(broken(format!(
                "sequence number is {} but {expected_seq} was expected: an entry before it was deleted, or entries were reordered",
                entry.seq
            )));
        }
        if entry.tenant != tenant {
            return Err(broken(format!(
                "belongs to tenant {:?}, not {tenant:?}",
                entry.tenant
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
        if let Some(public_key) = public_key
            && entry.signature.is_some()
        {
            if !verify_head(public_key, entry) {
                let since = match last_signed {
                    Some(signed) => format!(
                        "this entry, or one after entry #{} (the last head whose signature verifies),",
                        first_seq + signed as u64
                    ),
                    None => "this entry, or one before it,".to_owned(),
                };
                return Err(broken(format!(
                    "its head signature does not verify with the given trustee key: {since} was removed, inserted or rewritten and the hashes recomputed (or the signature is forged)"
                )));
            }
            last_signed = Some(index);
        }
        match entry.event {
            AuditEvent::Release => {
                summary.releases += 1;
                if entry.grant.is_some() {
                    summary.grant_releases += 1;
                }
            }
            AuditEvent::Denial => summary.denials += 1,
            AuditEvent::Evaluate => summary.evaluations += 1,
            _ => {}
        }
        prev = entry.hash.clone();
    }
    if public_key.is_some()
        && let Some(last) = entries.len().checked_sub(1)
        && last_signed != Some(last)
    {
        let signed = match last_signed {
            Some(signed) => format!("entry #{}", first_seq + signed as u64),
            None => "none".to_owned(),
        };
        return Err(BrokenLink {
            index: Some(last),
            what: format!(
                "entry #{} (seq {}): the last entry carries no head signature (last signed head: {signed}): entries after the last signed head were added or rewritten without the trustee's key, or the signatures were stripped (a log downloaded before treuhand signed chain heads has none: download it again)",
                first_seq + last as u64,
                entries[last].seq
            ),
        });
    }
    summary.entries = entries.len();
    summary.head = prev;
    Ok(summary)
}

/// Verifies a downloaded log: the whole chain ([`check_chain`]: every entry's hash, every
/// `prev` link, the sequence numbers, the tenant, every head signature) and that the checkpoint
/// is signed by `public_key` and covers the last entry.
///
/// # Errors
/// [`BrokenLink`] naming the first entry (or the checkpoint) that does not verify.
pub fn verify_log(
    log: &AuditLog,
    public_key: &[u8; PUBLIC_KEY_LEN],
) -> Result<Verified, BrokenLink> {
    let summary = check_chain(&log.tenant, &log.entries, Some(public_key))?;
    let prev = summary.head.clone();
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
            object_id: None,
            detail: None,
            prev: prev.into(),
            hash: String::new(),
            signature: None,
        };
        e.hash = e.compute_hash();
        e
    }

    /// Re-links entries after an edit, as an editor without the signing key can.
    fn relink(entries: &mut [AuditEntry]) {
        let mut prev = GENESIS.to_owned();
        for (index, e) in entries.iter_mut().enumerate() {
            e.seq = index as u64 + 1;
            e.prev = prev;
            e.hash = e.compute_hash();
            prev = e.hash.clone();
        }
    }

    /// A log of `n` releases whose heads are signed as group commits of two entries leave
    /// them: every even entry, and the last.
    fn log(n: u64) -> (AuditLog, SigningKey) {
        let key = SigningKey::from_seed(&[5; 32]).unwrap();
        let mut entries = Vec::new();
        let mut prev = GENESIS.to_owned();
        for seq in 1..=n {
            let mut e = entry(seq, &prev);
            if seq % 2 == 0 || seq == n {
                sign_head(&key, &mut e);
            }
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

    fn resign_checkpoint(log: &mut AuditLog, key: &SigningKey) {
        let last = log.entries.last().unwrap();
        log.checkpoint = Some(Checkpoint::sign(key, "acme", last.seq, &last.hash, 6000));
    }

    #[test]
    fn the_hash_ignores_the_head_signature_so_old_entries_keep_their_hashes() {
        let key = SigningKey::from_seed(&[5; 32]).unwrap();
        let unsigned = entry(1, GENESIS);
        // An unsigned entry serializes exactly as entries did before head signatures existed.
        assert!(
            !serde_json::to_string(&unsigned)
                .unwrap()
                .contains("signature")
        );
        let mut signed = unsigned.clone();
        sign_head(&key, &mut signed);
        assert_eq!(signed.compute_hash(), unsigned.hash);
        assert!(verify_head(&key.public_key(), &signed));
        let other = SigningKey::from_seed(&[6; 32]).unwrap();
        assert!(!verify_head(&other.public_key(), &signed));
        let parsed: AuditEntry =
            serde_json::from_str(&serde_json::to_string(&signed).unwrap()).unwrap();
        assert_eq!(parsed, signed);
    }

    #[test]
    fn removed_entry_with_recomputed_hashes_fails_at_the_next_signed_head() {
        let (mut log, key) = log(6);
        // Entry #3 (unsigned, inside a group commit) goes; entry #4's signature then covers a
        // different hash, and a checkpoint from a trustee that only checked links is no help.
        log.entries.remove(2);
        relink(&mut log.entries);
        resign_checkpoint(&mut log, &key);
        let err = verify_log(&log, &key.public_key()).unwrap_err();
        assert_eq!(err.index, Some(2), "{err}");
        assert!(err.what.contains("entry #3"), "{err}");
        assert!(err.what.contains("after entry #2"), "{err}");
        assert!(err.what.contains("signature"), "{err}");
    }

    #[test]
    fn rewritten_entry_inside_a_group_commit_is_caught_by_the_head_after_it() {
        let (mut log, key) = log(6);
        log.entries[2].actor = "proxy:someone-else".into();
        relink(&mut log.entries);
        resign_checkpoint(&mut log, &key);
        let err = verify_log(&log, &key.public_key()).unwrap_err();
        assert_eq!(err.index, Some(3), "{err}");
    }

    #[test]
    fn stripped_head_signatures_fail_at_the_last_entry() {
        let (mut log, key) = log(4);
        for e in &mut log.entries {
            e.signature = None;
        }
        let err = verify_log(&log, &key.public_key()).unwrap_err();
        assert_eq!(err.index, Some(3), "{err}");
        assert!(err.what.contains("no head signature"), "{err}");
        // Only the links: what the migration of an old store checks before signing its head.
        assert_eq!(check_chain("acme", &log.entries, None).unwrap().entries, 4);
    }

    #[test]
    fn head_signature_from_another_key_is_refused() {
        let (mut log, key) = log(2);
        let forger = SigningKey::from_seed(&[7; 32]).unwrap();
        sign_head(&forger, &mut log.entries[1]);
        let err = verify_log(&log, &key.public_key()).unwrap_err();
        assert_eq!(err.index, Some(1), "{err}");
        assert!(err.what.contains("head signature"), "{err}");
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
