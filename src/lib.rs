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
//! | `fuzzing` (doc-hidden) | fuzz target bodies, replayed on stable by `tests/fuzz_replay.rs` | |
//! | [`crypto`] | pure crypto: AEAD, KEK/DEK hierarchy, key commitment, Shamir | I/O, async |
//! | [`format`] | the encrypted object format v1 (header, segments, ranges, multipart) | I/O, async |
//! | [`tls`] | rustls configs (ring only), mTLS identities, TEST-ONLY dev PKI | the S3 or trustee logic |
//! | [`trustee`] | the trustee service: custody, policy, emergency grants, audit log, client | proxy, format |
//! | [`storage`] | the storage backend trait over object_store: filesystem, memory, S3 | proxy, format, trustee |
//! | [`proxy`] | the S3 data path: TLS, SigV4, key release and cache, encrypt/decrypt, metrics | bench |
//! | [`tenant`] | the customer's key ceremony (`treuhand tenant create`) | proxy internals |
//! | [`dev`] | `treuhand dev`: the one-command local stack (TEST-ONLY) | |
//! | [`bench`] | `treuhand bench`: load generator, HDR percentiles, CSV/JSON/SVG/Markdown | product internals |
//!
//! Normative format spec: `docs/format.md`. Design decisions: `docs/decisions.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

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
