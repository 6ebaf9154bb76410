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
//! ([`crate::trustee::audit::sign_head`]); at start it refuses a store whose chain heads do not carry
//! its signature, so it never extends or vouches for a chain edited behind its back.
//!
//! Only a caller that may ask writes into a tenant's chain: a release is authorized (a proxy
//! named in the tenant's policy) before any entry is built, and denials of authorized callers
//! are chained within a per-caller budget ([`crate::trustee::policy::DenialLimiter`]).
//!
//! | file | duty |
//! |---|---|
//! | `mod.rs` | the handle ([`Trustee`]), the writer thread, group commit, shared state |
//! | `chain.rs` | the audit chains: loading and checking heads, appending, signing, serving, migrating |
//! | `release.rs` | share release, and the gates every use of a share passes: authorization, the policy decision, denials |
//! | `evaluate.rs` | per-object OPRF evaluation (`/v2`) and the strict tenants' signature checks (evaluate, authorize) |
//! | `custody.rs` | deposit (enrollment), the tenant's policy, shred |
//! | `grants.rs` | emergency grants: request, approval, denial, revocation, expiry, listing |
//! | `lifecycle.rs` | the key lifecycle at this holder: listing key versions, the hand-over of a share to the customer admin, metadata updates after a re-deal |
//! | `revocations.rs` | the in-memory revocation stream the proxies long-poll (`/v1/revocations`) |
//!
//! The duty files extend `Engine` and [`Trustee`] with `impl` blocks and import only from
//! this file, never from each other.

mod chain;
mod custody;
mod evaluate;
mod grants;
mod lifecycle;
mod release;
mod revocations;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

pub use self::chain::migrate_audit;
pub use self::revocations::MAX_WAIT as MAX_REVOCATION_WAIT;
use self::revocations::{PendingEvent, Revocations};
use crate::crypto::seal::SealingKey;
use crate::crypto::sign::SigningKey;
use crate::tls::{PeerIdentity, Role};
use crate::trustee::Error;
use crate::trustee::audit::AuditEntry;
use crate::trustee::policy::{Clock, Denial, DenialLimiter, Policy, RateBucket, RateLimit};
use crate::trustee::store::{AuditReader, KeyRecord, Mutation, Store};
use crate::trustee::wire::{Grant, Justification};

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
pub(super) struct Batch {
    now_ms: u64,
    mutations: Vec<Mutation>,
    replies: Vec<Reply>,
    erase: bool,
    /// Revocation events, published once the batch committed.
    events: Vec<PendingEvent>,
}

/// Handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Trustee {
    tx: mpsc::Sender<Job>,
    public_key: [u8; 32],
    signing: Arc<SigningKey>,
    clock: Arc<dyn Clock>,
    reader: Arc<std::sync::Mutex<Box<dyn AuditReader>>>,
    revocations: Arc<Revocations>,
}

impl std::fmt::Debug for Trustee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trustee")
            .field("public_key", &hex::encode(self.public_key))
            .finish()
    }
}

pub(super) struct Engine {
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
    /// Sealed S3 credentials of the strict tenants whose signatures this holder checks.
    credentials: HashMap<String, Vec<u8>>,
    buckets: HashMap<String, RateBucket>,
    /// Budget of chained denials per authorized caller.
    denials: DenialLimiter,
    /// Budget of service-log lines for callers refused before anything is chained.
    strangers: DenialLimiter,
    /// Where committed revocation events go.
    revocations: Arc<Revocations>,
}

pub(super) fn share_aad(tenant: &str, key_version: u32, x: u8) -> Vec<u8> {
    let mut aad = b"treuhand-trustee-share-v1\0".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&key_version.to_be_bytes());
    aad.push(x);
    aad
}

/// Who asks for which tenant key version, and how a refused caller is treated
/// ([`Engine::admit`]).
#[derive(Clone, Copy)]
pub(super) struct Gate<'a> {
    pub(super) caller: &'a PeerIdentity,
    pub(super) tenant: &'a str,
    pub(super) key_version: u32,
    pub(super) justification: Justification,
    /// Chain the refusal of a proxy that the tenant's policy does not allow (evaluations).
    pub(super) chain_refused_proxies: bool,
}

/// A use of a share that passed every gate: the opened share and the entry to append.
pub(super) struct Admitted {
    pub(super) share: Zeroizing<Vec<u8>>,
    pub(super) x: u8,
    pub(super) holder: String,
    pub(super) entry: AuditEntry,
}

/// Associated data of a strict tenant's sealed S3 credential: bound to the tenant, and apart
/// from every share's.
pub(super) fn credential_aad(tenant: &str) -> Vec<u8> {
    let mut aad = b"treuhand-trustee-sigv4-v1\0".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad
}

pub(super) fn require_admin(caller: &PeerIdentity, tenant: &str) -> Result<(), Error> {
    if caller.role != Role::Customer {
        return Err(Error::Denied(Denial::WrongRole));
    }
    if caller.name != tenant {
        return Err(Error::Denied(Denial::NotTenantAdmin));
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
        let revocations = Arc::new(Revocations::new()?);
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
            credentials: HashMap::new(),
            buckets: HashMap::new(),
            denials: DenialLimiter::new(options.denial_log, options.denial_log_callers),
            strangers: DenialLimiter::new(options.denial_log, options.denial_log_callers),
            revocations: revocations.clone(),
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
            revocations,
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

    /// [`Self::submit`] for work whose answer takes computing after the decision: `early`
    /// (what the decision opened) comes back as soon as the job ran, while its batch is still
    /// being committed, so the caller computes during the fsync instead of after it. The
    /// caller must not answer until [`Committed::wait`] says the batch is durable. A refused
    /// job sends nothing early: its error comes from [`Committed::wait`], after the commit, as
    /// with [`Self::submit`] (a chained denial is answered only once it is durable).
    ///
    /// # Errors
    /// The job's own error or [`Error::AuditUnavailable`], from [`Committed::wait`].
    async fn submit_early<E: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine, &mut Batch) -> Result<E, Error> + Send + 'static,
    ) -> Result<(E, Committed), Error> {
        let (early_tx, early_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move |engine, batch| {
            let result = if engine.poisoned {
                Err(Error::AuditUnavailable)
            } else {
                work(engine, batch)
            };
            let refused = match result {
                Ok(early) => {
                    // Dropped (and zeroized, for a share) at once if the caller is gone.
                    let _ = early_tx.send(early);
                    None
                }
                Err(error) => Some(error),
            };
            batch.replies.push(Box::new(move |committed| {
                let _ = done_tx.send(match refused {
                    _ if !committed => Err(Error::AuditUnavailable),
                    Some(error) => Err(error),
                    None => Ok(()),
                });
            }));
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| Error::AuditUnavailable)?;
        let committed = Committed(done_rx);
        match early_rx.await {
            Ok(early) => Ok((early, committed)),
            Err(_) => {
                committed.wait().await?;
                // A job that sent nothing early was refused, and wait() returns its error;
                // Ok here would mean a lost job: fail closed.
                Err(Error::AuditUnavailable)
            }
        }
    }

    /// Whether the engine is running and its store usable.
    pub async fn ready(&self) -> bool {
        self.submit(|_, _| Ok(())).await.is_ok()
    }
}

/// The commit of a job submitted with [`Trustee::submit_early`].
#[must_use = "nothing may be answered before the commit is known"]
struct Committed(oneshot::Receiver<Result<(), Error>>);

impl Committed {
    /// Waits until the job's batch was committed.
    ///
    /// # Errors
    /// The job's refusal once it is durable, or [`Error::AuditUnavailable`] if the batch was
    /// not committed (or the writer is gone).
    async fn wait(self) -> Result<(), Error> {
        self.0.await.map_err(|_| Error::AuditUnavailable)?
    }
}

impl Engine {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = Batch {
                now_ms: self.clock.now_ms(),
                mutations: Vec::new(),
                replies: Vec::new(),
                erase: false,
                events: Vec::new(),
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
            if committed {
                // Before the replies: a caller that got its answer (a shred) finds the event
                // already in the stream.
                self.revocations.publish(std::mem::take(&mut batch.events));
            }
            metrics::histogram!("trustee_group_commit_jobs").record(jobs as f64);
            for reply in batch.replies {
                reply(committed);
            }
        }
    }

    /// Queues a revocation event for `tenant`, visible to the proxies its policy allows now
    /// and to `also` (those it allowed before the change).
    fn revoke(
        &self,
        batch: &mut Batch,
        tenant: &str,
        key_version: Option<u32>,
        kind: crate::trustee::wire::RevocationKind,
        also: &[String],
    ) {
        let mut proxies: std::collections::BTreeSet<String> = also.iter().cloned().collect();
        if let Some(policy) = self.policies.get(tenant) {
            proxies.extend(policy.allowed_proxies.iter().cloned());
        }
        batch.events.push(PendingEvent {
            tenant: tenant.to_owned(),
            key_version,
            kind,
            proxies,
        });
    }

    fn require_tenant(&self, tenant: &str) -> Result<(), Error> {
        if self.keys.keys().any(|(t, _)| t == tenant) {
            Ok(())
        } else {
            Err(Error::UnknownTenant)
        }
    }
}
