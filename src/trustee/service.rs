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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use super::Error;
use super::audit::{AuditEntry, AuditEvent, AuditLog, Checkpoint, GENESIS};
use super::policy::{Clock, Denial, Policy, RateBucket, grant_covers};
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_batch: 1024,
            max_grant_secs: 8 * 3600,
            queue: 8192,
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
    /// [`Error::Store`] if the state cannot be loaded.
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

    fn decide(
        &mut self,
        caller: &PeerIdentity,
        tenant: &str,
        key_version: u32,
        justification: Justification,
        now: u64,
    ) -> Result<Option<String>, Denial> {
        if caller.role != Role::Proxy {
            return Err(Denial::WrongRole);
        }
        let default_policy;
        let policy = match self.policies.get(tenant) {
            Some(policy) => policy,
            None => {
                default_policy = Policy::default();
                &default_policy
            }
        };
        if policy.suspended {
            return Err(Denial::TenantSuspended);
        }
        if !policy.allowed_proxies.contains(&caller.name) {
            return Err(Denial::ProxyNotAllowed);
        }
        if !policy.allowed_justifications.contains(&justification) {
            return Err(Denial::JustificationNotAllowed);
        }
        let grant = if justification == Justification::OperatorMaintenance {
            let live = self
                .grants
                .values()
                .find(|g| g.tenant == tenant && grant_covers(g, key_version, now));
            match live {
                Some(grant) => Some(grant.id.clone()),
                None => return Err(Denial::NoEmergencyGrant),
            }
        } else {
            None
        };
        let limit = policy.rate_limit;
        let bucket = self
            .buckets
            .entry(tenant.to_owned())
            .or_insert_with(|| RateBucket::full(limit, now));
        if !bucket.try_take(limit, now) {
            return Err(Denial::RateLimited);
        }
        Ok(grant)
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
            // No chain exists for an unknown tenant, so this goes to the service log only.
            tracing::info!(tenant, key_version, caller = %caller, "release for an unknown tenant or key version");
            return Err(Error::UnknownTenant);
        };
        let sealed = record.sealed.clone();
        let holder = record.holder.clone();
        let x = record.metadata.holder(&holder).map(|h| h.x);
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
            entry.event = AuditEvent::Denial;
            entry.outcome = "shredded".into();
            self.append(batch, entry);
            return Err(Error::Shredded);
        };
        let x = x.ok_or_else(|| Error::Internal("enrolled holder missing from metadata".into()))?;
        match self.decide(
            caller,
            tenant,
            key_version,
            request.justification,
            batch.now_ms,
        ) {
            Err(denial) => {
                entry.event = AuditEvent::Denial;
                entry.outcome = denial.code().into();
                self.append(batch, entry);
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

/// Checks every stored link, then signs a checkpoint over the head.
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
    // Never vouch for a chain that does not hold: check every link before signing its head.
    let mut prev = GENESIS.to_owned();
    for (index, entry) in log.entries.iter().enumerate() {
        if entry.seq != index as u64 + 1 || entry.prev != prev || entry.compute_hash() != entry.hash
        {
            tracing::error!(
                tenant,
                seq = entry.seq,
                "the stored audit chain is broken; refusing to sign a checkpoint"
            );
            return Err(Error::Store(format!(
                "the stored audit chain of {tenant} is broken at seq {}",
                entry.seq
            )));
        }
        prev = entry.hash.clone();
    }
    if let Some(last) = log.entries.last() {
        log.checkpoint = Some(Checkpoint::sign(
            signing, tenant, last.seq, &last.hash, now_ms,
        ));
    }
    Ok(log)
}
