//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, nightly), kept in the library so that
//! `tests/fuzz_replay.rs` replays every committed corpus file through exactly the same code on
//! stable. Each `fuzz/fuzz_targets/<name>.rs` is a one-line call to the function of that name.
//!
//! Every function takes arbitrary bytes and must return normally: a panic is a finding. Besides
//! "no panic" each target checks what the code promises about untrusted input (a parsed length
//! is the stated length, a decoding is canonical, a decryption that succeeds returned the bytes
//! that were encrypted, a range stays inside the object). Not part of the API: hidden from the
//! docs and free to change. See `docs/fuzzing.md`.
//!
//! Depends on everything it fuzzes, and nothing depends on it. One file per area, each target
//! named as its `fuzz/fuzz_targets/<name>.rs`:
//!
//! - `format.rs`: `format_header`, `format_layout`, `segment_decrypt` (the object format);
//! - `shares.rs`: `share_encodings` (share envelopes, SSE-C share headers, combining);
//! - `trustee.rs`: `trustee_json` (the trustee's JSON bodies);
//! - `s3.rs`: `range_conditions`, `aws_chunked` (the proxy's S3 request parsing).
//!
//! This file holds what they share: the `Input` reader and the frozen test-vector key.

// A fuzz target reports a broken invariant by panicking, so the asserts below are the point;
// every `expect` is on a fixed input (the test-vector keys), never on fuzzed bytes.
#![allow(clippy::expect_used, clippy::panic, missing_docs)]

mod format;
mod s3;
mod shares;
mod trustee;

pub use format::{format_header, format_layout, segment_decrypt};
pub use s3::{aws_chunked, range_conditions};
pub use shares::share_encodings;
pub use trustee::trustee_json;

use crate::crypto::{DekContext, KeyId};
use crate::format::header::new_object_deterministic_with_metadata;
use crate::format::{Layout, Metadata, ObjectCipher};
use crate::secret::{Dek, Kek};

/// Reads fuzz input front to back; past the end every read yields zeros, so any input is a
/// complete instruction sequence.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.byte();
        }
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}

// The key material of the frozen vectors in tests/data (tests/vectors.rs), so those files are
// valid seeds for the decryptor.
const VECTOR_KEK: [u8; 32] = [0x11; 32];
const VECTOR_TMK: [u8; 32] = [0x55; 32];
const VECTOR_TENANT: &str = "vector-tenant";
const VECTOR_VERSION: u32 = 7;

fn vector_key() -> (Kek, KeyId) {
    let key = KeyId::new(VECTOR_TENANT, VECTOR_VERSION).expect("the vector tenant id is valid");
    (Kek::from_bytes(VECTOR_KEK), key)
}

fn vector_context(key: &KeyId) -> DekContext<'_> {
    DekContext {
        key,
        bucket: "vectors",
        object: "dir/object.bin",
    }
}

/// The header and cipher of the vector object: the one object whose DEK, wrap nonce and nonce
/// prefix are fixed, so an encryption under it is deterministic.
fn vector_object(layout: Layout, metadata: &Metadata) -> (ObjectCipher, Vec<u8>) {
    let (kek, key) = vector_key();
    new_object_deterministic_with_metadata(
        &kek,
        &vector_context(&key),
        layout,
        (Dek::from_bytes([0x22; 32]), [0x33; 12], [0x44; 7]),
        metadata,
    )
    .expect("the vector object encrypts")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
