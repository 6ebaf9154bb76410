//! `treuhand receipt verify`: checks a shred receipt's signature.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::holders::utc;
use super::output::Output;
use crate::trustee::wire::ShredReceipt;

const RECEIPT_KIND: &str = "treuhand-shred-receipt-v1";

/// `receipt verify --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptVerified {
    /// Always true (a receipt that does not verify exits non-zero).
    pub ok: bool,
    /// Tenant id.
    pub tenant: String,
    /// Key version.
    pub key_version: u32,
    /// The holder whose share was destroyed.
    pub holder: String,
    /// When (Unix ms).
    pub time_ms: u64,
    /// When, UTC.
    pub time: String,
    /// The audit entry that records it.
    pub audit_seq: u64,
    /// Its hash.
    pub audit_hash: String,
    /// Public fingerprint of the destroyed share.
    pub share_fingerprint: String,
}

/// Reads a receipt: the trustee's answer as is, or an object carrying it under `receipt`.
fn read_receipt(path: &Path) -> anyhow::Result<ShredReceipt> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the receipt {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", path.display()))?;
    let value = match value.get("receipt") {
        Some(inner) if inner.is_object() => inner.clone(),
        _ => value,
    };
    serde_json::from_value(value).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a treuhand shred receipt ({e}); give the JSON file `treuhand tenant shred` wrote",
            path.display()
        )
    })
}

/// `receipt verify`.
///
/// # Errors
/// A receipt that does not verify, or unreadable input.
pub fn verify(receipt: &Path, trustee_key: &str, output: Output) -> anyhow::Result<()> {
    let key = super::profile::read_public_key(trustee_key)?;
    let parsed = read_receipt(receipt)?;
    if parsed.kind != RECEIPT_KIND {
        anyhow::bail!(
            "{} is a {:?}, not a {RECEIPT_KIND}",
            receipt.display(),
            parsed.kind
        );
    }
    if !crate::trustee::audit::verify_receipt(&key, &parsed) {
        anyhow::bail!(
            "INVALID: the receipt {} does not verify with the trustee key {}: it was altered, or another key signed it. Check that the key is the holder's signing.pub obtained out of band",
            receipt.display(),
            hex::encode(key)
        );
    }
    let report = ReceiptVerified {
        ok: true,
        tenant: parsed.tenant.clone(),
        key_version: parsed.key_version,
        holder: parsed.holder.clone(),
        time_ms: parsed.time_ms,
        time: utc(parsed.time_ms),
        audit_seq: parsed.audit_seq,
        audit_hash: parsed.audit_hash.clone(),
        share_fingerprint: parsed.share_fingerprint.clone(),
    };
    output.emit(&report, |r| {
        println!(
            "OK: holder {} shredded tenant {} key version {} at {} UTC (audit entry {})",
            r.holder, r.tenant, r.key_version, r.time, r.audit_seq
        );
    })
}
