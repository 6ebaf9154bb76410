//! The engine's side of the audit chains: loading the store and checking every chain head's
//! signature, building and appending entries, signing the heads a commit leaves, serving a
//! tenant's chain with a checkpoint, and migrating stores written before heads were signed.
//!
//! Every walk over a chain goes through [`crate::trustee::audit::check_chain`], the same check
//! `treuhand audit verify` runs.

use std::collections::HashSet;

use super::{Batch, Engine, Trustee, require_admin};
use crate::crypto::sign::SigningKey;
use crate::tls::PeerIdentity;
use crate::trustee::Error;
use crate::trustee::audit::{
    AuditEntry, AuditEvent, AuditLog, Checkpoint, GENESIS, check_chain, is_signed_head, sign_head,
};
use crate::trustee::store::{Mutation, Store};

impl Trustee {
    /// The tenant's whole audit chain with a fresh signed checkpoint (customer admin).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`], [`Error::Store`].
    pub async fn audit(&self, caller: PeerIdentity, tenant: String) -> Result<AuditLog, Error> {
        self.audit_from(caller, tenant, 0).await
    }

    /// The entries of the tenant's chain with `seq >= from` (all with 0 or 1), with a fresh
    /// signed checkpoint over the head (customer admin). The whole chain is still checked
    /// before the checkpoint is signed; only the answer is cut.
    ///
    /// # Errors
    /// As [`Self::audit`].
    pub async fn audit_from(
        &self,
        caller: PeerIdentity,
        tenant: String,
        from: u64,
    ) -> Result<AuditLog, Error> {
        // The check runs in the engine, after every earlier request was committed; the read
        // itself runs on a separate connection so a long download never holds up releases.
        let checked = tenant.clone();
        self.submit(move |engine, _| {
            require_admin(&caller, &checked)?;
            engine.require_tenant(&checked)
        })
        .await?;
        let reader = self.reader.clone();
        let signing = self.signing.clone();
        let clock = self.clock.clone();
        tokio::task::spawn_blocking(move || {
            let entries = {
                let mut reader = reader
                    .lock()
                    .map_err(|_| Error::Internal("audit reader lock poisoned".into()))?;
                reader.audit_entries(&tenant)?
            };
            let mut log = signed_log(&signing, &tenant, entries, clock.now_ms())?;
            log.entries.retain(|entry| entry.seq >= from);
            Ok(log)
        })
        .await
        .map_err(|e| Error::Internal(format!("audit task failed: {e}")))?
    }
}

impl Engine {
    pub(super) fn reload(&mut self) -> Result<(), Error> {
        let snapshot = self.store.load()?;
        if snapshot.unsigned_heads {
            return Err(Error::Store(
                "the store's audit chains were written before treuhand signed chain heads; stop the trustee and run `treuhand trustee migrate-audit --config FILE` once (docs/trustee.md, \"Upgrading a store\")".into(),
            ));
        }
        // Every chain the engine extends must end in a head it signed: otherwise someone
        // without the key removed, inserted or rewrote entries (and recomputed the hashes),
        // and appending a newly signed head would vouch for that history. Refusing to start
        // is loud and fails closed for every tenant; the operator restores the store.
        let public_key = self.signing.public_key();
        for head in &snapshot.heads {
            if !is_signed_head(&public_key, head) {
                return Err(Error::Store(format!(
                    "the audit chain of tenant {} ends at seq {} in an entry without a valid head signature by this trustee's key: the store was edited (entries removed, inserted or rewritten, or the tail cut off), or keys.signing_key is not the key that wrote it; refusing to extend or vouch for it",
                    head.tenant, head.seq
                )));
            }
        }
        self.keys = snapshot
            .keys
            .into_iter()
            .map(|k| ((k.tenant.clone(), k.key_version), k))
            .collect();
        self.policies = snapshot.policies.into_iter().collect();
        self.credentials = snapshot.credentials.into_iter().collect();
        self.grants = snapshot
            .grants
            .into_iter()
            .map(|g| (g.id.clone(), g))
            .collect();
        self.heads = snapshot
            .heads
            .into_iter()
            .map(|e| (e.tenant.clone(), (e.seq, e.hash)))
            .collect();
        self.buckets.clear();
        Ok(())
    }

    /// Signs the head each chain will have after this commit: the last entry the batch appends
    /// to it. The entries before it in the batch are covered through their hash links, so one
    /// signature per chain and commit suffices (one per entry would put an Ed25519 signature
    /// on the writer thread for every release under load).
    pub(super) fn sign_heads(&self, mutations: &mut [Mutation]) {
        let mut signed: HashSet<String> = HashSet::new();
        for mutation in mutations.iter_mut().rev() {
            if let Mutation::Append(entry) = mutation
                && !signed.contains(&entry.tenant)
            {
                sign_head(&self.signing, entry);
                signed.insert(entry.tenant.clone());
            }
        }
    }

    pub(super) fn entry(
        &self,
        batch: &Batch,
        tenant: &str,
        key_version: Option<u32>,
        actor: String,
        event: AuditEvent,
    ) -> AuditEntry {
        AuditEntry {
            seq: 0,
            time_ms: batch.now_ms,
            tenant: tenant.to_owned(),
            key_version,
            actor,
            event,
            justification: None,
            request_id: None,
            outcome: "ok".into(),
            grant: None,
            reason: None,
            object: None,
            object_id: None,
            detail: None,
            prev: String::new(),
            hash: String::new(),
            signature: None,
        }
    }

    pub(super) fn append(&mut self, batch: &mut Batch, mut entry: AuditEntry) -> (u64, String) {
        let (seq, prev) = match self.heads.get(&entry.tenant) {
            Some((seq, hash)) => (seq + 1, hash.clone()),
            None => (1, GENESIS.to_owned()),
        };
        entry.seq = seq;
        entry.prev = prev;
        entry.hash = entry.compute_hash();
        let hash = entry.hash.clone();
        self.heads.insert(entry.tenant.clone(), (seq, hash.clone()));
        batch.mutations.push(Mutation::Append(entry));
        (seq, hash)
    }

    /// Chains the denial of an authorized caller, within that caller's denial budget. Beyond
    /// it the denial is answered but not chained, so a caller refused in a loop cannot grow
    /// the store; its next chained denial says how many were left out.
    pub(super) fn append_denial(
        &mut self,
        batch: &mut Batch,
        mut entry: AuditEntry,
        outcome: &str,
    ) {
        entry.event = AuditEvent::Denial;
        entry.outcome = outcome.into();
        let what = entry.detail.take();
        match self.denials.admit(&entry.actor, batch.now_ms) {
            None => {
                metrics::counter!("trustee_denials_not_chained_total", "why" => "denial_budget")
                    .increment(1);
                return;
            }
            Some(0) => entry.detail = what,
            Some(left_out) => {
                let left_out = format!(
                    "{left_out} earlier denials of this caller were answered but not chained (denial budget, limits.denial_log_*)"
                );
                entry.detail = Some(match what {
                    Some(what) => format!("{what}; {left_out}"),
                    None => left_out,
                });
            }
        }
        self.append(batch, entry);
    }
}

/// Signs, once, the head of every chain in a store written before treuhand signed chain heads
/// (`treuhand trustee migrate-audit`), after checking every link of every chain. Returns how
/// many chains it signed: 0 when the store needs no migration.
///
/// # Security
/// This vouches for whatever the store holds at that moment, so run it once, at the upgrade,
/// on a store you trust. A store that asks for it again had its format marker reset (and its
/// signatures stripped) by hand; signing it again would bless that edit.
///
/// # Errors
/// [`Error::Store`] if the store cannot be read or written, or a chain's links are broken
/// (nothing is signed then).
pub fn migrate_audit(store: &mut dyn Store, signing: &SigningKey) -> Result<usize, Error> {
    let snapshot = store.load()?;
    if !snapshot.unsigned_heads {
        return Ok(0);
    }
    let mut reader = store.reader()?;
    let mut heads = Vec::with_capacity(snapshot.heads.len());
    for mut head in snapshot.heads {
        let entries = reader.audit_entries(&head.tenant)?;
        check_chain(&head.tenant, &entries, None).map_err(|broken| {
            Error::Store(format!(
                "the audit chain of tenant {} is broken, so nothing was signed: {broken}",
                head.tenant
            ))
        })?;
        sign_head(signing, &mut head);
        heads.push(head);
    }
    store.sign_legacy_heads(&heads)?;
    Ok(heads.len())
}

/// Checks the stored chain (links and head signatures), then signs a checkpoint over the head.
fn signed_log(
    signing: &SigningKey,
    tenant: &str,
    entries: Vec<AuditEntry>,
    now_ms: u64,
) -> Result<AuditLog, Error> {
    let mut log = AuditLog {
        tenant: tenant.to_owned(),
        trustee_key: hex::encode(signing.public_key()),
        entries,
        checkpoint: None,
    };
    // Never vouch for a chain that does not hold: check every link and every stored head
    // signature before signing a checkpoint over its head.
    if let Err(broken) = check_chain(tenant, &log.entries, Some(&signing.public_key())) {
        tracing::error!(
            tenant,
            broken = %broken,
            "the stored audit chain does not verify; refusing to sign a checkpoint"
        );
        return Err(Error::Store(format!(
            "the stored audit chain of {tenant} does not verify: {broken}"
        )));
    }
    if let Some(last) = log.entries.last() {
        log.checkpoint = Some(Checkpoint::sign(
            signing, tenant, last.seq, &last.hash, now_ms,
        ));
    }
    Ok(log)
}
