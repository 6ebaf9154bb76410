//! The bounded key cache: object KEKs (OPRF tenant keys) and tenant KEKs (legacy ones), keyed
//! so that a request without the right customer share never finds an entry.
//!
//! Entries leave by age (the configured TTL, or the short fallback TTL for tenants whose
//! revocation stream is down: [`Cache::set_fallback_tenants`]), by the bound, or at once when
//! a revocation names their tenant ([`Cache::forget_tenant`]). A key whose derivation started
//! before such a forget is not cached when it arrives afterwards ([`Ticket`]), so a release
//! that raced a shred cannot put the shredded key back for a whole TTL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
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

/// Permission to cache a key whose derivation starts now: valid until the next forget
/// ([`Cache::forget_tenant`], [`Cache::clear`]). Handed out by a [`Cache::lookup`] miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket(u64);

/// The entries and the forget generation, under one lock.
#[derive(Default)]
struct Entries {
    map: HashMap<CacheKey, Entry>,
    /// Bumped by every forget; an insert whose ticket is older is dropped. One counter for all
    /// tenants: revocations are rare, and a spurious miss is only slower.
    generation: u64,
}

/// The cache with its bounds and its per-process share digest key.
pub(super) struct Cache {
    entries: Mutex<Entries>,
    ttl: Duration,
    max_entries: usize,
    /// The TTL cap for the tenants in `fallback_tenants`.
    fallback_ttl: Duration,
    /// Tenants one of whose holders' revocation stream is down: their entries live at most
    /// `fallback_ttl`, so a shred the proxy did not hear about still takes effect quickly.
    fallback_tenants: RwLock<HashSet<String>>,
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
            .field("fallback_ttl", &self.fallback_ttl)
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(super) fn new(ttl: Duration, max_entries: usize) -> Self {
        let share_mac = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| tracing::error!("the RNG failed; the key cache is off"))
            .ok();
        Self {
            entries: Mutex::new(Entries::default()),
            ttl,
            max_entries,
            fallback_ttl: ttl.min(Duration::from_secs(1)),
            fallback_tenants: RwLock::new(HashSet::new()),
            share_mac,
        }
    }

    /// Sets the TTL cap of tenants whose revocation stream is down.
    pub(super) fn set_fallback_ttl(&mut self, fallback: Duration) {
        self.fallback_ttl = fallback.min(self.ttl);
    }

    /// Replaces the set of tenants whose entries live at most the fallback TTL.
    pub(super) fn set_fallback_tenants(&self, tenants: HashSet<String>) {
        match self.fallback_tenants.write() {
            Ok(mut guard) => *guard = tenants,
            Err(poisoned) => *poisoned.into_inner() = tenants,
        }
    }

    /// The TTL that applies to `tenant`'s entries now.
    fn ttl_of(&self, tenant: &str) -> Duration {
        let capped = match self.fallback_tenants.read() {
            Ok(set) => set.contains(tenant),
            // Fail short: a poisoned set means we do not know the stream is up.
            Err(_) => true,
        };
        if capped { self.fallback_ttl } else { self.ttl }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A poisoned lock only means a panic between two map operations; the map is whole.
        match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
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
        self.lock().map.len()
    }

    pub(super) fn clear(&self) {
        let mut entries = self.lock();
        entries.map.clear();
        entries.generation += 1;
    }

    /// Drops every entry of `tenant` (every key version), and keeps keys whose derivation is
    /// in flight from being cached. Returns how many entries went.
    pub(super) fn forget_tenant(&self, tenant: &str) -> usize {
        let mut entries = self.lock();
        let before = entries.map.len();
        entries.map.retain(|key, _| key.key.tenant != tenant);
        entries.generation += 1;
        before - entries.map.len()
    }

    pub(super) fn holdings(&self) -> Vec<Held> {
        let entries = self.lock();
        entries
            .map
            .iter()
            .map(|(key, entry)| match &entry.identity {
                Some(identity) => Held::Object(identity.clone(), entry.kek.clone()),
                None => Held::Tenant(key.key.clone(), entry.kek.clone()),
            })
            .collect()
    }

    /// The cached KEK for `key`, counting the hit or miss; a miss hands out the [`Ticket`] to
    /// cache the key derived next.
    pub(super) fn lookup(&self, key: &CacheKey) -> Result<Arc<Kek>, Ticket> {
        let found = self.find(key);
        let result = if found.is_ok() { "hit" } else { "miss" };
        metrics::counter!("treuhand_key_cache_total", "result" => result).increment(1);
        found
    }

    fn find(&self, key: &CacheKey) -> Result<Arc<Kek>, Ticket> {
        let ttl = self.ttl_of(&key.key.tenant);
        let mut entries = self.lock();
        let ticket = Ticket(entries.generation);
        if !self.enabled() {
            return Err(ticket);
        }
        match entries.map.get(key) {
            Some(entry) if entry.inserted.elapsed() < ttl => Ok(entry.kek.clone()),
            Some(_) => {
                entries.map.remove(key);
                Err(ticket)
            }
            None => Err(ticket),
        }
    }

    /// Whether a lookup of `key` would hit now (tests; counts nothing).
    #[cfg(test)]
    pub(super) fn serves(&self, key: &CacheKey) -> bool {
        self.find(key).is_ok()
    }

    /// Caches `kek` unless a forget happened since `ticket` was handed out, evicting expired
    /// entries and then the oldest ones beyond the bound.
    pub(super) fn insert(
        &self,
        key: CacheKey,
        kek: Arc<Kek>,
        identity: Option<ObjectIdentity>,
        ticket: Ticket,
    ) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.lock();
        if entries.generation != ticket.0 {
            // A revocation or reload came in while this key was derived: the holders may have
            // answered before it, so the key is used for this request only.
            return;
        }
        let ttl = self.ttl;
        entries.map.retain(|_, e| e.inserted.elapsed() < ttl);
        while entries.map.len() >= self.max_entries {
            let oldest = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.inserted)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    entries.map.remove(&k);
                }
                None => break,
            }
        }
        entries.map.insert(
            key,
            Entry {
                kek,
                identity,
                inserted: Instant::now(),
            },
        );
    }
}
