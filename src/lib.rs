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
//!
//! Normative format spec: `docs/format.md`. Design decisions: `docs/decisions.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crypto;
pub mod dev;
pub mod format;
pub mod proxy;
pub mod secret;
pub mod storage;
pub mod tenant;
pub mod tls;
