//! Key release: ask the trustees (and the customer's holder) for shares, combine, verify the
//! commitment, derive the KEK, and keep it in a small bounded cache.
//!
//! # Security
//!
//! - The customer's share is always required: trustees alone never reach the threshold in
//!   this code path, even when k of the trustees could.
//! - The cache key contains the customer share's fingerprint, and every SSE-C share is checked
//!   against the registered fingerprint before the cache is consulted, so a request without
//!   the right share can never hit it.
//! - Cached KEKs are `Arc<Kek>`; `Kek` zeroizes on drop, so an evicted entry is wiped as soon
//!   as the last request using it finishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::error::{Cause, ProxyError};
use crate::crypto::{KeyId, KeyMetadata, envelope, shamir};
use crate::secret::{Kek, Share};

/// What the proxy tells a share holder about a release (logged by the holder).
#[derive(Debug, Clone)]
pub struct ReleaseContext {
    /// The proxy's request id.
    pub request_id: String,
    /// Bucket and object concerned, if any.
    pub object: Option<(String, String)>,
    /// Free-text reason (S3 operation name).
    pub reason: String,
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

/// Everything the proxy needs to release one tenant's key.
#[derive(Clone)]
pub struct TenantKeys {
    /// Public metadata (commitment, holders, threshold).
    pub metadata: KeyMetadata,
    /// The tenant key id.
    pub key_id: KeyId,
    /// The customer share's origin.
    pub customer: CustomerShare,
    /// The trustees.
    pub trustees: Vec<Holder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    key: KeyId,
    /// Fingerprint of the customer share (SSE-C), or empty for holder tenants.
    customer: Vec<u8>,
}

struct Entry {
    kek: Arc<Kek>,
    inserted: Instant,
}

/// The key release service with its cache.
pub struct KeyService {
    cache: Mutex<HashMap<CacheKey, Entry>>,
    ttl: Duration,
    max_entries: usize,
    timeout: Duration,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

type Released = (String, Result<Share, ReleaseError>);

impl KeyService {
    /// A key service with the given cache bounds and per-holder timeout.
    pub fn new(ttl: Duration, max_entries: usize, timeout: Duration) -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
            ttl,
            max_entries,
            timeout,
        }
    }

    /// Number of cached keys (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Drops every cached key.
    pub fn clear(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    fn lookup(&self, key: &CacheKey) -> Option<Arc<Kek>> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut cache = self.cache.lock().ok()?;
        match cache.get(key) {
            Some(entry) if entry.inserted.elapsed() < self.ttl => Some(entry.kek.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: CacheKey, kek: Arc<Kek>) {
        if self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let ttl = self.ttl;
        cache.retain(|_, e| e.inserted.elapsed() < ttl);
        while cache.len() >= self.max_entries {
            let oldest = cache
                .iter()
                .min_by_key(|(_, e)| e.inserted)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    cache.remove(&k);
                }
                None => break,
            }
        }
        cache.insert(
            key,
            Entry {
                kek,
                inserted: Instant::now(),
            },
        );
    }

    /// Releases the tenant's KEK for one request.
    ///
    /// `sse_c` is the raw 32-byte customer share from the request, if any.
    ///
    /// # Errors
    /// [`ProxyError::MissingShare`], [`ProxyError::MalformedShare`], [`ProxyError::WrongShare`]
    /// (client), [`ProxyError::Unavailable`] (503), [`ProxyError::Denied`] (403),
    /// [`ProxyError::BadGateway`] (502).
    pub async fn kek(
        &self,
        tenant: &TenantKeys,
        sse_c: Option<&[u8]>,
        context: &ReleaseContext,
    ) -> Result<Arc<Kek>, ProxyError> {
        let metadata = &tenant.metadata;
        let customer_share = match (&tenant.customer, sse_c) {
            (CustomerShare::SseC { .. }, None) => return Err(ProxyError::MissingShare),
            (CustomerShare::SseC { holder }, Some(raw)) => {
                let share = shamir::share_from_raw(metadata, holder, raw)
                    .map_err(|_| ProxyError::MalformedShare("the SSE-C key must be 32 bytes"))?;
                shamir::check_share(metadata, &share).map_err(|_| ProxyError::WrongShare)?;
                Some(share)
            }
            // A holder tenant ignores SSE-C headers: its share comes from its holder.
            (CustomerShare::Holder(_), _) => None,
        };
        let cache_key = CacheKey {
            key: tenant.key_id.clone(),
            customer: customer_share
                .as_ref()
                .map(|s| shamir::fingerprint(&tenant.key_id, s).to_vec())
                .unwrap_or_default(),
        };
        if let Some(kek) = self.lookup(&cache_key) {
            metrics::counter!("treuhand_key_cache_total", "result" => "hit").increment(1);
            return Ok(kek);
        }
        metrics::counter!("treuhand_key_cache_total", "result" => "miss").increment(1);

        let kek = Arc::new(self.release(tenant, customer_share, context).await?);
        self.insert(cache_key, kek.clone());
        Ok(kek)
    }

    async fn release(
        &self,
        tenant: &TenantKeys,
        customer_share: Option<Share>,
        context: &ReleaseContext,
    ) -> Result<Kek, ProxyError> {
        let metadata = &tenant.metadata;
        let need = usize::from(metadata.threshold);
        let customer_name = match &tenant.customer {
            CustomerShare::SseC { holder } => holder.clone(),
            CustomerShare::Holder(h) => h.name.clone(),
        };
        let mut asks: FuturesUnordered<_> = FuturesUnordered::new();
        let mut holders: Vec<Holder> = tenant.trustees.clone();
        if let CustomerShare::Holder(h) = &tenant.customer {
            holders.push(h.clone());
        }
        for holder in holders {
            let tenant_id = tenant.key_id.tenant.clone();
            let version = tenant.key_id.version;
            let context = context.clone();
            let timeout = self.timeout;
            asks.push(async move {
                let started = Instant::now();
                let result = tokio::time::timeout(
                    timeout,
                    holder.source.release(&tenant_id, version, &context),
                )
                .await
                .unwrap_or_else(|_| Err(ReleaseError::Unreachable("timed out".into())));
                metrics::histogram!("treuhand_phase_seconds", "phase" => "trustee_round_trip")
                    .record(started.elapsed().as_secs_f64());
                (holder.name, result)
            });
        }

        let mut shares: Vec<Share> = customer_share.into_iter().collect();
        let mut have_customer = !shares.is_empty();
        let mut failures: Vec<(String, ReleaseError)> = Vec::new();
        while !(have_customer && shares.len() >= need) {
            let Some((name, result)): Option<Released> = asks.next().await else {
                break;
            };
            match result {
                Ok(share) => {
                    let registered = metadata.holder(&name).map(|h| h.x);
                    if registered != Some(share.x())
                        || shamir::check_share(metadata, &share).is_err()
                    {
                        tracing::error!(holder = %name, "holder released a share that does not match its fingerprint");
                        failures.push((
                            name,
                            ReleaseError::Protocol("released share does not match".into()),
                        ));
                        continue;
                    }
                    metrics::counter!("treuhand_releases_total", "holder" => name.clone(), "result" => "released")
                        .increment(1);
                    if name == customer_name {
                        have_customer = true;
                    }
                    shares.push(share);
                }
                Err(e) => {
                    // A fixed label set: a denial's reason text comes from the holder, and
                    // a customer-run holder may send anything (one series per distinct text).
                    let reason: &'static str = match &e {
                        ReleaseError::Denied { .. } => "denied",
                        ReleaseError::Unreachable(_) => "unreachable",
                        ReleaseError::Shredded => "shredded",
                        ReleaseError::UnknownTenant => "unknown_tenant",
                        ReleaseError::Protocol(_) => "protocol",
                    };
                    metrics::counter!("treuhand_releases_total", "holder" => name.clone(), "result" => reason)
                        .increment(1);
                    tracing::warn!(holder = %name, error = %e, "share release failed");
                    failures.push((name, e));
                }
            }
        }
        if !asks.is_empty() {
            // Let the slower holders' answers arrive in the background instead of cancelling
            // them: a cancelled request tears down its pooled keep-alive connection, and the next
            // release to that holder would pay a fresh mTLS handshake. Their shares are dropped
            // (and zeroized) unused.
            tokio::spawn(async move { while asks.next().await.is_some() {} });
        }
        if !(have_customer && shares.len() >= need) {
            return Err(classify(&customer_name, &failures));
        }
        // The customer's share first, then trustees: combine uses the first k.
        shares
            .sort_by_key(|s| u8::from(metadata.holder(&customer_name).map(|h| h.x) != Some(s.x())));
        let started = Instant::now();
        let refs: Vec<&Share> = shares.iter().take(need).collect();
        let tmk = shamir::combine(metadata, &refs).map_err(|e| {
            tracing::error!(error = %e, "combining released shares failed");
            ProxyError::BadGateway {
                message: "released shares do not combine to the committed key".into(),
                cause: Some(Box::new(e)),
            }
        })?;
        let kek = envelope::derive_kek(&tmk, &tenant.key_id).map_err(ProxyError::Crypto)?;
        metrics::histogram!("treuhand_phase_seconds", "phase" => "combine_verify")
            .record(started.elapsed().as_secs_f64());
        Ok(kek)
    }
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
mod tests {
    use super::*;
    use crate::crypto::shamir;
    use crate::secret::ShareValue;

    struct Fixed(Result<[u8; 33], ReleaseError>);

    #[async_trait::async_trait]
    impl ShareSource for Fixed {
        async fn release(
            &self,
            _: &str,
            _: u32,
            _: &ReleaseContext,
        ) -> Result<Share, ReleaseError> {
            let raw = self.0.clone()?;
            let mut y = [0u8; 32];
            y.copy_from_slice(&raw[1..]);
            Ok(Share::new(raw[0], ShareValue::from_bytes(y)))
        }
    }

    fn raw(share: &Share) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = share.x();
        out[1..].copy_from_slice(share.expose_secret());
        out
    }

    fn tenant(name: &str, trustees: Vec<Result<[u8; 33], ReleaseError>>) -> (TenantKeys, [u8; 32]) {
        let tmk = envelope::generate_tmk().unwrap();
        let key = KeyId::new(name, 1).unwrap();
        let mut names = vec!["customer".to_owned()];
        names.extend((0..trustees.len().max(1)).map(|i| format!("t{i}")));
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (metadata, shares) = shamir::split(&tmk, &key, 2, &refs).unwrap();
        let holders = trustees
            .into_iter()
            .enumerate()
            .map(|(i, r)| Holder {
                name: format!("t{i}"),
                source: Arc::new(Fixed(r.map(|_| raw(&shares[i + 1])))),
            })
            .collect();
        let customer = *shares[0].expose_secret();
        let keys = TenantKeys {
            metadata,
            key_id: key,
            customer: CustomerShare::SseC {
                holder: "customer".into(),
            },
            trustees: holders,
        };
        (keys, customer)
    }

    /// Whether an error is the one a case expects.
    type Expected = fn(&ProxyError) -> bool;

    fn context() -> ReleaseContext {
        ReleaseContext {
            request_id: "r1".into(),
            object: None,
            reason: "test".into(),
        }
    }

    #[tokio::test]
    async fn cache_is_bounded_and_keyed_by_the_customer_share() {
        let service = KeyService::new(Duration::from_secs(60), 2, Duration::from_secs(1));
        let mut tenants = Vec::new();
        for name in ["a", "b", "c"] {
            tenants.push(tenant(name, vec![Ok([0; 33])]));
        }
        for (keys, share) in &tenants {
            service.kek(keys, Some(share), &context()).await.unwrap();
        }
        assert_eq!(service.cached(), 2, "max_entries bounds the cache");
        let (keys, _) = &tenants[2];
        // A share of another key, no share, a share of the wrong length.
        let refused: [(Option<&[u8]>, Expected); 3] = [
            (Some(&[9; 32]), |e| matches!(e, ProxyError::WrongShare)),
            (None, |e| matches!(e, ProxyError::MissingShare)),
            (Some(&[9; 16]), |e| {
                matches!(e, ProxyError::MalformedShare(_))
            }),
        ];
        for (share, expected) in refused {
            let result = service.kek(keys, share, &context()).await;
            assert!(result.as_ref().is_err_and(expected), "{:?}", result.err());
        }
    }

    #[tokio::test]
    async fn ttl_zero_never_caches_and_failures_are_classified() {
        let service = KeyService::new(Duration::ZERO, 10, Duration::from_secs(1));
        let (keys, share) = tenant("a", vec![Ok([0; 33])]);
        service.kek(&keys, Some(&share), &context()).await.unwrap();
        assert_eq!(service.cached(), 0);

        // What a holder's failure becomes for the client.
        let failures: [(&str, ReleaseError, Expected); 3] = [
            ("b", ReleaseError::Unreachable("down".into()), |e| {
                matches!(e, ProxyError::Unavailable { .. })
            }),
            (
                "c",
                ReleaseError::Denied {
                    reason: "tenant_suspended".into(),
                },
                |e| matches!(e, ProxyError::Denied { message, .. } if message.contains("tenant_suspended")),
            ),
            ("d", ReleaseError::Protocol("x".into()), |e| {
                matches!(e, ProxyError::BadGateway { .. })
            }),
        ];
        for (name, failure, expected) in failures {
            let (keys, share) = tenant(name, vec![Err(failure)]);
            let result = service.kek(&keys, Some(&share), &context()).await;
            assert!(
                result.as_ref().is_err_and(expected),
                "{name}: {:?}",
                result.err()
            );
        }
        // 2-of-3: one trustee down, the other answers.
        let (keys, share) = tenant(
            "e",
            vec![Err(ReleaseError::Unreachable("down".into())), Ok([0; 33])],
        );
        service.kek(&keys, Some(&share), &context()).await.unwrap();
    }
}
