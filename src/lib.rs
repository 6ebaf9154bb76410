//! # treuhand: a key-escrow proxy
//!
//! treuhand turns the "data trustee" model into cryptography: every object is encrypted before
//! it reaches storage, under a tenant key that exists only as Shamir shares held by the customer
//! and one or more independent trustees.
//!
//! ## Where things live
//!
//! | module | owns | must not depend on |
//! |---|---|---|
//! | [`secret`] | secret newtypes (zeroize, redacted `Debug`, constant-time `Eq`) | anything |
//! | [`logging`] | tracing set-up, dependency log ceilings, text-free config errors | anything |
//! | [`crypto`] | pure crypto: AEAD, KEK/DEK hierarchy, the threshold OPRF for per-object keys (`oprf`, `scheme`), legacy Shamir and commitment, SigV4 | I/O, async |
//! | [`format`](mod@format) | the encrypted object format (v3 with the object id; v1/v2 read; single, multipart layouts 1 and 2), [`format::inspect`](fn@format::inspect) for listings | I/O, async |
//! | [`tls`] | rustls configs (ring only), mTLS identities, TEST-ONLY dev PKI | the S3 or trustee logic |
//! | [`trustee`] | the holder service (trustee or customer-run): wire types, pure policy, strict tenants' signature check, audit chain, store, engine (evaluate, legacy release, custody, grants), server, client | proxy, format |
//! | [`storage`] | ciphertext storage over object_store: filesystem (ordered listing), memory, S3; atomic writers | proxy, format, trustee |
//! | [`proxy`] | the S3 data path: TLS server, guard, strict tenants' forwarding, SigV4 registry, per-object keys and cache, `proxy::s3` handlers | bench |
//! | [`tenant`] | the customer's key ceremony (`treuhand tenant create`) | proxy internals |
//! | [`admin`] | the trusteeship's lifetime from the command line: profiles, status, policy, grants, rotate, rewrap, shred, hand-over, operator grants, receipts, `audit pull` | proxy internals |
//! | [`dev`] | `treuhand dev`: init, env files, the running local stack (TEST-ONLY) | |
//! | [`bench`](mod@bench) | `treuhand bench`: plan, run, cell, load, results, report, plots | product internals |
//! | `fuzzing` (doc-hidden) | fuzz target bodies, replayed on stable by `tests/fuzz_replay.rs` | |
//!
//! ## Where a request goes, in order
//!
//! 1. [`proxy::server`] accepts TCP, enforces connection limits, finishes the TLS handshake
//!    ([`tls`]) in the connection task, and serves HTTP/1.1 or HTTP/2 with hyper.
//! 2. [`proxy::guard`] refuses what s3s must not see (SigV2, POST forms, week-plus presigned URLs);
//!    for a strict tenant, [`proxy::strict`] has the tenant's holder check the customer's own
//!    signature ([`trustee::signature`]) before s3s sees the request.
//! 3. s3s parses the S3 request and checks SigV4 against [`proxy::registry`] (the tenants).
//! 4. [`proxy::s3`] hands the operation to its handler group (`buckets`, `objects`, `list`,
//!    `multipart`); `s3::request` parses the SSE-C share and holds the request's context.
//! 5. [`proxy::keys`] derives the object's key: it asks each holder to evaluate its share on
//!    this one object ([`trustee::client`] over mTLS; the holder runs [`trustee::engine`]:
//!    policy, audit entry naming the object, then `Y_i = k_i·P` with a proof), checks every
//!    proof, combines the answers ([`crypto::oprf`]) and keeps the object key in a bounded
//!    cache. The tenant key is never reassembled. (Legacy v1/v2 key versions still rebuild it.)
//! 6. `s3::pipeline` encrypts or decrypts with [`format`](mod@format) (keys from [`crypto`]).
//! 7. [`storage`] reads or writes ciphertext at the places `s3::paths` names.
//! 8. [`proxy::error`] maps any error to its S3 status and code, in that one place.
//!
//! The same flow step by step, with the file of each step: `docs/architecture.md`. Normative
//! format spec: `docs/format.md`. Design decisions: `docs/decisions.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod bench;
pub mod crypto;
pub mod dev;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod proxy;
pub mod secret;
pub mod storage;
pub mod tenant;
pub mod tls;
pub mod trustee;

/// Resolves on Ctrl-C or SIGTERM (for the long-running subcommands).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
