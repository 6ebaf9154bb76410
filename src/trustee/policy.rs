//! Per-tenant release policy, rate limiting, emergency grants and the injectable clock.
//!
//! Everything here is pure and synchronous: [`authorize`] and [`decide`] are functions of the
//! wire types ([`Policy`], [`RateLimit`], [`Grant`]) and of a time in Unix milliseconds. The
//! engine owns the state and calls in with the time of its [`Clock`], so tests drive time with
//! a [`ManualClock`] and never sleep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::wire::{Grant, GrantState, Justification};
pub use super::wire::{Policy, RateLimit};
use crate::tls::{PeerIdentity, Role};

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Starts at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self(AtomicU64::new(start_ms))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The runtime state of one tenant's token bucket (not persisted: a restart refills it).
#[derive(Debug, Clone, Copy)]
pub struct RateBucket {
    tokens: f64,
    last_ms: u64,
}

impl RateBucket {
    /// A full bucket.
    pub fn full(limit: RateLimit, now_ms: u64) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            last_ms: now_ms,
        }
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, limit: RateLimit, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens =
            (self.tokens + elapsed * f64::from(limit.per_second)).min(f64::from(limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A per-caller budget for denials, in bounded memory.
///
/// Every chained denial is a durable entry, so without a budget a caller that is refused in a
/// loop grows the store without bound. Each caller identity gets a token bucket; a denial
/// beyond it is still answered, but not chained, and the next chained denial of that caller
/// says how many were left out. At most `capacity` callers are remembered: a new caller then
/// evicts the least recently denied one (its count of left-out denials is lost, and it starts
/// again with a full bucket). Eviction scans the map, which is cheap next to the fsync each
/// chained denial costs.
#[derive(Debug)]
pub struct DenialLimiter {
    limit: RateLimit,
    capacity: usize,
    callers: HashMap<String, CallerBudget>,
}

#[derive(Debug)]
struct CallerBudget {
    bucket: RateBucket,
    /// Denials answered but not chained since this caller's last chained denial.
    unlogged: u64,
}

impl DenialLimiter {
    /// A limiter granting each caller `limit`, remembering at most `capacity` callers (at
    /// least one).
    pub fn new(limit: RateLimit, capacity: usize) -> Self {
        Self {
            limit,
            capacity: capacity.max(1),
            callers: HashMap::new(),
        }
    }

    /// Takes one denial from `caller`'s budget. `Some(n)`: chain it; `n` earlier denials of
    /// this caller were left out since its last chained one. `None`: answer it, chain nothing.
    pub fn admit(&mut self, caller: &str, now_ms: u64) -> Option<u64> {
        if !self.callers.contains_key(caller) && self.callers.len() >= self.capacity {
            let least_recent = self
                .callers
                .iter()
                .min_by_key(|(_, budget)| budget.bucket.last_ms)
                .map(|(name, _)| name.clone());
            if let Some(name) = least_recent {
                self.callers.remove(&name);
            }
        }
        let limit = self.limit;
        let budget = self
            .callers
            .entry(caller.to_owned())
            .or_insert_with(|| CallerBudget {
                bucket: RateBucket::full(limit, now_ms),
                unlogged: 0,
            });
        if budget.bucket.try_take(limit, now_ms) {
            Some(std::mem::take(&mut budget.unlogged))
        } else {
            budget.unlogged = budget.unlogged.saturating_add(1);
            None
        }
    }

    /// How many callers are remembered now.
    pub fn callers(&self) -> usize {
        self.callers.len()
    }
}

/// Why the trustee refused: the reason of every 403, as a machine code in the body's `reason`.
///
/// The engine decides the known reasons; a client that reads a code this build does not know
/// (a newer trustee) keeps it as [`Denial::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The caller's certificate has the wrong role for this action.
    WrongRole,
    /// The proxy is not in `allowed_proxies`.
    ProxyNotAllowed,
    /// The tenant is suspended.
    TenantSuspended,
    /// The justification is not allowed by policy.
    JustificationNotAllowed,
    /// `operator_maintenance` without a live emergency grant.
    NoEmergencyGrant,
    /// The tenant's rate limit is exhausted.
    RateLimited,
    /// A customer admin acting on another tenant.
    NotTenantAdmin,
    /// The client certificate names no `<name>.<role>.treuhand` identity.
    UnknownIdentity,
    /// `/v1/.../release` of an OPRF tenant key: its shares are never handed out, only
    /// evaluated per object (`/v2/.../evaluate`).
    OprfKeyNotReleasable,
    /// A strict tenant's evaluation came without the customer's signed request.
    SignatureRequired,
    /// The customer's signature verifies but covers another object.
    SignatureScope,
    /// The customer's request is signed with another access key than the tenant's.
    SignatureWrongAccessKey,
    /// The customer's signature is outside its 15-minute window, or a presigned URL expired.
    SignatureExpired,
    /// The customer's signature does not verify.
    SignatureMismatch,
    /// The forwarded request is not a SigV4 request the holder can check.
    SignatureMalformed,
    /// A code this build does not know, as the other side sent it.
    Other(String),
}

impl Denial {
    /// Every reason this build decides, for reading codes back ([`Denial::from_code`]).
    const KNOWN: [Denial; 15] = [
        Denial::WrongRole,
        Denial::ProxyNotAllowed,
        Denial::TenantSuspended,
        Denial::JustificationNotAllowed,
        Denial::NoEmergencyGrant,
        Denial::RateLimited,
        Denial::NotTenantAdmin,
        Denial::UnknownIdentity,
        Denial::OprfKeyNotReleasable,
        Denial::SignatureRequired,
        Denial::SignatureScope,
        Denial::SignatureWrongAccessKey,
        Denial::SignatureExpired,
        Denial::SignatureMismatch,
        Denial::SignatureMalformed,
    ];

    /// The machine code and the human text of the 403 body.
    fn describe(&self) -> (&str, &'static str) {
        match self {
            Denial::WrongRole => (
                "wrong_role",
                "this action needs a client certificate of a different role",
            ),
            Denial::ProxyNotAllowed => (
                "proxy_not_allowed",
                "this proxy identity is not in the tenant's allowed_proxies",
            ),
            Denial::TenantSuspended => (
                "tenant_suspended",
                "the tenant's customer admin has suspended all releases",
            ),
            Denial::JustificationNotAllowed => (
                "justification_not_allowed",
                "the tenant's policy does not allow this justification",
            ),
            Denial::NoEmergencyGrant => (
                "no_emergency_grant",
                "operator_maintenance needs an emergency grant approved by the customer admin that is live now",
            ),
            Denial::RateLimited => (
                "rate_limited",
                "the tenant's release rate limit is exhausted; retry later",
            ),
            Denial::NotTenantAdmin => (
                "not_tenant_admin",
                "only the tenant's own customer admin may do this",
            ),
            Denial::UnknownIdentity => (
                "unknown_identity",
                "the client certificate does not carry a <name>.<role>.treuhand identity",
            ),
            Denial::OprfKeyNotReleasable => (
                "oprf_key_not_releasable",
                "this tenant key is an OPRF key: its shares are never released; ask for a per-object evaluation (POST /v2/tenants/{tenant}/keys/{version}/evaluate)",
            ),
            Denial::SignatureRequired => (
                "signature_required",
                "this holder checks the customer's signatures for this tenant: forward the customer's signed request (signed)",
            ),
            Denial::SignatureScope => (
                "signature_scope",
                "the customer's signed request does not address this bucket and key",
            ),
            Denial::SignatureWrongAccessKey => (
                "signature_wrong_access_key",
                "the customer's request is signed with another access key than the tenant's",
            ),
            Denial::SignatureExpired => (
                "signature_expired",
                "the customer's signature is outside its 15-minute window, or the presigned URL has expired",
            ),
            Denial::SignatureMismatch => (
                "signature_mismatch",
                "the customer's signature does not match the forwarded request",
            ),
            Denial::SignatureMalformed => (
                "signature_malformed",
                "the forwarded request is not a SigV4-signed request this holder can check",
            ),
            Denial::Other(code) => (code, "denied by policy"),
        }
    }

    /// The machine code (the body's `reason`).
    pub fn code(&self) -> &str {
        self.describe().0
    }

    /// The human text (the body's `message`).
    pub fn message(&self) -> &'static str {
        self.describe().1
    }

    /// The denial a machine code names; an unknown code is kept as [`Denial::Other`].
    pub fn from_code(code: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|known| known.code() == code)
            .unwrap_or_else(|| Denial::Other(code.to_owned()))
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl PartialEq<str> for Denial {
    fn eq(&self, code: &str) -> bool {
        self.code() == code
    }
}

impl PartialEq<&str> for Denial {
    fn eq(&self, code: &&str) -> bool {
        self.code() == *code
    }
}

/// Whether `caller` may ask for `tenant`'s releases at all: a proxy named in the tenant's
/// policy (`None`: no policy, which is the default policy, allowing no proxy). Nothing about a
/// caller that may not ask enters the tenant's chain.
///
/// # Errors
/// [`Denial::WrongRole`] or [`Denial::ProxyNotAllowed`].
pub fn authorize(policy: Option<&Policy>, caller: &PeerIdentity) -> Result<(), Denial> {
    if caller.role != Role::Proxy {
        return Err(Denial::WrongRole);
    }
    if !policy.is_some_and(|policy| policy.allowed_proxies.contains(&caller.name)) {
        return Err(Denial::ProxyNotAllowed);
    }
    Ok(())
}

/// The rest of a release decision, for an authorized caller, at `now_ms`: suspension, the
/// allowed justifications, a live emergency grant for `operator_maintenance` (the first of
/// `grants` that covers `key_version`), then one token of the tenant's `bucket`. Returns the
/// grant the release goes under, if any.
///
/// # Errors
/// The [`Denial`] of the first check that fails; a denied release takes no token.
pub fn decide<'g>(
    policy: &Policy,
    justification: Justification,
    key_version: u32,
    grants: impl IntoIterator<Item = &'g Grant>,
    bucket: &mut RateBucket,
    now_ms: u64,
) -> Result<Option<&'g Grant>, Denial> {
    if policy.suspended {
        return Err(Denial::TenantSuspended);
    }
    if !policy.allowed_justifications.contains(&justification) {
        return Err(Denial::JustificationNotAllowed);
    }
    let grant = if justification == Justification::OperatorMaintenance {
        let live = grants
            .into_iter()
            .find(|grant| grant_covers(grant, key_version, now_ms));
        Some(live.ok_or(Denial::NoEmergencyGrant)?)
    } else {
        None
    };
    if !bucket.try_take(policy.rate_limit, now_ms) {
        return Err(Denial::RateLimited);
    }
    Ok(grant)
}

/// Whether `grant` is live at `now_ms` and covers `key_version`.
pub fn grant_covers(grant: &Grant, key_version: u32, now_ms: u64) -> bool {
    grant.state == GrantState::Approved
        && grant.expires_ms.is_some_and(|expires| now_ms < expires)
        && grant.scope.key_version.is_none_or(|v| v == key_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: u32, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[test]
    fn bucket_refills_with_time_and_caps_at_burst() {
        let limit = limit(10, 2);
        let mut bucket = RateBucket::full(limit, 0);
        assert!(bucket.try_take(limit, 0));
        assert!(bucket.try_take(limit, 0));
        assert!(!bucket.try_take(limit, 0));
        assert!(bucket.try_take(limit, 100));
        assert!(!bucket.try_take(limit, 100));
        assert!(bucket.try_take(limit, 10_000));
        assert!(bucket.try_take(limit, 10_000));
        assert!(!bucket.try_take(limit, 10_000));
    }

    #[test]
    fn denial_limiter_counts_what_it_left_out_per_caller() {
        let limit = limit(1, 2);
        let mut limiter = DenialLimiter::new(limit, 16);
        assert_eq!(limiter.admit("proxy:a", 0), Some(0));
        assert_eq!(limiter.admit("proxy:a", 0), Some(0));
        assert_eq!(limiter.admit("proxy:a", 0), None);
        assert_eq!(limiter.admit("proxy:a", 0), None);
        // Another caller has its own budget.
        assert_eq!(limiter.admit("proxy:b", 0), Some(0));
        // After a refill the next chained denial carries the count of those left out.
        assert_eq!(limiter.admit("proxy:a", 1000), Some(2));
        assert_eq!(limiter.admit("proxy:a", 1000), None);
    }

    #[test]
    fn denial_limiter_memory_stays_bounded_under_many_identities() {
        let limit = limit(1, 1);
        let mut limiter = DenialLimiter::new(limit, 100);
        assert_eq!(limiter.admit("proxy:noisy", 0), Some(0));
        assert_eq!(limiter.admit("proxy:noisy", 0), None);
        for i in 0..10_000u64 {
            limiter.admit(&format!("proxy:p{i}"), 1 + i);
            assert!(limiter.callers() <= 100);
        }
        // The noisy caller was the least recently denied, so it was forgotten first.
        assert_eq!(limiter.admit("proxy:noisy", 20_000), Some(0));
    }

    #[test]
    fn policy_defaults_allow_no_proxy() {
        let policy: Policy = serde_json::from_str("{}").unwrap_or_default();
        assert!(policy.allowed_proxies.is_empty());
        assert!(policy.validate().is_ok());
        let bad = Policy {
            rate_limit: limit(0, 1),
            ..Policy::default()
        };
        assert!(bad.validate().is_err());
    }
}
