//! Object keys: ask the trustees (and the customer's holder) for their part, check it, combine,
//! and keep the result in a small bounded cache.
//!
//! Two paths, one per [`KeyScheme`] of the tenant key version:
//!
//! - [`KeyScheme::Oprf`] ([`KeyService::object_kek`], in [`evaluate`]): every object has its own
//!   key-encryption key `HKDF(k·H(x), x)` for its identity `x`. Each holder evaluates its share
//!   on `H(x)` and proves it; the proxy checks every proof and combines in the exponent. The
//!   tenant key is never reassembled, and the proxy only ever learns the keys of the objects
//!   it is asked about.
//! - [`KeyScheme::ShamirTmk`] ([`KeyService::kek`], in [`legacy`]): the tenant master key is
//!   rebuilt from released shares and one tenant KEK derived from it (format v1/v2 objects of
//!   tenants registered before per-object keys).
//!
//! # Security
//!
//! - The customer's part is always required: trustees alone never reach the threshold in
//!   this code, even when k of the trustees could (and tenant validation refuses such
//!   thresholds unless the customer allowed them).
//! - Every SSE-C share is checked against the registered metadata (`K_c` for OPRF keys, the
//!   fingerprint for legacy ones) before a key is derived and cached with it, and the cache
//!   key contains a digest of it, so a request without the right share can never hit the
//!   cache. (Legacy keys check before the lookup; OPRF keys look up first and check on a miss,
//!   which saves a scalar multiplication per cached request and admits the same shares.) For OPRF keys
//!   that digest is an HMAC under a random per-process key: the cache key reveals nothing about
//!   the share, even to someone who reads the process memory but not that key.
//! - The cache holds object KEKs (OPRF) or tenant KEKs (legacy), never shares or tenant keys.
//!   Cached KEKs are `Arc<Kek>`; `Kek` zeroizes on drop, so an evicted entry is wiped as soon as
//!   the last request using it finishes.

mod cache;
mod evaluate;
mod legacy;

use std::sync::Arc;
use std::time::Duration;

use self::cache::Cache;
use super::error::{Cause, ProxyError};
use crate::crypto::oprf::ObjectIdentity;
use crate::crypto::{KeyId, KeyMetadata, KeyScheme};
use crate::secret::{Kek, Share};
use crate::trustee::wire::SignedRequest;

pub use self::cache::Held;

/// What the proxy tells a share holder about a release (logged by the holder).
#[derive(Debug, Clone)]
pub struct ReleaseContext {
    /// The proxy's request id.
    pub request_id: String,
    /// Bucket and object concerned, if any.
    pub object: Option<(String, String)>,
    /// Free-text reason (S3 operation name).
    pub reason: String,
    /// For a strict tenant: the customer's signed request, forwarded with every evaluation so
    /// that the signature-checking holder can check it (`proxy::strict`).
    pub signed: Option<Arc<SignedRequest>>,
}

/// Why a holder did not release its share.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// Not reachable in time.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Refused by policy, with the holder's reason code.
    #[error("denied: {reason}")]
    Denied {
        /// Machine reason code.
        reason: String,
    },
    /// The key was shredded.
    #[error("the key was shredded")]
    Shredded,
    /// The holder does not know this tenant key.
    #[error("unknown tenant or key version")]
    UnknownTenant,
    /// Anything else outside the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Something that releases one holder's share: a trustee, or the customer's own holder.
#[async_trait::async_trait]
pub trait ShareSource: Send + Sync {
    /// Asks for the share of `tenant` / `key_version`.
    async fn release(
        &self,
        tenant: &str,
        key_version: u32,
        context: &ReleaseContext,
    ) -> Result<Share, ReleaseError>;

    /// Asks the holder to evaluate its share of an OPRF tenant key on one object
    /// (`POST /v2/.../evaluate`). The answer is unverified: the caller checks its proof.
    async fn evaluate(
        &self,
        tenant: &str,
        key_version: u32,
        request: &crate::trustee::wire::EvaluateRequest,
    ) -> Result<crate::crypto::oprf::Evaluation, ReleaseError> {
        let _ = (tenant, key_version, request);
        Err(ReleaseError::Protocol("this holder cannot evaluate".into()))
    }

    /// Asks the holder to check (and log) a strict tenant's signed request
    /// (`POST /v2/tenants/{t}/authorize`).
    async fn authorize(
        &self,
        tenant: &str,
        request: &crate::trustee::wire::AuthorizeRequest,
    ) -> Result<(), ReleaseError> {
        let _ = (tenant, request);
        Err(ReleaseError::Protocol(
            "this holder cannot check signatures".into(),
        ))
    }
}

/// A named share source of one tenant.
#[derive(Clone)]
pub struct Holder {
    /// Holder name in the key metadata.
    pub name: String,
    /// Where to ask.
    pub source: Arc<dyn ShareSource>,
}

/// How a tenant's customer share arrives.
#[derive(Clone)]
pub enum CustomerShare {
    /// In the SSE-C headers of each request.
    SseC {
        /// Holder name of the customer.
        holder: String,
    },
    /// From the customer-run holder.
    Holder(Holder),
}

/// Everything the proxy needs to derive one tenant's keys.
#[derive(Clone)]
pub struct TenantKeys {
    /// Public metadata (scheme, holders, threshold, commitment or public keys).
    pub metadata: KeyMetadata,
    /// The tenant key id.
    pub key_id: KeyId,
    /// The customer share's origin.
    pub customer: CustomerShare,
    /// The trustees.
    pub trustees: Vec<Holder>,
}

/// The key service with its cache.
pub struct KeyService {
    cache: Cache,
    timeout: Duration,
    /// The holders' public keys, parsed once.
    registered: evaluate::RegisteredKeys,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("cache", &self.cache)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl KeyService {
    /// A key service with the given cache bounds and per-holder timeout.
    ///
    /// If the system RNG cannot key the share digest, the cache stays off (every request asks
    /// the holders): slower, never less safe.
    pub fn new(ttl: Duration, max_entries: usize, timeout: Duration) -> Self {
        Self {
            cache: Cache::new(ttl, max_entries),
            timeout,
            registered: evaluate::RegisteredKeys::default(),
        }
    }

    /// Number of cached keys (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Drops every cached key.
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// Caps the cache TTL of the tenants named by [`KeyService::set_fallback_tenants`] at
    /// `fallback` (never above the configured TTL). Without this call the cap is one second.
    #[must_use]
    pub fn with_fallback_ttl(mut self, fallback: Duration) -> Self {
        self.cache.set_fallback_ttl(fallback);
        self
    }

    /// Drops every cached key of `tenant` (every key version and share), at once: a revocation
    /// event named it (shred, hand-over, policy change, grant revoked). Keys being derived
    /// for it right now are used for their request and not cached. Returns how many went.
    pub fn forget_tenant(&self, tenant: &str) -> usize {
        self.cache.forget_tenant(tenant)
    }

    /// The tenants whose cached keys live at most the fallback TTL from now on (one of their
    /// holders' revocation streams is down), replacing the previous set.
    pub fn set_fallback_tenants(&self, tenants: std::collections::HashSet<String>) {
        self.cache.set_fallback_tenants(tenants);
    }

    /// Test support: caches a key for version `version` of `tenant` (an OPRF object scope
    /// without customer digest) as a release would.
    #[cfg(test)]
    pub(crate) fn cache_for_test(&self, tenant: &str, version: u32) {
        if let Ok(key_id) = KeyId::new(tenant, version) {
            let key = cache::CacheKey {
                key: key_id,
                scope: cache::Scope::Tenant,
                customer: Vec::new(),
            };
            if let Err(ticket) = self.cache.lookup(&key) {
                self.cache
                    .insert(key, Arc::new(Kek::from_bytes([7; 32])), None, ticket);
            }
        }
    }

    /// Test support: whether the key [`KeyService::cache_for_test`] cached would be served now.
    #[cfg(test)]
    pub(crate) fn serves_for_test(&self, tenant: &str, version: u32) -> bool {
        KeyId::new(tenant, version).is_ok_and(|key_id| {
            self.cache.serves(&cache::CacheKey {
                key: key_id,
                scope: cache::Scope::Tenant,
                customer: Vec::new(),
            })
        })
    }

    /// Everything this process holds that opens objects: each cached key with what it is the
    /// key of. For the subverted-proxy tests: a proxy process that is taken over knows exactly
    /// this (besides the requests in flight), so these keys must open the objects it handled
    /// and nothing else.
    #[doc(hidden)]
    pub fn holdings(&self) -> Vec<Held> {
        self.cache.holdings()
    }

    /// Releases a legacy ([`KeyScheme::ShamirTmk`]) tenant's KEK for one request.
    ///
    /// `sse_c` is the raw 32-byte customer share from the request, if any.
    ///
    /// # Errors
    /// [`ProxyError::MissingShare`], [`ProxyError::MalformedShare`], [`ProxyError::WrongShare`]
    /// (client), [`ProxyError::Unavailable`] (503), [`ProxyError::Denied`] (403),
    /// [`ProxyError::BadGateway`] (502), [`ProxyError::KeyMismatch`] for an OPRF tenant key
    /// (it has no tenant KEK).
    pub async fn kek(
        &self,
        tenant: &TenantKeys,
        sse_c: Option<&[u8]>,
        context: &ReleaseContext,
    ) -> Result<Arc<Kek>, ProxyError> {
        if tenant.metadata.scheme != KeyScheme::ShamirTmk {
            return Err(ProxyError::KeyMismatch(format!(
                "key version {} of tenant {} is a per-object (OPRF) key and has no tenant key",
                tenant.key_id.version, tenant.key_id.tenant
            )));
        }
        legacy::kek(self, tenant, sse_c, context).await
    }

    /// Derives the KEK of one object of an OPRF ([`KeyScheme::Oprf`]) tenant key.
    ///
    /// `sse_c` is the raw 32-byte customer share from the request, if any; it is checked
    /// against `K_c`, evaluated locally and dropped. Every trustee (and the customer's holder)
    /// is asked to evaluate on `identity` at once; the first answers that reach the registered
    /// threshold together with the customer's are checked (DLEQ) and combined. A strict
    /// tenant's signed request (`context.signed`) goes with every evaluation.
    ///
    /// # Errors
    /// As [`KeyService::kek`]; [`ProxyError::BadGateway`] naming a holder whose evaluation
    /// does not verify (no key is derived then); [`ProxyError::KeyMismatch`] for a legacy
    /// tenant key or an identity of another tenant key.
    pub async fn object_kek(
        &self,
        tenant: &TenantKeys,
        sse_c: Option<&[u8]>,
        identity: &ObjectIdentity,
        context: &ReleaseContext,
    ) -> Result<Arc<Kek>, ProxyError> {
        if tenant.metadata.scheme != KeyScheme::Oprf {
            return Err(ProxyError::KeyMismatch(format!(
                "key version {} of tenant {} is a legacy tenant key; it has no per-object keys",
                tenant.key_id.version, tenant.key_id.tenant
            )));
        }
        if identity.tenant != tenant.key_id.tenant || identity.key_version != tenant.key_id.version
        {
            return Err(ProxyError::KeyMismatch(format!(
                "the object is under key version {} of tenant {}, the registered key is version {} of tenant {}",
                identity.key_version, identity.tenant, tenant.key_id.version, tenant.key_id.tenant
            )));
        }
        evaluate::object_kek(self, tenant, sse_c, identity, context).await
    }
}

/// True when `raw` (an SSE-C key) is the customer's share of the key version `tenant`: what
/// the proxy looks at only after the current version refused a share, to say which version it
/// belongs to. One scalar multiplication (OPRF) or one fingerprint (legacy); never cached.
pub fn is_customer_share_of(tenant: &TenantKeys, raw: &[u8]) -> bool {
    let CustomerShare::SseC { holder } = &tenant.customer else {
        return false;
    };
    match tenant.metadata.scheme {
        KeyScheme::Oprf => evaluate::customer_key_share(&tenant.metadata, holder, raw, |x| {
            crate::crypto::scheme::holder_key(&tenant.metadata, x).ok()
        })
        .is_ok(),
        KeyScheme::ShamirTmk => {
            crate::crypto::shamir::share_from_raw(&tenant.metadata, holder, raw).is_ok_and(
                |share| crate::crypto::shamir::check_share(&tenant.metadata, &share).is_ok(),
            )
        }
    }
}

/// The name the customer's part comes under (its holder name in the metadata).
fn customer_name(tenant: &TenantKeys) -> &str {
    match &tenant.customer {
        CustomerShare::SseC { holder } => holder,
        CustomerShare::Holder(h) => &h.name,
    }
}

/// The holders to ask: every trustee, and the customer's holder if it has one.
fn holders_to_ask(tenant: &TenantKeys) -> Vec<Holder> {
    let mut holders: Vec<Holder> = tenant.trustees.clone();
    if let CustomerShare::Holder(h) = &tenant.customer {
        holders.push(h.clone());
    }
    holders
}

/// Counts and logs one holder's failure under a fixed label set: a denial's reason text comes
/// from the holder, and a customer-run holder may send anything (one series per distinct text).
fn record_failure(name: &str, e: &ReleaseError) {
    let reason: &'static str = match e {
        ReleaseError::Denied { .. } => "denied",
        ReleaseError::Unreachable(_) => "unreachable",
        ReleaseError::Shredded => "shredded",
        ReleaseError::UnknownTenant => "unknown_tenant",
        ReleaseError::Protocol(_) => "protocol",
    };
    metrics::counter!("treuhand_releases_total", "holder" => name.to_owned(), "result" => reason)
        .increment(1);
    tracing::warn!(holder = %name, error = %e, "key holder request failed");
}

/// Picks the error the client sees when too few shares came in. The holder's own error stays
/// attached as the cause, for the log.
fn classify(customer: &str, failures: &[(String, ReleaseError)]) -> ProxyError {
    // The customer's own holder decides first: its refusal is the customer's refusal.
    let ordered = failures
        .iter()
        .filter(|(n, _)| n == customer)
        .chain(failures.iter().filter(|(n, _)| n != customer));
    let mut unreachable = None;
    let mut other = None;
    for (name, e) in ordered {
        let cause = || -> Option<Cause> { Some(Box::new(e.clone())) };
        match e {
            ReleaseError::Denied { reason } => {
                let message = format!("{name}: {reason}");
                return ProxyError::Denied {
                    message,
                    cause: cause(),
                };
            }
            ReleaseError::Shredded => {
                let message = format!("{name}: key_shredded");
                return ProxyError::Denied {
                    message,
                    cause: cause(),
                };
            }
            ReleaseError::Unreachable(_) => {
                unreachable.get_or_insert_with(|| ProxyError::Unavailable {
                    message: format!("{name} is unreachable"),
                    cause: cause(),
                });
            }
            ReleaseError::UnknownTenant => {
                other.get_or_insert_with(|| ProxyError::BadGateway {
                    message: format!("{name} does not know this tenant key"),
                    cause: cause(),
                });
            }
            ReleaseError::Protocol(_) => {
                other.get_or_insert_with(|| ProxyError::BadGateway {
                    message: format!("{name} answered outside the protocol"),
                    cause: cause(),
                });
            }
        }
    }
    unreachable
        .or(other)
        .unwrap_or_else(|| ProxyError::Unavailable {
            message: "not enough key holders answered".into(),
            cause: None,
        })
}

#[cfg(test)]
mod oprf_tests;
#[cfg(test)]
mod tests;
