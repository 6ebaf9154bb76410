//! The trustee service: share custody, release policy, emergency access and a verifiable audit
//! log, served over HTTPS with mandatory mTLS.
//!
//! The same binary runs both as the independent trustee and as the customer-run share holder;
//! only the configuration differs.
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | the versioned `/v1` and `/v2` JSON types shared with the proxy and the CLI, `Policy` and `RateLimit` among them |
//! | [`policy`] | pure decisions over the wire types: [`policy::authorize`], [`policy::decide`], the [`policy::Denial`] reasons, token buckets, the denial budget, the injectable clock |
//! | [`audit`] | hash-chained entries, signed heads, checkpoints and receipts, the one chain check ([`audit::check_chain`]) |
//! | [`store`] | the `Store` trait and its durable SQLite implementation |
//! | [`engine`] | the single-writer engine, one file per duty (release, evaluation, custody, grants, the audit chains): decisions, group commit, fail-closed replies |
//! | [`signature`] | strict tenants: checking the customer's own SigV4 signature on a forwarded request |
//! | [`server`] | hyper 1 + tokio-rustls accept loop, routing, limits, graceful shutdown, the one error-to-HTTP map |
//! | [`client`] | [`client::TrusteeClient`], used by the proxy and the CLI |
//! | [`config`] | TOML configuration, validated at startup |
//! | [`cli`] | `treuhand trustee` and `treuhand audit verify` |
//!
//! This module must not depend on the proxy or on the object format.

pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod policy;
pub mod server;
pub mod signature;
pub mod store;
pub mod wire;

/// The engine under its earlier name, so `trustee::service::{Trustee, Options}` keeps working.
pub use self::engine as service;

/// Errors of the trustee layer, on both the server and the client side.
///
/// No variant ever carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The trustee could not be reached in time (connect failure, timeout, reset, or the
    /// trustee answered 503). The proxy answers 503.
    #[error("trustee unreachable: {0}")]
    Unreachable(String),
    /// The release (or another action) was refused; the [`policy::Denial`] says why
    /// (`proxy_not_allowed`, `tenant_suspended`, `no_emergency_grant`, ...). The trustee
    /// answers 403 with the denial's code as `reason`.
    #[error("denied by the trustee: {0}")]
    Denied(policy::Denial),
    /// The tenant's share for this key version was shredded; it will never be released again.
    #[error("the tenant key was shredded")]
    Shredded,
    /// This holder handed its share of the key version to the customer admin for a re-deal
    /// (`handover`); it serves the version no more (HTTP 410, reason `handed_over`; the client
    /// reads every 410 as [`Error::Shredded`]: this holder no longer serves the key).
    #[error("the share of this key version was handed over; this holder no longer serves it")]
    HandedOver,
    /// No such tenant or key version is enrolled.
    #[error("unknown tenant or key version")]
    UnknownTenant,
    /// The other side answered something that does not follow the protocol.
    #[error("trustee protocol error: {0}")]
    Protocol(String),
    /// The request is invalid (HTTP 400, 413, 415); the message says what is wrong.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request conflicts with the current state (HTTP 409), e.g. a key version that is
    /// already enrolled.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A named object (e.g. an emergency grant) does not exist (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// `/v2/.../evaluate` of a legacy (Shamir TMK) tenant key, which has no per-object
    /// evaluation (HTTP 409, reason `not_an_oprf_key`).
    #[error("this tenant key is a legacy key without per-object evaluation; use /v1 release")]
    NotOprfKey,
    /// `/v2/tenants/{t}/authorize` at a holder that holds no S3 credential for the tenant, so
    /// it does not check the customer's signatures (HTTP 409, reason
    /// `signatures_not_checked_here`).
    #[error("this holder does not check the tenant's signatures (no S3 credential deposited here)")]
    SignaturesNotCheckedHere,
    /// The audit entry could not be written durably, so nothing was released (fail closed).
    #[error("the audit log is unavailable; nothing was released")]
    AuditUnavailable,
    /// The durable store failed, or refused its contents; the message says which and how.
    #[error("store error: {0}")]
    Store(String),
    /// The database under the store failed; the database's error is the cause.
    #[error("store error: {0}")]
    Database(#[source] rusqlite::Error),
    /// A record in the store does not parse; the parser's error is the cause.
    #[error("store error: corrupt JSON in store: {0}")]
    CorruptRecord(#[source] serde_json::Error),
    /// Invalid configuration, with a message saying how to fix it.
    #[error("configuration error: {0}")]
    Config(String),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    /// A crypto operation failed (never includes key material).
    #[error(transparent)]
    Crypto(#[from] crate::crypto::Error),
    /// An I/O error outside the store.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// An internal invariant failed.
    #[error("internal error: {0}")]
    Internal(String),
}
