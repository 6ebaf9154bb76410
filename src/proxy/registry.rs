//! The tenants that can sign requests, swappable while the proxy runs.
//!
//! Operators add and remove tenants by editing `tenants_dir` and sending the proxy `SIGHUP`
//! (see [`super::run`]). A reload builds a complete new set first and swaps it in one step,
//! so a request sees either the old set or the new one, never a mix, and a reload that fails
//! to parse leaves the running set untouched.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use super::keys::{CustomerShare, TenantKeys};
use crate::secret::SecretString;

/// One registered tenant.
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// The tenant's S3 access key id.
    pub access_key_id: String,
    /// Key release configuration of the current key version (new objects are written under
    /// it).
    pub keys: TenantKeys,
    /// Older key versions that are still readable (decrypt-only), newest first.
    pub older: Vec<TenantKeys>,
}

impl Tenant {
    /// The keys of `key_version`: the current version or a decrypt-only older one.
    pub fn keys_for(&self, key_version: u32) -> Option<&TenantKeys> {
        std::iter::once(&self.keys)
            .chain(&self.older)
            .find(|k| k.key_id.version == key_version)
    }

    /// The current key version.
    pub fn current_version(&self) -> u32 {
        self.keys.key_id.version
    }

    /// True when the tenant's share travels in the SSE-C headers of each request (rather than
    /// coming from the customer's own holder).
    pub fn needs_sse_c(&self) -> bool {
        matches!(self.keys.customer, CustomerShare::SseC { .. })
    }
}

/// One consistent set of tenants.
struct Snapshot {
    /// Tenants by access key id.
    tenants: HashMap<String, Arc<Tenant>>,
    /// SigV4 secret access keys by access key id (zeroized when the snapshot goes).
    secrets: HashMap<String, SecretString>,
}

/// The current tenant set; cheap to read on every request.
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("tenants", &self.len())
            .finish_non_exhaustive()
    }
}

/// What a reload changed, by tenant id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Tenants that are new.
    pub added: Vec<String>,
    /// Tenants that are gone.
    pub removed: Vec<String>,
    /// Tenants in both sets (their registration may have changed).
    pub kept: usize,
}

impl Registry {
    /// A registry holding `tenants`, each with its SigV4 secret (`None` for a strict tenant,
    /// whose signatures only its holder can check).
    pub fn new(tenants: Vec<(Tenant, Option<String>)>) -> Self {
        Self {
            current: RwLock::new(Arc::new(snapshot(tenants))),
        }
    }

    fn read(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a writer panicked between two whole-Arc assignments;
        // the Arc inside is always a complete set.
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The tenant that owns `access_key`.
    pub fn tenant(&self, access_key: &str) -> Option<Arc<Tenant>> {
        self.read().tenants.get(access_key).cloned()
    }

    /// The SigV4 secret of `access_key`.
    pub fn secret(&self, access_key: &str) -> Option<String> {
        self.read()
            .secrets
            .get(access_key)
            .map(|secret| secret.expose_secret().to_owned())
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.read().tenants.len()
    }

    /// True without tenants.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the whole set at once and reports the difference.
    pub fn replace(&self, tenants: Vec<(Tenant, Option<String>)>) -> ReloadSummary {
        let next = Arc::new(snapshot(tenants));
        let ids = |s: &Snapshot| -> BTreeSet<String> {
            s.tenants.values().map(|t| t.id.clone()).collect()
        };
        let after = ids(&next);
        let before = {
            let mut guard = match self.current.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let before = ids(&guard);
            *guard = next;
            before
        };
        ReloadSummary {
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
            kept: after.intersection(&before).count(),
        }
    }
}

fn snapshot(tenants: Vec<(Tenant, Option<String>)>) -> Snapshot {
    let mut by_key = HashMap::new();
    let mut secrets = HashMap::new();
    for (tenant, secret) in tenants {
        // No entry for a strict tenant: s3s then finds no secret and refuses its signatures,
        // which only `proxy::strict` may accept, after the tenant's holder checked them.
        if let Some(secret) = secret {
            secrets.insert(tenant.access_key_id.clone(), SecretString::from(secret));
        }
        by_key.insert(tenant.access_key_id.clone(), Arc::new(tenant));
    }
    Snapshot {
        tenants: by_key,
        secrets,
    }
}
