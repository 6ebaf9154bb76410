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
//! | [`crypto`] | pure crypto: AEAD, KEK/DEK hierarchy, key commitment, Shamir | I/O, async |
//! | [`format`] | the encrypted object format v1 (header, segments, ranges, multipart) | I/O, async |
//! | [`tls`] | rustls configs (ring only), mTLS caller identities, the test-only dev CA | storage |
//! | [`trustee`] | the trustee service: custody, policy, emergency grants, audit log, client | proxy, format |
//! | [`bench`] | `treuhand bench`: load generator, HDR percentiles, CSV/JSON/SVG/Markdown | product internals |
//!
//! Normative format spec: `docs/format.md`. Design decisions: `docs/decisions.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod crypto;
pub mod format;
pub mod secret;
pub mod tls;
pub mod trustee;
