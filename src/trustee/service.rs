//! The trustee engine: one writer thread that owns all state, decides every request, appends
//! the audit entries and group-commits them before anyone is answered.
//!
//! Request handlers (async, many) send jobs over a bounded channel. The writer thread takes
//! the first waiting job, then drains whatever else is queued (up to `max_batch`), runs each
//! job against the in-memory state (decisions, chain heads), and commits all resulting
//! mutations in **one** durable transaction: one fsync for the whole batch. Only after the
//! commit returns are the replies sent, so an acknowledged release is always in the log, and a
//! failed commit answers every job of the batch with [`Error::AuditUnavailable`] (fail closed)
//! and reloads the in-memory state from the store.
//!
//! Single writer means no locks, a strictly ordered chain per tenant, and decisions that see
//! every earlier decision (rate limits, suspension, grants) without races.
//!
//! Before each commit the writer signs the head each touched chain will have
//! ([`super::audit::sign_head`]); at start it refuses a store whose chain heads do not carry
//! its signature, so it never extends or vouches for a chain edited behind its back.
//!
//! Only a caller that may ask writes into a tenant's chain: a release is authorized (a proxy
//! named in the tenant's policy) before any entry is built, and denials of authorized callers
//! are chained within a per-caller budget ([`super::policy::DenialLimiter`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use super::Error;
use super::audit::{
    AuditEntry, AuditEvent, AuditLog, Checkpoint, GENESIS, sign_head, verify_chain, verify_head,
    verify_links,
};
use super::policy::{
    Clock, Denial, DenialLimiter, Policy, RateBucket, RateLimit, authorize, decide,
};
use super::store::{AuditReader, KeyRecord, Mutation, Store};
use super::wire::{
    EnrollRequest, EnrollResponse, Grant, GrantRequest, GrantState, Justification, ReleaseRequest,
    ReleaseResponse, ShredReceipt, ShredRequest, validate_request_id,
};
use crate::crypto::seal::SealingKey;
use crate::crypto::shamir::{self, ShareEnvelope};
use crate::crypto::sign::SigningKey;
use crate::tls::{PeerIdentity, Role};

/// Tuning knobs of the engine.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Most jobs per group commit.
    pub max_batch: usize,
    /// Longest emergency grant a operator may ask for, in seconds.
    pub max_grant_secs: u64,
    /// Capacity of the job queue; a full queue makes callers wait.
    pub queue: usize,
    /// Denials one caller may add to the audit chains (sustained rate and burst); further
    /// denials are answered but not chained.
    pub denial_log: RateLimit,
    /// Callers whose denial budget is remembered (bounds the limiter's memory).
    pub denial_log_callers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            max_grant_secs: 8 * 3600,
            queue: 8192,
            denial_log: RateLimit {
                per_second: 10,
                burst: 100,
            },
            denial_log_callers: 4096,
        }
    }
}

type Reply = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn FnOnce(&mut Engine, &mut Batch) + Send>;

/// The work collected for one group commit.
struct Batch {
    now_ms: u64,
    mutations: Vec<Mutation>,
    replies: Vec<Reply>,
    erase: bool,
}

/// Handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Trustee {
    tx: mpsc::Sender<Job>,
    public_key: [u8; 32],
    signing: Arc<SigningKey>,
    clock: Arc<dyn Clock>,
    reader: Arc<std::sync::Mutex<Box<dyn AuditReader>>>,
}

impl std::fmt::Debug for Trustee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trustee")
            .field("public_key", &hex::encode(self.public_key))
            .finish()
    }
}

struct Engine {
    store: Box<dyn Store>,
    sealing: SealingKey,
    signing: Arc<SigningKey>,
    clock: Arc<dyn Clock>,
    options: Options,
    poisoned: bool,
    keys: HashMap<(String, u32), KeyRecord>,
    policies: HashMap<String, Policy>,
    grants: HashMap<String, Grant>,
    heads: HashMap<String, (u64, String)>,
    buckets: HashMap<String, RateBucket>,
    /// Budget of chained denials per authorized caller.
    denials: DenialLimiter,
    /// Budget of service-log lines for callers refused before anything is chained.
    strangers: DenialLimiter,
}

fn share_aad(tenant: &str, key_version: u32, x: u8) -> Vec<u8> {
    let mut aad = b"treuhand-trustee-share-v1\0".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&key_version.to_be_bytes());
    aad.push(x);
    aad
}

fn require_admin(caller: &PeerIdentity, tenant: &str) -> Result<(), Error> {
    if caller.role != Role::Customer {
        return Err(Error::Denied {
            reason: Denial::WrongRole.code().into(),
        });
    }
    if caller.name != tenant {
        return Err(Error::Denied {
            reason: Denial::NotTenantAdmin.code().into(),
        });
    }
    Ok(())
}

impl Trustee {
    /// Loads the store and starts the writer thread (and, inside a tokio runtime, a one-second
    /// tick that expires grants even when no request arrives).
    ///
    /// # Errors
    /// [`Error::Store`] if the state cannot be loaded, if a chain's head does not carry a valid
    /// head signature by `signing` (the store was edited, or the key is not the one that wrote
    /// it), or if the store predates head signatures and needs [`migrate_audit`].
    pub fn start(
        store: Box<dyn Store>,
        sealing: SealingKey,
        signing: SigningKey,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Result<Self, Error> {
        let public_key = signing.public_key();
        let signing = Arc::new(signing);
        let reader = Arc::new(std::sync::Mutex::new(store.reader()?));
        let mut engine = Engine {
            store,
            sealing,
            signing: signing.clone(),
            clock: clock.clone(),
            options,
            poisoned: false,
            keys: HashMap::new(),
            policies: HashMap::new(),
            grants: HashMap::new(),
            heads: HashMap::new(),
            buckets: HashMap::new(),
            denials: DenialLimiter::new(options.denial_log, options.denial_log_callers),
            strangers: DenialLimiter::new(options.denial_log, options.denial_log_callers),
        };
        engine.reload()?;
        let (tx, rx) = mpsc::channel::<Job>(options.queue.max(1));
        std::thread::Builder::new()
            .name("trustee-writer".into())
            .spawn(move || engine.run(rx))
            .map_err(|e| Error::Internal(format!("cannot start the writer thread: {e}")))?;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let weak = tx.downgrade();
            handle.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(tx) = weak.upgrade() else { break };
                    let job: Job = Box::new(|_, _| {});
                    if tx.send(job).await.is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self {
            tx,
            public_key,
            signing,
            clock,
            reader,
        })
    }

    /// The trustee's Ed25519 public key (verifies checkpoints and receipts).
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    async fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine, &mut Batch) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |engine, batch| {
            let result = if engine.poisoned {
                Err(Error::AuditUnavailable)
            } else {
                work(engine, batch)
            };
            batch.replies.push(Box::new(move |committed| {
                let _ = reply_tx.send(if committed {
                    result
                } else {
                    Err(Error::AuditUnavailable)
                });
            }));
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| Error::AuditUnavailable)?;
        reply_rx.await.map_err(|_| Error::AuditUnavailable)?
    }

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

    /// The tenant's whole audit chain with a fresh signed checkpoint (customer admin).
    ///
    /// # Errors
    /// [`Error::Denied`], [`Error::UnknownTenant`], [`Error::Store`].
    pub async fn audit(&self, caller: PeerIdentity, tenant: String) -> Result<AuditLog, Error> {
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
            signed_log(&signing, &tenant, entries, clock.now_ms())
        })
        .await
        .map_err(|e| Error::Internal(format!("audit task failed: {e}")))?
    }

    /// Whether the engine is running and its store usable.
    pub async fn ready(&self) -> bool {
        self.submit(|_, _| Ok(())).await.is_ok()
    }
}

impl Engine {
    fn reload(&mut self) -> Result<(), Error> {
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
            if head.compute_hash() != head.hash || !verify_head(&public_key, head) {
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

    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = Batch {
                now_ms: self.clock.now_ms(),
                mutations: Vec::new(),
                replies: Vec::new(),
                erase: false,
            };
            if !self.poisoned {
                self.expire_grants(&mut batch);
            }
            first(&mut self, &mut batch);
            let mut jobs = 1;
            while jobs < self.options.max_batch {
                match rx.try_recv() {
                    Ok(job) => {
                        job(&mut self, &mut batch);
                        jobs += 1;
                    }
                    Err(_) => break,
                }
            }
            let committed = if batch.mutations.is_empty() {
                true
            } else if self.poisoned {
                false
            } else {
                self.sign_heads(&mut batch.mutations);
                match self.store.commit(&batch.mutations) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, "audit commit failed; answering the batch with 503");
                        if let Err(e) = self.reload() {
                            tracing::error!(error = %e, "cannot reload the store; the trustee stays unavailable");
                            self.poisoned = true;
                        }
                        false
                    }
                }
            };
            if committed && batch.erase {
                // A failure here leaves the (zeroed-by-secure_delete) page in the WAL until the
                // next checkpoint; the share is already unrecoverable through the service.
                if let Err(e) = self.store.erase_freed() {
                    tracing::error!(error = %e, "erasing freed pages after a shred failed");
                }
            }
            metrics::histogram!("trustee_group_commit_jobs").record(jobs as f64);
            for reply in batch.replies {
                reply(committed);
            }
        }
    }

    /// Signs the head each chain will have after this commit: the last entry the batch appends
    /// to it. The entries before it in the batch are covered through their hash links, so one
    /// signature per chain and commit suffices (one per entry would put an Ed25519 signature
    /// on the writer thread for every release under load).
    fn sign_heads(&self, mutations: &mut [Mutation]) {
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

    fn entry(
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
            detail: None,
            prev: String::new(),
            hash: String::new(),
            signature: None,
        }
    }

    fn append(&mut self, batch: &mut Batch, mut entry: AuditEntry) -> (u64, String) {
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

    fn require_tenant(&self, tenant: &str) -> Result<(), Error> {
        if self.keys.keys().any(|(t, _)| t == tenant) {
            Ok(())
        } else {
            Err(Error::UnknownTenant)
        }
    }

    fn expire_grants(&mut self, batch: &mut Batch) {
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

    /// The release decision for an authorized caller ([`super::policy::decide`]) against the
    /// tenant's policy, grants and token bucket.
    fn decide(
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

    fn release(
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
            self.note_unauthorized(caller, tenant, key_version, denial, batch.now_ms);
            return Err(Error::Denied {
                reason: denial.code().into(),
            });
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
                Err(Error::Denied {
                    reason: denial.code().into(),
                })
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

    /// Chains the denial of an authorized caller, within that caller's denial budget. Beyond
    /// it the denial is answered but not chained, so a caller refused in a loop cannot grow
    /// the store; its next chained denial says how many were left out.
    fn append_denial(&mut self, batch: &mut Batch, mut entry: AuditEntry, outcome: &str) {
        entry.event = AuditEvent::Denial;
        entry.outcome = outcome.into();
        match self.denials.admit(&entry.actor, batch.now_ms) {
            None => {
                metrics::counter!("trustee_denials_not_chained_total", "why" => "denial_budget")
                    .increment(1);
                return;
            }
            Some(0) => {}
            Some(left_out) => {
                entry.detail = Some(format!(
                    "{left_out} earlier denials of this caller were answered but not chained (denial budget, limits.denial_log_*)"
                ));
            }
        }
        self.append(batch, entry);
    }

    /// A release refused to a caller that may not ask: nothing goes into any chain. A service
    /// log line (within a per-caller budget, without the caller's free text) and a counter.
    fn note_unauthorized(
        &mut self,
        caller: &PeerIdentity,
        tenant: &str,
        key_version: u32,
        denial: Denial,
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

    fn enroll(
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
        shamir::check_share(metadata, &envelope.share)
            .map_err(|e| Error::Invalid(format!("share: {e}")))?;
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
        };
        batch.mutations.push(Mutation::InsertKey(record.clone()));
        self.keys.insert(slot, record);
        let mut entry = self.entry(
            batch,
            tenant,
            Some(metadata.key_version),
            caller.to_string(),
            AuditEvent::Deposit,
        );
        entry.detail = Some(format!(
            "holder={} x={} fingerprint={} threshold={}-of-{}",
            holder.name,
            holder.x,
            holder.fingerprint,
            metadata.threshold,
            metadata.holders.len()
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

    fn put_policy(
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
        self.policies.insert(tenant.to_owned(), policy);
        // A new rate limit takes effect with a full bucket.
        self.buckets.remove(tenant);
        self.append(batch, entry);
    }

    fn set_policy(
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

    fn request_grant(
        &mut self,
        batch: &mut Batch,
        caller: &PeerIdentity,
        tenant: &str,
        request: GrantRequest,
    ) -> Result<Grant, Error> {
        if caller.role != Role::Operator {
            return Err(Error::Denied {
                reason: Denial::WrongRole.code().into(),
            });
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
        if request.reason.len() > super::wire::MAX_REASON_BYTES {
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

    fn approve_grant(
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
                "grant {grant_id} is {:?}, only a pending grant can be approved",
                grant.state
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

    fn shred(
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
        super::audit::sign_receipt(&self.signing, &mut receipt);
        Ok(receipt)
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
        verify_links(&head.tenant, &entries).map_err(|broken| {
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
    if let Err(broken) = verify_chain(tenant, &log.entries, &signing.public_key()) {
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
