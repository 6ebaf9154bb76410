//! The bounded key cache: object KEKs (OPRF tenant keys) and tenant KEKs (legacy ones), keyed
//! so that a request without the right customer share never finds an entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::{digest, hmac};

use crate::crypto::KeyId;
use crate::crypto::oprf::ObjectIdentity;
use crate::secret::Kek;

/// What one cache entry is the key of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Scope {
    /// A legacy tenant KEK: every object of the tenant key.
    Tenant,
    /// One object: SHA-256 of its identity encoding `x`.
    Object([u8; 32]),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    pub(super) key: KeyId,
    pub(super) scope: Scope,
    /// A digest of the customer share (SSE-C), or empty for holder tenants.
    pub(super) customer: Vec<u8>,
}

struct Entry {
    kek: Arc<Kek>,
    /// The object, for [`Held`] (absent for a tenant KEK).
    identity: Option<ObjectIdentity>,
    inserted: Instant,
}

/// One key the process holds ([`super::KeyService::holdings`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Held {
    /// A legacy tenant KEK: opens every v1/v2 object of the tenant key.
    Tenant(KeyId, Arc<Kek>),
    /// The KEK of one object (format v3).
    Object(ObjectIdentity, Arc<Kek>),
}

/// The cache with its bounds and its per-process share digest key.
pub(super) struct Cache {
    entries: Mutex<HashMap<CacheKey, Entry>>,
    ttl: Duration,
    max_entries: usize,
    /// Keys the digest of SSE-C shares in cache keys. Random per process and never exported,
    /// so a cache key says nothing about the share it was made from. `None` if the RNG
    /// failed: the cache is then off.
    share_mac: Option<hmac::Key>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(super) fn new(ttl: Duration, max_entries: usize) -> Self {
        let share_mac = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| tracing::error!("the RNG failed; the key cache is off"))
            .ok();
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max_entries,
            share_mac,
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max_entries > 0 && self.share_mac.is_some()
    }

    /// The keyed digest of a customer share for a cache key (empty when the cache is off).
    pub(super) fn share_digest(&self, share: &[u8]) -> Vec<u8> {
        match &self.share_mac {
            Some(key) => hmac::sign(key, share).as_ref().to_vec(),
            None => Vec::new(),
        }
    }

    /// The cache scope of one object.
    pub(super) fn object_scope(encoded_identity: &[u8]) -> Scope {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, encoded_identity).as_ref());
        Scope::Object(out)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub(super) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    pub(super) fn holdings(&self) -> Vec<Held> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        entries
            .iter()
            .map(|(key, entry)| match &entry.identity {
                Some(identity) => Held::Object(identity.clone(), entry.kek.clone()),
                None => Held::Tenant(key.key.clone(), entry.kek.clone()),
            })
            .collect()
    }

    /// The cached KEK for `key`, counting the hit or miss.
    pub(super) fn lookup(&self, key: &CacheKey) -> Option<Arc<Kek>> {
        let found = self.find(key);
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("treuhand_key_cache_total", "result" => result).increment(1);
        found
    }

    fn find(&self, key: &CacheKey) -> Option<Arc<Kek>> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some(entry) if entry.inserted.elapsed() < self.ttl => Some(entry.kek.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches `kek`, evicting expired entries and then the oldest ones beyond the bound.
    pub(super) fn insert(&self, key: CacheKey, kek: Arc<Kek>, identity: Option<ObjectIdentity>) {
        if !self.enabled() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let ttl = self.ttl;
        entries.retain(|_, e| e.inserted.elapsed() < ttl);
        while entries.len() >= self.max_entries {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.inserted)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    entries.remove(&k);
                }
                None => break,
            }
        }
        entries.insert(
            key,
            Entry {
                kek,
                identity,
                inserted: Instant::now(),
            },
        );
    }
}
